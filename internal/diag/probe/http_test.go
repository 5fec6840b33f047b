package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

func httpTestHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello netops")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "method=%s header=%s ua=%s body=%s", r.Method, r.Header.Get("X-Test"), r.UserAgent(), body)
	})
	mux.HandleFunc("/host", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Host)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("a", httpBodyMax+1000) + "NEEDLE"))
	})
	return mux
}

// httpTestTLSServer starts an HTTPS server on loopback with cert.
func httpTestTLSServer(t *testing.T, cert tls.Certificate) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(httpTestHandler())
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func TestHTTP(t *testing.T) {
	plain := httptest.NewServer(httpTestHandler())
	t.Cleanup(plain.Close)
	plainPort, _ := Port(plain.URL)

	now := time.Now()
	soonCert, soonCA := tcpTestCert(t, now.Add(-time.Hour), now.Add(5*24*time.Hour))
	expiredCert, expiredCA := tcpTestCert(t, now.Add(-60*24*time.Hour), now.Add(-3*24*time.Hour))
	soon := httpTestTLSServer(t, soonCert)
	expired := httpTestTLSServer(t, expiredCert)
	soonPort, _ := Port(soon.URL)
	closed := tcpTestClosedPort(t)
	no := false

	tests := []struct {
		name    string
		addr    string
		rule    config.Rule
		timeout time.Duration
		status  Status
		reason  string
		msg     []string
		metrics []string
		check   func(t *testing.T, res Result)
	}{
		{name: "200", addr: plain.URL + "/ok", status: OK, msg: []string{"HTTP 200 OK in "},
			metrics: []string{"rtt", "dns", "connect", "first_byte", "total"},
			check: func(t *testing.T, res Result) {
				d := res.Details.(*HTTPDetails)
				if d.Status != 200 || d.Method != "GET" || d.FinalURL != plain.URL+"/ok" || d.BodyBytes != 12 || d.TLS != nil {
					t.Errorf("details = %+v", d)
				}
				if _, ok := res.Metric("tls"); ok {
					t.Error("tls metric on plain http")
				}
				if rtt, total := tcpTestMetric(t, res, "rtt"), tcpTestMetric(t, res, "total"); rtt != total || rtt <= 0 {
					t.Errorf("rtt %v, total %v", rtt, total)
				}
			}},
		{name: "503", addr: plain.URL + "/fail", status: Critical, reason: ReasonStatus,
			msg: []string{"HTTP 503 Service Unavailable (expected 200-399)"}, metrics: []string{"rtt"}},
		{name: "503 expected", addr: plain.URL + "/fail", rule: config.Rule{Status: []int{503}}, status: OK},
		{name: "200 not in list", addr: plain.URL + "/ok", rule: config.Rule{Status: []int{201, 204}}, status: Critical,
			reason: ReasonStatus, msg: []string{"expected 201, 204"}},
		{name: "redirect followed", addr: plain.URL + "/redirect", status: OK, msg: []string{"after 1 redirect(s)"},
			check: func(t *testing.T, res Result) {
				d := res.Details.(*HTTPDetails)
				if d.Status != 200 || d.Redirects != 1 || d.FinalURL != plain.URL+"/ok" {
					t.Errorf("details = %+v", d)
				}
			}},
		{name: "redirect not followed", addr: plain.URL + "/redirect", rule: config.Rule{FollowRedirects: &no},
			status: OK, msg: []string{"HTTP 302 Found"},
			check: func(t *testing.T, res Result) {
				if d := res.Details.(*HTTPDetails); d.Status != 302 || d.Redirects != 0 {
					t.Errorf("details = %+v", d)
				}
			}},
		{name: "redirect not followed wants 200", addr: plain.URL + "/redirect",
			rule: config.Rule{FollowRedirects: &no, Status: []int{200}}, status: Critical, reason: ReasonStatus,
			msg: []string{"HTTP 302 Found (expected 200)"}},
		{name: "redirect loop", addr: plain.URL + "/loop", status: Critical, reason: ReasonError,
			msg: []string{"stopped after 10 redirects"}},
		{name: "body match", addr: plain.URL + "/ok", rule: config.Rule{Expect: `hello \w+`}, status: OK,
			msg: []string{`body matches "hello \\w+"`}},
		{name: "body mismatch", addr: plain.URL + "/ok", rule: config.Rule{Expect: `^bye`}, status: Critical,
			reason: ReasonMismatch, msg: []string{`does not match "^bye"`, `starts with "hello netops"`}},
		{name: "body beyond 1 MiB", addr: plain.URL + "/big", rule: config.Rule{Expect: `NEEDLE`}, status: Critical,
			reason: ReasonMismatch, msg: []string{"first 1 MiB of the body"}},
		{name: "header sent", addr: plain.URL + "/echo", rule: config.Rule{Headers: map[string]string{"X-Test": "abc"},
			Expect: `header=abc ua=netops-diag `}, status: OK},
		{name: "host header", addr: plain.URL + "/host", rule: config.Rule{Headers: map[string]string{"Host": "example.test"},
			Expect: `^example\.test$`}, status: OK},
		{name: "post body", addr: plain.URL + "/echo", rule: config.Rule{Method: "post", Body: "payload=1",
			Expect: `^method=POST .* body=payload=1$`}, status: OK,
			check: func(t *testing.T, res Result) {
				if d := res.Details.(*HTTPDetails); d.Method != "POST" {
					t.Errorf("method = %q", d.Method)
				}
			}},
		{name: "path overrides url path", addr: plain.URL + "/fail?x=1", rule: config.Rule{Path: "/ok"}, status: OK,
			check: func(t *testing.T, res Result) {
				if d := res.Details.(*HTTPDetails); d.URL != plain.URL+"/ok?x=1" {
					t.Errorf("url = %q", d.URL)
				}
			}},
		{name: "host target", addr: "127.0.0.1", rule: config.Rule{Port: plainPort, Path: "ok"}, status: OK,
			check: func(t *testing.T, res Result) {
				if d := res.Details.(*HTTPDetails); d.URL != plain.URL+"/ok" {
					t.Errorf("url = %q, want %q", d.URL, plain.URL+"/ok")
				}
			}},
		{name: "host name target", addr: "localhost:" + strconv.Itoa(plainPort), rule: config.Rule{Path: "/ok"}, status: OK,
			metrics: []string{"rtt", "dns"}},
		{name: "refused", addr: "http://" + closed + "/", status: Critical, reason: ReasonRefused,
			msg: []string{"refused"}},
		{name: "timeout", addr: plain.URL + "/slow", timeout: 300 * time.Millisecond, status: Critical,
			reason: ReasonTimeout, msg: []string{"no response from", "request sent, no answer"},
			// The budget named is what the probe had: the 300 ms timeout less
			// the moments between the check's start and the probe's (a few
			// ms on a busy machine running the subtests in parallel).
			check: func(t *testing.T, res Result) { checkBudget(t, res.Message, 300) }},
		{name: "not http", addr: "ftp://127.0.0.1/x", status: Unknown, reason: ReasonError, msg: []string{"not an http(s) URL"}},
		{name: "bad expect", addr: plain.URL, rule: config.Rule{Expect: "["}, status: Unknown, reason: ReasonError},

		{name: "tls expiring in 5 days", addr: soon.URL + "/ok", rule: config.Rule{CAFile: soonCA}, status: OK,
			msg:     []string{"certificate expires in 5.0 days"},
			metrics: []string{"rtt", "dns", "connect", "tls", "first_byte", "total", "cert_days_left"},
			check: func(t *testing.T, res Result) {
				if d := tcpTestMetric(t, res, MetricCertDays); d < 4.9 || d > 5.1 {
					t.Errorf("cert_days_left = %v, want ~5", d)
				}
				d := res.Details.(*HTTPDetails)
				if d.TLS == nil || !d.TLS.Verified || d.TLS.Version == "" || !strings.Contains(d.TLS.Subject, "CN=netops test") ||
					!strings.Contains(d.TLS.Issuer, "CN=netops test") || d.TLS.NotAfter.Sub(now.Add(5*24*time.Hour)).Abs() > time.Minute {
					t.Errorf("tls details = %+v", d.TLS)
				}
				// Warn at 10 days: WARNING tls-expired; crit at 3 days not crossed.
				warned := res
				ApplyThresholds(&warned, config.Rule{Warn: config.Threshold{Days: 10}, Crit: config.Threshold{Days: 3}})
				if warned.Status != Warning || warned.Reason != ReasonTLSExpired {
					t.Errorf("after thresholds: %v/%s (%s)", warned.Status, warned.Reason, warned.Message)
				}
			}},
		{name: "https host target", addr: "127.0.0.1", rule: config.Rule{TLS: true, Port: soonPort, Path: "/ok", CAFile: soonCA},
			status: OK, metrics: []string{"rtt", "tls", "cert_days_left"}},
		{name: "tls unknown authority", addr: soon.URL + "/ok", status: Critical, reason: ReasonTLS,
			msg: []string{"unknown authority"}, metrics: []string{"cert_days_left"},
			check: func(t *testing.T, res Result) {
				if d := tcpTestMetric(t, res, MetricCertDays); d < 4.9 || d > 5.1 {
					t.Errorf("cert_days_left = %v, want ~5", d)
				}
				if d := res.Details.(*HTTPDetails); d.TLS == nil || d.TLS.Verified || d.TLS.Error == "" {
					t.Errorf("tls details = %+v", d.TLS)
				}
			}},
		{name: "tls expired", addr: expired.URL + "/ok", rule: config.Rule{CAFile: expiredCA}, status: Critical,
			reason: ReasonTLSExpired, msg: []string{"certificate expired 3.0 days ago"}, metrics: []string{"cert_days_left"},
			check: func(t *testing.T, res Result) {
				if d := tcpTestMetric(t, res, MetricCertDays); d > -2.9 || d < -3.1 {
					t.Errorf("cert_days_left = %v, want ~-3", d)
				}
				if d := res.Details.(*HTTPDetails); d.Status != 0 || d.TLS == nil || d.TLS.NotAfter.IsZero() {
					t.Errorf("details = %+v", d)
				}
				kept := res
				ApplyThresholds(&kept, config.Rule{Warn: config.Threshold{Days: 10}})
				if kept.Status != Critical || kept.Reason != ReasonTLSExpired {
					t.Errorf("after thresholds: %v/%s", kept.Status, kept.Reason)
				}
			}},
		{name: "tls expired without ca", addr: expired.URL + "/ok", status: Critical, reason: ReasonTLSExpired,
			metrics: []string{"cert_days_left"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := probeTestRun(t, HTTP, Target{Name: "t", Type: "service", Address: tc.addr}, tc.rule, tc.timeout)
			tcpTestCheck(t, res, tc.status, tc.reason, tc.msg, tc.metrics)
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
}

func TestHTTP2(t *testing.T) {
	now := time.Now()
	cert, ca := tcpTestCert(t, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	s := httptest.NewUnstartedServer(httpTestHandler())
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res := HTTP(ctx, Target{Address: s.URL + "/ok"}, config.Rule{CAFile: ca, Expect: "^hello"})
	tcpTestCheck(t, res, OK, "", []string{"HTTP 200 OK"}, []string{"rtt", "dns", "connect", "tls", "first_byte", "total", "cert_days_left"})
	if d := res.Details.(*HTTPDetails); d.Proto != "HTTP/2.0" || d.TLS == nil || d.TLS.Version != "TLS 1.3" {
		t.Errorf("details = %+v, tls %+v", d, d.TLS)
	}
}

func TestHTTPRedactsPassword(t *testing.T) {
	s := httptest.NewServer(httpTestHandler())
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	addr := strings.Replace(s.URL, "http://", "http://user:secret@", 1) + "/fail"
	res := HTTP(ctx, Target{Address: addr}, config.Rule{})
	d := res.Details.(*HTTPDetails)
	if strings.Contains(res.Message+d.URL+d.FinalURL, "secret") {
		t.Errorf("password shown: %q %q %q", res.Message, d.URL, d.FinalURL)
	}
}

func TestHTTPURL(t *testing.T) {
	tests := []struct {
		addr string
		rule config.Rule
		want string
	}{
		{"https://api.example.com/healthz", config.Rule{}, "https://api.example.com/healthz"},
		{"https://api.example.com", config.Rule{}, "https://api.example.com/"},
		{"https://api.example.com/a?x=1#frag", config.Rule{Path: "/b"}, "https://api.example.com/b?x=1"},
		{"https://api.example.com/a?x=1", config.Rule{Path: "/b?y=2"}, "https://api.example.com/b?y=2"},
		{"http://api.example.com:8080/a", config.Rule{Port: 9090}, "http://api.example.com:9090/a"},
		{"192.0.2.10", config.Rule{}, "http://192.0.2.10/"},
		{"192.0.2.10", config.Rule{Port: 8080, Path: "status"}, "http://192.0.2.10:8080/status"},
		{"192.0.2.10", config.Rule{TLS: true}, "https://192.0.2.10/"},
		{"192.0.2.10:443", config.Rule{}, "https://192.0.2.10:443/"},
		{"2001:db8::1", config.Rule{}, "http://[2001:db8::1]/"},
		{"web1", config.Rule{Port: 8080}, "http://web1:8080/"},
	}
	for _, tc := range tests {
		u, err := httpURL(Target{Address: tc.addr}, tc.rule)
		if err != nil {
			t.Errorf("httpURL(%q, %+v): %v", tc.addr, tc.rule, err)
			continue
		}
		if u.String() != tc.want {
			t.Errorf("httpURL(%q, %+v) = %s, want %s", tc.addr, tc.rule, u, tc.want)
		}
	}
}

// checkBudget checks that msg names the time budget of a check that timed
// out: " within Nms" with N the timeout (maxMs) less a few ms of scheduling
// between the check's start and the probe's, on a busy machine.
func checkBudget(t *testing.T, msg string, maxMs float64) {
	t.Helper()
	var ms float64
	i := strings.Index(msg, "within ")
	if i < 0 {
		t.Fatalf("message %q names no time budget", msg)
	}
	if _, err := fmt.Sscanf(msg[i:], "within %fms", &ms); err != nil || ms <= maxMs*2/3 || ms > maxMs {
		t.Errorf("message %q: budget %v ms (%v), want (%v, %v]", msg, ms, err, maxMs*2/3, maxMs)
	}
}
