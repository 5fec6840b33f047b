package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// Phase metrics of the http probe (seconds). rtt is the same as total.
const (
	MetricHTTPConnect   = "connect"    // TCP connect(s)
	MetricHTTPTLS       = "tls"        // TLS handshake(s), https only
	MetricHTTPFirstByte = "first_byte" // from the start of the check to the first byte of the final response
	MetricHTTPTotal     = "total"      // from the start to the end of the body read (at most 1 MiB)
)

// httpBodyMax is how much of the body the http probe reads for matching.
const httpBodyMax = 1 << 20

// httpMaxRedirects is how many redirects are followed before giving up.
const httpMaxRedirects = 10

// HTTPDetails is the Details of an http check.
type HTTPDetails struct {
	URL        string   `json:"url"`
	Method     string   `json:"method"`
	Status     int      `json:"status,omitempty"`
	StatusText string   `json:"status_text,omitempty"` // "503 Service Unavailable"
	Proto      string   `json:"proto,omitempty"`
	FinalURL   string   `json:"final_url,omitempty"`
	Redirects  int      `json:"redirects,omitempty"`
	BodyBytes  int      `json:"body_bytes,omitempty"` // bytes read (at most 1 MiB)
	Expected   []string `json:"expected_status,omitempty"`
	TLS        *TLSInfo `json:"tls,omitempty"`
}

// HTTP sends one request to the target and checks the answer. The URL is the
// target address when it is an http(s) URL (rule.Path replaces its path, and
// its query when Path has one; rule.Port its port), else
// http://host[:port]/path built from the target host and the rule (https when
// rule.TLS is set or the port is 443).
//
// Method (default GET), Headers and Body come from the rule. The status must
// be in rule.Status (default: any 200-399); rule.Expect is a regexp on the
// first 1 MiB of the body. Redirects are followed unless
// rule.FollowRedirects is false, in which case a 3xx is the final answer.
// Certificates are verified against the system roots plus rule.CAFile; when
// verification fails the certificate's days to expiry are still reported
// (cert_days_left, negative once expired) and an expired certificate gives
// reason tls-expired.
//
// Each check uses its own transport: no connection reuse across checks, and
// no proxy from the environment, because diag measures the direct path.
// Metrics: rtt (= total), dns, connect, tls (https), first_byte, total,
// cert_days_left (https).
func HTTP(ctx context.Context, t Target, r config.Rule) Result {
	u, err := httpURL(t, r)
	if err != nil {
		return Failf(Unknown, ReasonError, "%v", err)
	}
	method := strings.ToUpper(r.Method)
	if method == "" {
		method = http.MethodGet
	}
	var expect *regexp.Regexp
	if r.Expect != "" {
		if expect, err = regexp.Compile(r.Expect); err != nil {
			return Failf(Unknown, ReasonError, "expect %q is not a valid regexp: %v", r.Expect, err)
		}
	}
	roots, err := tlsRootsFrom(r.CAFile)
	if err != nil {
		return Failf(Unknown, ReasonError, "%v", err)
	}
	det := &HTTPDetails{URL: u.Redacted(), Method: method}

	tr := &http.Transport{
		Proxy:             nil, // diag measures the direct path
		DialContext:       (&net.Dialer{}).DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	follow := r.FollowRedirects == nil || *r.FollowRedirects
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if !follow {
				return http.ErrUseLastResponse
			}
			if len(via) >= httpMaxRedirects {
				return fmt.Errorf("stopped after %d redirects", httpMaxRedirects)
			}
			return nil
		},
	}

	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	ph := &httpPhases{}
	start := time.Now()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, ph.trace()), method, u.String(), body)
	if err != nil {
		return Failf(Unknown, ReasonError, "http request: %v", err)
	}
	req.Header.Set("User-Agent", "netops-diag")
	for k, v := range r.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}

	resp, err := client.Do(req)
	if err != nil {
		res := httpFailure(ctx, u, start, ph, err)
		res.Details = det
		if leaf := unverifiedLeaf(err); leaf != nil {
			det.TLS = newTLSInfo(leaf, u.Hostname())
			det.TLS.Error = err.Error()
		}
		return res
	}
	defer resp.Body.Close()
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, httpBodyMax))
	total := time.Since(start)

	det.Status, det.StatusText, det.Proto = resp.StatusCode, resp.Status, resp.Proto
	det.FinalURL = resp.Request.URL.Redacted()
	det.Redirects = httpRedirects(resp)
	det.BodyBytes = len(data)

	res := Result{Details: det}
	res.AddMetric(MetricRTT, total.Seconds(), "s")
	ph.addMetrics(&res, start, true, u.Scheme == "https")
	res.AddMetric(MetricHTTPTotal, total.Seconds(), "s")

	msg := fmt.Sprintf("HTTP %s in %s", resp.Status, FormatSeconds(total.Seconds()))
	if det.Redirects > 0 {
		msg += fmt.Sprintf(" after %d redirect(s) to %s", det.Redirects, det.FinalURL)
	}
	if resp.TLS != nil {
		info := &TLSInfo{ServerName: resp.TLS.ServerName, Verified: true, Version: tls.VersionName(resp.TLS.Version)}
		if len(resp.TLS.PeerCertificates) > 0 {
			leaf := resp.TLS.PeerCertificates[0]
			info = newTLSInfo(leaf, resp.TLS.ServerName)
			info.Verified, info.Version = true, tls.VersionName(resp.TLS.Version)
			days := leafDaysLeft(leaf, time.Now())
			res.AddMetric(MetricCertDays, days, "days")
			msg += fmt.Sprintf("; certificate expires in %.1f days", days)
		}
		det.TLS = info
	}

	accepted, expected := httpStatusOK(resp.StatusCode, r.Status)
	if !accepted {
		det.Expected = expected
		return failResult(res, Critical, ReasonStatus, "HTTP %s (expected %s) from %s",
			resp.Status, strings.Join(expected, ", "), det.FinalURL)
	}
	for _, name := range sortedHeaderNames(r.ExpectHeaders) {
		pattern := r.ExpectHeaders[name]
		re, err := regexp.Compile(pattern)
		if err != nil {
			return Failf(Unknown, ReasonError, "expect_headers %s: %q is not a valid regexp: %v", name, pattern, err)
		}
		values := resp.Header.Values(name)
		if len(values) == 0 {
			return failResult(res, Critical, ReasonMismatch, "%s, but the response has no %s header", msg, name)
		}
		if got := strings.Join(values, ", "); !re.MatchString(got) {
			return failResult(res, Critical, ReasonMismatch, "%s, but header %s is %s, which does not match %q",
				msg, name, quoteSnippet([]byte(got), 80), pattern)
		}
	}
	if readErr != nil {
		reason := tcpIOReason(readErr)
		if reason == ReasonTimeout {
			return failResult(res, Critical, reason, "%s, but the body did not arrive%s", msg, deadlineWithin(ctx, start))
		}
		return failResult(res, StatusFor(reason), reason, "%s, but reading the body failed: %v", msg, readErr)
	}
	if expect != nil {
		if !expect.Match(data) {
			scope := "body"
			if len(data) == httpBodyMax {
				scope = "first 1 MiB of the body"
			}
			return failResult(res, Critical, ReasonMismatch, "%s, but the %s does not match %q; it starts with %s",
				msg, scope, r.Expect, quoteSnippet(data, 80))
		}
		msg += fmt.Sprintf("; body matches %q", r.Expect)
	}
	res.Status, res.Message = OK, msg
	return res
}

// httpURL builds the URL an http check requests.
func httpURL(t Target, r config.Rule) (*url.URL, error) {
	var u *url.URL
	if strings.Contains(t.Address, "://") {
		p, err := url.Parse(t.Address)
		if err != nil {
			return nil, fmt.Errorf("target address %q: %w", t.Address, err)
		}
		if p.Scheme != "http" && p.Scheme != "https" {
			return nil, fmt.Errorf("target address %q is not an http(s) URL", t.Address)
		}
		if p.Hostname() == "" {
			return nil, fmt.Errorf("target address %q has no host", t.Address)
		}
		u = p
		if r.Port != 0 {
			u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(r.Port))
		}
	} else {
		host := Host(t.Address)
		if host == "" {
			return nil, fmt.Errorf("target address %q has no host", t.Address)
		}
		port := r.Port
		if port == 0 {
			port, _ = Port(t.Address)
		}
		u = &url.URL{Scheme: "http", Host: host}
		if r.TLS || port == 443 {
			u.Scheme = "https"
		}
		switch {
		case port != 0:
			u.Host = net.JoinHostPort(host, strconv.Itoa(port))
		case strings.Contains(host, ":"):
			u.Host = "[" + host + "]"
		}
	}
	if r.Path != "" {
		p := r.Path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		ref, err := url.Parse(p)
		if err != nil {
			return nil, fmt.Errorf("path %q: %w", r.Path, err)
		}
		u.Path, u.RawPath = ref.Path, ref.RawPath
		if strings.Contains(p, "?") {
			u.RawQuery = ref.RawQuery
		}
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// httpStatusOK reports whether code is accepted, and the accepted statuses
// as text for a message.
func httpStatusOK(code int, want []int) (bool, []string) {
	if len(want) == 0 {
		return code >= 200 && code <= 399, []string{"200-399"}
	}
	names := make([]string, len(want))
	for i, w := range want {
		names[i] = strconv.Itoa(w)
	}
	return slices.Contains(want, code), names
}

// httpFailure turns a client error (no response) into a result.
func httpFailure(ctx context.Context, u *url.URL, start time.Time, ph *httpPhases, err error) Result {
	var res Result
	leaf := unverifiedLeaf(err)
	if leaf != nil {
		res.AddMetric(MetricCertDays, leafDaysLeft(leaf, time.Now()), "days")
	}
	ph.addMetrics(&res, start, false, false)
	reason := Classify(err)
	if ph.tlsFailed() || leaf != nil {
		reason = tlsFailureReason(err)
	}
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	target := u.Host
	switch {
	case reason == ReasonTLSExpired && leaf != nil:
		res.Status, res.Reason = Critical, reason
		res.Message = fmt.Sprintf("%s: %s", target, certValidityPhrase(leaf, time.Now()))
	case reason == ReasonTLS:
		res.Status, res.Reason = Critical, reason
		res.Message = fmt.Sprintf("TLS with %s failed: %v", target, inner)
	case reason == ReasonTimeout:
		res.Status, res.Reason = Critical, reason
		res.Message = fmt.Sprintf("no response from %s%s (%s)", u.Redacted(), deadlineWithin(ctx, start), ph.lastPhase())
	case reason == ReasonRefused:
		res.Status, res.Reason = Critical, reason
		res.Message = fmt.Sprintf("connection to %s refused (port closed)", target)
	case reason == ReasonNXDomain:
		res.Status, res.Reason = Critical, reason
		res.Message = fmt.Sprintf("cannot resolve %s: no such host", u.Hostname())
	case errors.Is(err, context.Canceled):
		res.Status, res.Reason = Unknown, ReasonError
		res.Message = fmt.Sprintf("request to %s cancelled", u.Redacted())
	default:
		res.Status, res.Reason = StatusFor(reason), reason
		res.Message = fmt.Sprintf("request to %s: %v", u.Redacted(), inner)
	}
	return res
}

// httpPhases collects per-phase durations from httptrace. Phases of every
// connection in a redirect chain are added up. Callbacks may run on other
// goroutines, hence the lock.
type httpPhases struct {
	mu        sync.Mutex
	dnsStart  time.Time
	connStart map[string]time.Time
	tlsStart  time.Time
	dns       time.Duration
	connect   time.Duration
	tls       time.Duration
	firstByte time.Time
	tlsErr    error
	wrote     bool
}

func (p *httpPhases) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSStart: func(httptrace.DNSStartInfo) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.dnsStart = time.Now()
		},
		DNSDone: func(httptrace.DNSDoneInfo) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if !p.dnsStart.IsZero() {
				p.dns += time.Since(p.dnsStart)
				p.dnsStart = time.Time{}
			}
		},
		ConnectStart: func(network, addr string) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.connStart == nil {
				p.connStart = map[string]time.Time{}
			}
			p.connStart[network+" "+addr] = time.Now()
		},
		ConnectDone: func(network, addr string, err error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if s, ok := p.connStart[network+" "+addr]; ok && err == nil {
				p.connect += time.Since(s)
			}
			delete(p.connStart, network+" "+addr)
		},
		TLSHandshakeStart: func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.tlsStart = time.Now()
		},
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if !p.tlsStart.IsZero() {
				p.tls += time.Since(p.tlsStart)
				p.tlsStart = time.Time{}
			}
			p.tlsErr = err
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.wrote = true
		},
		GotFirstResponseByte: func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.firstByte = time.Now()
		},
	}
}

// addMetrics appends dns, connect, tls and first_byte. With complete (a
// response arrived) dns and connect are always there (0 when there was no
// name to resolve) and tls is there for https; otherwise only the phases that
// were reached are.
func (p *httpPhases) addMetrics(res *Result, start time.Time, complete, https bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if complete || p.dns > 0 {
		res.AddMetric(MetricDNS, p.dns.Seconds(), "s")
	}
	if complete || p.connect > 0 {
		res.AddMetric(MetricHTTPConnect, p.connect.Seconds(), "s")
	}
	if (complete && https) || p.tls > 0 {
		res.AddMetric(MetricHTTPTLS, p.tls.Seconds(), "s")
	}
	if !p.firstByte.IsZero() {
		res.AddMetric(MetricHTTPFirstByte, p.firstByte.Sub(start).Seconds(), "s")
	}
}

func (p *httpPhases) tlsFailed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tlsErr != nil
}

// lastPhase names where a request that got no response stopped.
func (p *httpPhases) lastPhase() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.dnsStart.IsZero():
		return "while resolving the name"
	case len(p.connStart) > 0:
		return "while connecting"
	case !p.tlsStart.IsZero():
		return "during the TLS handshake"
	case p.wrote:
		return "request sent, no answer"
	}
	return "before the request was sent"
}

// redirects counts the redirects followed to get resp.
func httpRedirects(resp *http.Response) int {
	n := 0
	for req := resp.Request; req != nil && req.Response != nil; req = req.Response.Request {
		n++
	}
	return n
}

// sortedHeaderNames returns the header names of m in a stable order.
func sortedHeaderNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
