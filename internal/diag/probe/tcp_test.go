package probe

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// tcpTestCert makes a self-signed certificate for 127.0.0.1, ::1 and
// localhost, valid from notBefore to notAfter, and writes it as PEM into a
// temporary file usable as a rule's ca_file.
func tcpTestCert(t *testing.T, notBefore, notAfter time.Time) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "netops test", Organization: []string{"netops"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// tcpTestServe listens on network/addr (loopback) and runs handle for every
// connection, which is closed when handle returns. Everything is closed and
// waited for when the test ends. It returns the listening address.
func tcpTestServe(t *testing.T, network, addr string, tlsCfg *tls.Config, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// tcpTestHold keeps a connection open until the peer closes it.
func tcpTestHold(c net.Conn) { _, _ = bufio.NewReader(c).ReadString(0) }

// tcpTestClosedPort returns a loopback address whose port is held closed
// for the test (see holdClosed), so that a connect to it is refused.
func tcpTestClosedPort(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(scanTestClosed(t, "127.0.0.1", 1)[0]))
}

func tcpTestMetric(t *testing.T, res Result, name string) float64 {
	t.Helper()
	m, ok := res.Metric(name)
	if !ok {
		t.Fatalf("metric %q missing in %+v", name, res.Metrics)
	}
	return m.Value
}

func TestTCP(t *testing.T) {
	now := time.Now()
	goodCert, goodCA := tcpTestCert(t, now.Add(-time.Hour), now.Add(30*24*time.Hour))
	expiredCert, expiredCA := tcpTestCert(t, now.Add(-60*24*time.Hour), now.Add(-3*24*time.Hour))

	open := tcpTestServe(t, "tcp", "127.0.0.1:0", nil, func(net.Conn) {})
	banner := tcpTestServe(t, "tcp", "127.0.0.1:0", nil, func(c net.Conn) {
		_, _ = c.Write([]byte("SSH-2.0-test\r\n"))
		tcpTestHold(c)
	})
	silent := tcpTestServe(t, "tcp", "127.0.0.1:0", nil, tcpTestHold)
	binary := tcpTestServe(t, "tcp", "127.0.0.1:0", nil, func(c net.Conn) {
		_, _ = c.Write([]byte("\x00\x01abc\xff"))
		tcpTestHold(c)
	})
	pingPong := tcpTestServe(t, "tcp", "127.0.0.1:0", nil, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		if line == "PING\r\n" {
			_, _ = c.Write([]byte("PONG netops\r\n"))
		} else {
			_, _ = c.Write([]byte("ERR unknown command\r\n"))
		}
		tcpTestHold(c)
	})
	tlsHello := func(c net.Conn) {
		_, _ = c.Write([]byte("220 ready\r\n"))
		tcpTestHold(c)
	}
	tlsGood := tcpTestServe(t, "tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{goodCert}}, tlsHello)
	tlsExpired := tcpTestServe(t, "tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{expiredCert}}, tlsHello)
	closed := tcpTestClosedPort(t)
	openPort, _ := Port(open)

	tests := []struct {
		name    string
		addr    string
		rule    config.Rule
		timeout time.Duration
		status  Status
		reason  string
		msg     []string // substrings of the message
		metrics []string
		check   func(t *testing.T, res Result)
	}{
		{name: "open", addr: open, status: OK, msg: []string{"connected in "}, metrics: []string{"rtt"},
			check: func(t *testing.T, res Result) {
				if _, ok := res.Metric(MetricDNS); ok {
					t.Error("dns metric for an IP literal")
				}
				if d := res.Details.(*TCPDetails); d.Remote != open {
					t.Errorf("remote = %q, want %q", d.Remote, open)
				}
			}},
		{name: "open tcp url", addr: "tcp://" + open, status: OK, metrics: []string{"rtt"}},
		{name: "port from rule", addr: "127.0.0.1", rule: config.Rule{Port: openPort}, status: OK},
		{name: "host name", addr: "localhost", rule: config.Rule{Port: openPort}, status: OK,
			metrics: []string{"rtt", "dns"}},
		{name: "refused", addr: closed, status: Critical, reason: ReasonRefused, msg: []string{"refused", closed}},
		{name: "no port", addr: "127.0.0.1", status: Unknown, reason: ReasonError,
			msg: []string{"no port: set port in the rule"}},
		{name: "bad expect", addr: open, rule: config.Rule{Expect: "("}, status: Unknown, reason: ReasonError,
			msg: []string{"not a valid regexp"}},
		{name: "banner", addr: banner, rule: config.Rule{Expect: "^SSH-"}, status: OK,
			msg: []string{`banner "SSH-2.0-test"`},
			check: func(t *testing.T, res Result) {
				if got := res.Details.(*TCPDetails).Banner; got != "SSH-2.0-test\r\n" {
					t.Errorf("banner = %q", got)
				}
			}},
		{name: "banner mismatch", addr: banner, rule: config.Rule{Expect: "^HTTP/"}, timeout: 300 * time.Millisecond,
			status: Critical, reason: ReasonMismatch, msg: []string{`"SSH-2.0-test\r\n"`, "does not match", "timed out"}},
		{name: "silent port", addr: silent, rule: config.Rule{Expect: "^SSH-"}, timeout: 300 * time.Millisecond,
			status: Critical, reason: ReasonTimeout, msg: []string{"accepted the connection and said nothing"}},
		{name: "closed without data", addr: open, rule: config.Rule{Expect: "^SSH-"}, status: Critical,
			reason: ReasonMismatch, msg: []string{"closed the connection without sending anything"}},
		{name: "non-printable escaped", addr: binary, rule: config.Rule{Expect: "^SSH-"}, timeout: 300 * time.Millisecond,
			status: Critical, reason: ReasonMismatch, msg: []string{`"\x00\x01abc\xff"`}},
		{name: "send expect", addr: pingPong, rule: config.Rule{Send: "PING\r\n", Expect: `^PONG`}, status: OK,
			msg: []string{`answer "PONG netops"`},
			check: func(t *testing.T, res Result) {
				if d := res.Details.(*TCPDetails); d.Sent != 6 {
					t.Errorf("sent = %d, want 6", d.Sent)
				}
			}},
		{name: "send expect mismatch", addr: pingPong, rule: config.Rule{Send: "HELO\r\n", Expect: `^PONG`},
			timeout: 300 * time.Millisecond, status: Critical, reason: ReasonMismatch, msg: []string{`"ERR unknown command\r\n"`}},
		{name: "send only", addr: pingPong, rule: config.Rule{Send: "PING\r\n"}, status: OK, msg: []string{"sent 6 bytes"}},
		{name: "tls", addr: tlsGood, rule: config.Rule{TLS: true, CAFile: goodCA, Expect: "^220 "}, status: OK,
			msg:     []string{"TLS 1.3 handshake", "certificate expires in", `banner "220 ready"`},
			metrics: []string{"rtt", "tls_handshake", "cert_days_left"},
			check: func(t *testing.T, res Result) {
				if d := tcpTestMetric(t, res, MetricCertDays); d < 29.9 || d > 30.1 {
					t.Errorf("cert_days_left = %v, want ~30", d)
				}
				d := res.Details.(*TCPDetails)
				if d.TLS == nil || !d.TLS.Verified || d.TLS.Version != "TLS 1.3" || !strings.Contains(d.TLS.Subject, "netops test") {
					t.Errorf("tls details = %+v", d.TLS)
				}
			}},
		{name: "tls unknown authority", addr: tlsGood, rule: config.Rule{TLS: true}, status: Critical, reason: ReasonTLS,
			msg: []string{"TLS handshake failed", "unknown authority"}, metrics: []string{"rtt", "cert_days_left"},
			check: func(t *testing.T, res Result) {
				if d := res.Details.(*TCPDetails); d.TLS == nil || d.TLS.Verified || d.TLS.Error == "" {
					t.Errorf("tls details = %+v", d.TLS)
				}
			}},
		{name: "tls expired", addr: tlsExpired, rule: config.Rule{TLS: true, CAFile: expiredCA}, status: Critical,
			reason: ReasonTLSExpired, msg: []string{"certificate expired 3.0 days ago"},
			check: func(t *testing.T, res Result) {
				if d := tcpTestMetric(t, res, MetricCertDays); d > -2.9 || d < -3.1 {
					t.Errorf("cert_days_left = %v, want ~-3", d)
				}
			}},
		{name: "tls to plain port", addr: banner, rule: config.Rule{TLS: true, CAFile: goodCA}, status: Critical,
			reason: ReasonTLS, msg: []string{"TLS handshake failed"}},
		{name: "bad ca file", addr: tlsGood, rule: config.Rule{TLS: true, CAFile: filepath.Join(t.TempDir(), "none.pem")},
			status: Unknown, reason: ReasonError, msg: []string{"ca_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := probeTestRun(t, TCP, Target{Name: "t", Type: "service", Address: tc.addr}, tc.rule, tc.timeout)
			tcpTestCheck(t, res, tc.status, tc.reason, tc.msg, tc.metrics)
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
}

// tcpTestCheck asserts a result's status, reason, message parts and metrics.
func tcpTestCheck(t *testing.T, res Result, status Status, reason string, msg, metrics []string) {
	t.Helper()
	if res.Status != status || res.Reason != reason {
		t.Fatalf("got %v/%q (%s), want %v/%q", res.Status, res.Reason, res.Message, status, reason)
	}
	for _, m := range msg {
		if !strings.Contains(res.Message, m) {
			t.Errorf("message %q lacks %q", res.Message, m)
		}
	}
	for _, m := range metrics {
		tcpTestMetric(t, res, m)
	}
	if len(metrics) > 0 && res.Metrics[0].Name != metrics[0] {
		t.Errorf("first metric = %q, want %q", res.Metrics[0].Name, metrics[0])
	}
}

func TestTCPIPv6(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	addr := tcpTestServe(t, "tcp6", "[::1]:0", nil, func(c net.Conn) {
		_, _ = c.Write([]byte("hello\n"))
		tcpTestHold(c)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res := TCP(ctx, Target{Address: addr}, config.Rule{Expect: "^hello"})
	tcpTestCheck(t, res, OK, "", []string{`banner "hello"`}, []string{"rtt"})
}

func TestTCPCancelled(t *testing.T) {
	silent := tcpTestServe(t, "tcp", "127.0.0.1:0", nil, tcpTestHold)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan Result, 1)
	go func() { done <- TCP(ctx, Target{Address: silent}, config.Rule{Expect: "x"}) }()
	select {
	case res := <-done:
		if res.Status != Unknown || !strings.Contains(res.Message, "cancelled") {
			t.Fatalf("cancelled check: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("probe ignored the cancelled context")
	}
}

func TestQuoteSnippet(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"SSH-2.0-x", 80, `"SSH-2.0-x"`},
		{"abc\r\n", 80, `"abc\r\n"`},
		{"abcdef", 3, `"abc"...`},
		{"aé", 2, `"a"...`}, // never splits the 2-byte é
		{"\x00\xff", 80, `"\x00\xff"`},
	}
	for _, tc := range tests {
		if got := quoteSnippet([]byte(tc.in), tc.max); got != tc.want {
			t.Errorf("quoteSnippet(%q, %d) = %s, want %s", tc.in, tc.max, got, tc.want)
		}
	}
}

// probeTestRun runs one probe within timeout (default 5s), logs what it saw
// and fails the test if the probe did not return soon after its deadline.
func probeTestRun(t *testing.T, fn Func, target Target, rule config.Rule, timeout time.Duration) Result {
	t.Helper()
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	res := fn(ctx, target, rule)
	t.Logf("%v %s: %s %v", res.Status, res.Reason, res.Message, res.Metrics)
	if el := time.Since(start); el > timeout+2*time.Second {
		t.Errorf("probe returned after %v, past its %v deadline", el, timeout)
	}
	return res
}
