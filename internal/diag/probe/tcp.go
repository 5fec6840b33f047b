package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/netops-dev/netops/internal/config"
)

// Metric names of the tcp and http probes besides rtt and cert_days_left.
const (
	MetricDNS          = "dns"           // seconds spent resolving the host name
	MetricTLSHandshake = "tls_handshake" // seconds spent in the TLS handshake (tcp)
)

// tcpReadMax is how much of the peer's answer the tcp probe reads while
// waiting for the expect regexp to match.
const tcpReadMax = 64 << 10

// tcpBannerDetailMax caps the banner kept in TCPDetails.
const tcpBannerDetailMax = 4 << 10

// TCPDetails is the Details of a tcp check.
type TCPDetails struct {
	// Address is the host:port that was dialled.
	Address string `json:"address"`
	// Remote is the IP:port that accepted the connection.
	Remote string `json:"remote,omitempty"`
	// Sent is the number of bytes of the rule's send string written.
	Sent int `json:"sent,omitempty"`
	// Banner is what the peer sent (at most 4 KiB of it), as received.
	Banner string `json:"banner,omitempty"`
	// TLS describes the TLS session when the rule asks for TLS.
	TLS *TLSInfo `json:"tls,omitempty"`
}

// TLSInfo describes a TLS session and its leaf certificate (tcp and http).
type TLSInfo struct {
	Version    string    `json:"version,omitempty"` // "TLS 1.3"; empty when the handshake failed
	ServerName string    `json:"server_name,omitempty"`
	Verified   bool      `json:"verified"` // the chain and name verified against the roots
	Subject    string    `json:"subject,omitempty"`
	Issuer     string    `json:"issuer,omitempty"`
	DNSNames   []string  `json:"dns_names,omitempty"`
	NotBefore  time.Time `json:"not_before,omitzero"`
	NotAfter   time.Time `json:"not_after,omitzero"`
	Error      string    `json:"error,omitempty"` // why verification or the handshake failed
}

// TCP connects to the target's host on the rule's port (else the port of the
// target address) and measures the connect time (metric rtt, plus dns when a
// name had to be resolved). With rule.TLS it then does a verified TLS handshake
// (SNI and name check against the target host; rule.CAFile adds a trusted root)
// and reports tls_handshake and cert_days_left, the latter even when the
// certificate has expired. With rule.Send it writes those bytes; with
// rule.Expect (a regexp) it reads until the regexp matches what was received,
// up to 64 KiB, EOF or the deadline. Without Expect nothing is read: a plain
// connect check does not wait for a banner.
func TCP(ctx context.Context, t Target, r config.Rule) Result {
	host := Host(t.Address)
	if host == "" {
		return Failf(Unknown, ReasonError, "tcp: target address %q has no host", t.Address)
	}
	port := r.Port
	if port == 0 {
		p, ok := Port(t.Address)
		if !ok {
			return Failf(Unknown, ReasonError, "no port: set port in the rule (target address %q has none)", t.Address)
		}
		port = p
	}
	if port < 1 || port > 65535 {
		return Failf(Unknown, ReasonError, "port %d out of range 1-65535", port)
	}
	var expect *regexp.Regexp
	if r.Expect != "" {
		re, err := regexp.Compile(r.Expect)
		if err != nil {
			return Failf(Unknown, ReasonError, "expect %q is not a valid regexp: %v", r.Expect, err)
		}
		expect = re
	}
	var roots *x509.CertPool
	if r.TLS {
		pool, err := tlsRootsFrom(r.CAFile)
		if err != nil {
			return Failf(Unknown, ReasonError, "%v", err)
		}
		roots = pool
	}

	addr := net.JoinHostPort(host, strconv.Itoa(port))
	det := &TCPDetails{Address: addr}
	start := time.Now()
	conn, timing, err := tcpDialTimed(ctx, addr)
	if err != nil {
		res := tcpDialFailure(ctx, addr, start, err)
		res.Details = det
		return res
	}
	defer conn.Close()
	det.Remote = conn.RemoteAddr().String()

	// Every read and write below stops at the check's deadline, and at once
	// when ctx is cancelled.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	res := Result{Details: det}
	res.AddMetric(MetricRTT, timing.connect.Seconds(), "s")
	if _, err := netip.ParseAddr(host); err != nil {
		res.AddMetric(MetricDNS, timing.dns.Seconds(), "s")
	}
	msg := "connected in " + FormatSeconds(timing.connect.Seconds())

	var stream net.Conn = conn
	if r.TLS {
		tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12})
		hsStart := time.Now()
		err := tc.HandshakeContext(ctx)
		hs := time.Since(hsStart)
		if err != nil {
			return tcpTLSFailure(ctx, res, msg, host, hsStart, err)
		}
		state := tc.ConnectionState()
		res.AddMetric(MetricTLSHandshake, hs.Seconds(), "s")
		if len(state.PeerCertificates) > 0 {
			leaf := state.PeerCertificates[0]
			days := leafDaysLeft(leaf, time.Now())
			res.AddMetric(MetricCertDays, days, "days")
			det.TLS = newTLSInfo(leaf, host)
			det.TLS.Verified = true
			msg += fmt.Sprintf("; %s handshake in %s, certificate expires in %.1f days",
				tls.VersionName(state.Version), FormatSeconds(hs.Seconds()), days)
		}
		if det.TLS == nil {
			det.TLS = &TLSInfo{ServerName: host, Verified: true}
		}
		det.TLS.Version = tls.VersionName(state.Version)
		defer tc.Close() // sends close_notify, then closes conn
		stream = tc
	}

	if r.Send != "" {
		n, err := io.WriteString(stream, r.Send)
		det.Sent = n
		if err != nil {
			reason := tcpIOReason(err)
			return failResult(res, StatusFor(reason), reason, "%s; sending %d bytes failed: %v", msg, len(r.Send), err)
		}
	}
	if expect == nil {
		if r.Send != "" {
			msg += fmt.Sprintf("; sent %d bytes", det.Sent)
		}
		res.Status, res.Message = OK, msg
		return res
	}

	got, matched, err := tcpReadUntil(stream, expect)
	det.Banner = string(got[:min(len(got), tcpBannerDetailMax)])
	if matched {
		what := "banner"
		if r.Send != "" {
			what = "answer"
		}
		res.Status = OK
		res.Message = fmt.Sprintf("%s; %s %s", msg, what, quoteSnippet(tcpFirstLine(got), 80))
		return res
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return failResult(res, Unknown, ReasonError, "%s; check cancelled while waiting for %q", msg, r.Expect)
	case len(got) == 0 && tcpIsTimeout(err):
		return failResult(res, Critical, ReasonTimeout, "%s, but the port accepted the connection and said nothing%s (expected %q)",
			msg, deadlineWithin(ctx, start), r.Expect)
	case len(got) == 0 && errors.Is(err, io.EOF):
		return failResult(res, Critical, ReasonMismatch, "%s, but the peer closed the connection without sending anything (expected %q)",
			msg, r.Expect)
	case len(got) == 0:
		reason := tcpIOReason(err)
		return failResult(res, StatusFor(reason), reason, "%s, but reading the answer failed: %v", msg, err)
	}
	why := "connection closed"
	switch {
	case len(got) >= tcpReadMax:
		why = "read 64 KiB"
	case tcpIsTimeout(err):
		why = "timed out" + deadlineWithin(ctx, start)
	case err != nil && !errors.Is(err, io.EOF):
		why = err.Error()
	}
	return failResult(res, Critical, ReasonMismatch, "%s; received %s (%d bytes, %s), which does not match %q",
		msg, quoteSnippet(got, 80), len(got), why, r.Expect)
}

func failResult(res Result, status Status, reason, format string, args ...any) Result {
	res.Status, res.Reason, res.Message = status, reason, fmt.Sprintf(format, args...)
	return res
}

// tcpTiming is how long the dial spent resolving and connecting.
type tcpTiming struct{ dns, connect time.Duration }

// tcpDialTimed dials addr and separates name resolution from the TCP connect
// of the address that answered: the dialer's control hook runs right before
// each connect(2), so connect time is measured from there.
func tcpDialTimed(ctx context.Context, addr string) (net.Conn, tcpTiming, error) {
	var (
		mu     sync.Mutex
		first  time.Time
		starts = map[string]time.Time{}
	)
	d := net.Dialer{ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = now
		}
		starts[address] = now
		return nil
	}}
	begin := time.Now()
	conn, err := d.DialContext(ctx, "tcp", addr)
	end := time.Now()
	if err != nil {
		return nil, tcpTiming{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	start, ok := starts[conn.RemoteAddr().String()]
	if !ok {
		start = first
	}
	if start.IsZero() {
		start = begin
	}
	var dns time.Duration
	if !first.IsZero() {
		dns = first.Sub(begin)
	}
	return conn, tcpTiming{dns: dns, connect: end.Sub(start)}, nil
}

// tcpDialFailure turns a dial error into a result with a reason and a message
// that says what it means for the port.
func tcpDialFailure(ctx context.Context, addr string, start time.Time, err error) Result {
	reason := Classify(err)
	switch reason {
	case ReasonRefused:
		return Failf(Critical, reason, "connection to %s refused (port closed)", addr)
	case ReasonTimeout:
		return Failf(Critical, reason, "no answer from %s%s (filtered or host down)", addr, deadlineWithin(ctx, start))
	case ReasonNXDomain:
		return Failf(Critical, reason, "cannot resolve %s: no such host", addr)
	case ReasonUnreachable:
		return Failf(Critical, reason, "%s unreachable: %v", addr, errors.Unwrap(err))
	}
	if errors.Is(err, context.Canceled) {
		return Failf(Unknown, ReasonError, "connect to %s cancelled", addr)
	}
	return Failf(StatusFor(reason), reason, "connect to %s: %v", addr, err)
}

// tcpTLSFailure reports a failed TLS handshake, with the certificate's expiry
// when the server sent one that did not verify.
func tcpTLSFailure(ctx context.Context, res Result, msg, host string, start time.Time, err error) Result {
	det, _ := res.Details.(*TCPDetails)
	reason := tlsFailureReason(err)
	if leaf := unverifiedLeaf(err); leaf != nil {
		days := leafDaysLeft(leaf, time.Now())
		res.AddMetric(MetricCertDays, days, "days")
		if det != nil {
			det.TLS = newTLSInfo(leaf, host)
			det.TLS.Error = err.Error()
		}
		if reason == ReasonTLSExpired {
			return failResult(res, Critical, reason, "%s; TLS: %s", msg, certValidityPhrase(leaf, time.Now()))
		}
	} else if det != nil {
		det.TLS = &TLSInfo{ServerName: host, Error: err.Error()}
	}
	if reason == ReasonTimeout {
		return failResult(res, Critical, reason, "%s; no TLS handshake%s", msg, deadlineWithin(ctx, start))
	}
	return failResult(res, StatusFor(reason), reason, "%s; TLS handshake failed: %v", msg, err)
}

// tcpReadUntil reads from c until re matches everything received so far, the
// peer stops sending (EOF or error, returned), 64 KiB arrived, or the
// connection's deadline passes.
func tcpReadUntil(c io.Reader, re *regexp.Regexp) (got []byte, matched bool, err error) {
	buf := make([]byte, 0, 4096)
	chunk := make([]byte, 4096)
	for len(buf) < tcpReadMax {
		n, err := c.Read(chunk[:min(len(chunk), tcpReadMax-len(buf))])
		buf = append(buf, chunk[:n]...)
		if n > 0 && re.Match(buf) {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
	return buf, false, nil
}

// tcpIOReason classifies an error on an established connection.
func tcpIOReason(err error) string {
	if tcpIsTimeout(err) {
		return ReasonTimeout
	}
	return Classify(err)
}

// tlsFailureReason is the reason of a failed TLS handshake: tls-expired for an
// expired (or not yet valid) certificate, timeout, else tls.
func tlsFailureReason(err error) string {
	switch reason := Classify(err); reason {
	case ReasonTLSExpired, ReasonTLS, ReasonTimeout, ReasonResource, ReasonPermission:
		return reason
	}
	return ReasonTLS
}

func tcpIsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// tlsRootsFrom returns the roots to verify servers against: nil (the system
// roots) without a CA file, else the system roots plus the file's
// certificates.
func tlsRootsFrom(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate found", caFile)
	}
	return pool, nil
}

// unverifiedLeaf returns the server's leaf certificate from a failed
// verification, so its expiry can be reported although it was not accepted.
func unverifiedLeaf(err error) *x509.Certificate {
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
		return ve.UnverifiedCertificates[0]
	}
	return nil
}

// leafDaysLeft is the number of days until the certificate's NotAfter,
// negative once it has expired.
func leafDaysLeft(c *x509.Certificate, now time.Time) float64 {
	return c.NotAfter.Sub(now).Hours() / 24
}

// certValidityPhrase says why a certificate is outside its validity period.
func certValidityPhrase(c *x509.Certificate, now time.Time) string {
	if now.Before(c.NotBefore) {
		return fmt.Sprintf("certificate not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("certificate expired %.1f days ago (not after %s)",
		-leafDaysLeft(c, now), c.NotAfter.UTC().Format(time.RFC3339))
}

func newTLSInfo(leaf *x509.Certificate, serverName string) *TLSInfo {
	return &TLSInfo{
		ServerName: serverName,
		Subject:    leaf.Subject.String(),
		Issuer:     leaf.Issuer.String(),
		DNSNames:   leaf.DNSNames,
		NotBefore:  leaf.NotBefore.UTC(),
		NotAfter:   leaf.NotAfter.UTC(),
	}
}

// deadlineWithin returns " within 2.00s" (the time from start to ctx's
// deadline) or "" when ctx has no deadline.
func deadlineWithin(ctx context.Context, start time.Time) string {
	if dl, ok := ctx.Deadline(); ok {
		return " within " + FormatSeconds(max(dl.Sub(start), 0).Round(time.Millisecond).Seconds())
	}
	return ""
}

// tcpFirstLine returns b up to its first line break, without it.
func tcpFirstLine(b []byte) []byte {
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		return b[:i]
	}
	return b
}

// quoteSnippet quotes the start of b for a one-line message: at most max
// bytes (never splitting a UTF-8 sequence), non-printable bytes escaped,
// "..." after the closing quote when cut.
func quoteSnippet(b []byte, max int) string {
	if len(b) <= max {
		return strconv.Quote(string(b))
	}
	i := max
	for i > max-utf8.UTFMax && i > 0 && !utf8.RuneStart(b[i]) {
		i--
	}
	return strconv.Quote(string(b[:i])) + "..."
}
