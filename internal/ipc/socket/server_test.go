package socket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve starts a Server on a random loopback port, stopped when t ends.
func serve(t *testing.T, h Handler, o Options, lo ListenOptions) (*Server, string, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := Listen(ctx, "127.0.0.1:0", lo)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(h, o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String(), cancel
}

func upper(_ context.Context, f Frame) ([]byte, error) {
	return bytes.ToUpper(f.Data), nil
}

func exchange(t *testing.T, addr string, req Request, do DialOptions) (string, Result, error) {
	t.Helper()
	nc, err := Dial(t.Context(), addr, do)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	req.Out = &out
	res, err := Exchange(t.Context(), nc, req)
	return out.String(), res, err
}

func TestLinesReplyRoundTrip(t *testing.T) {
	s, addr, _ := serve(t, upper, Options{}, ListenOptions{})
	out, res, err := exchange(t, addr, Request{Input: strings.NewReader("hello\r\nworld\n\nlast"), Reply: true, Wait: time.Minute}, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out != "HELLO\nWORLD\nLAST\n" {
		t.Fatalf("reply %q", out)
	}
	if !res.PeerClose {
		t.Error("listener did not close the connection after the peer's EOF")
	}
	st := s.Stats()
	if st.Frames != 3 || st.Bytes != 14 || st.Connections != 1 || st.Replies != 3 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLengthReplyRoundTrip(t *testing.T) {
	_, addr, _ := serve(t, upper, Options{Framing: Length}, ListenOptions{})
	out, _, err := exchange(t, addr, Request{Message: []byte("a\nb"), Framing: Length, Reply: true, Wait: time.Minute}, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out != "A\nB" {
		t.Fatalf("reply %q", out)
	}
	// Raw frames on a plain connection, several in one write.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var b []byte
	for _, m := range []string{"x", "", "yz"} {
		b, _ = AppendFrame(b, Length, []byte(m))
	}
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	nc.(*net.TCPConn).CloseWrite()
	got, err := readAll(t, NewReader(nc, Length, 0))
	if err != nil || strings.Join(got, "|") != "X|YZ" {
		t.Fatalf("replies %q, %v", got, err)
	}
}

func TestNoReplyHandler(t *testing.T) {
	var mu sync.Mutex
	var got []string
	_, addr, _ := serve(t, func(_ context.Context, f Frame) ([]byte, error) {
		mu.Lock()
		got = append(got, string(f.Data))
		mu.Unlock()
		return nil, nil
	}, Options{}, ListenOptions{})
	// Exchange returns once the listener closed: every frame was handled.
	_, res, err := exchange(t, addr, Request{Message: []byte("one"), Wait: time.Minute}, DialOptions{})
	if err != nil || !res.PeerClose {
		t.Fatalf("exchange: %v, %+v", err, res)
	}
	mu.Lock()
	n, first := len(got), got[0]
	mu.Unlock()
	if n != 1 || first != "one" {
		t.Fatalf("handled %d frames, first %q", n, first)
	}
	// --reply with nothing sent back: ErrNoReply.
	_, _, err = exchange(t, addr, Request{Message: []byte("two"), Reply: true, Wait: time.Minute}, DialOptions{})
	if !errors.Is(err, ErrNoReply) {
		t.Fatalf("err = %v, want ErrNoReply", err)
	}
}

func TestOversizedFrameClosesConnection(t *testing.T) {
	for _, f := range []Framing{Lines, Length} {
		t.Run(f.String(), func(t *testing.T) {
			var handled sync.WaitGroup
			s, addr, _ := serve(t, func(context.Context, Frame) ([]byte, error) { handled.Done(); return nil, nil }, Options{Framing: f, MaxFrame: 8}, ListenOptions{})
			handled.Add(1)
			_, _, err := exchange(t, addr, Request{Input: strings.NewReader("ok\n" + strings.Repeat("x", 100000) + "\n"), Framing: f, Wait: time.Minute}, DialOptions{})
			if f == Length {
				handled.Done() // the whole input is one frame: nothing handled
			}
			handled.Wait()
			if !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "larger than the limit of 8 bytes") && !strings.Contains(err.Error(), "longer than the limit of 8 bytes") {
				t.Fatalf("err = %v", err)
			}
			if st := s.Stats(); st.Errors != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestMaxConns(t *testing.T) {
	seen := make(chan struct{}, 10)
	s, addr, _ := serve(t, func(context.Context, Frame) ([]byte, error) { seen <- struct{}{}; return nil, nil }, Options{MaxConns: 1}, ListenOptions{})
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	fmt.Fprintln(first, "hold")
	<-seen // the first connection is being served
	_, _, err = exchange(t, addr, Request{Message: []byte("second"), Wait: time.Minute}, DialOptions{})
	if !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "too many connections (max 1)") {
		t.Fatalf("err = %v", err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Active != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Once the first is gone, a new connection is served.
	first.Close()
	for {
		_, _, err = exchange(t, addr, Request{Message: []byte("third"), Wait: time.Minute}, DialOptions{})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrPeer) { // refused while the first was still closing
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-seen
}

func TestIdleTimeout(t *testing.T) {
	_, addr, _ := serve(t, upper, Options{IdleTimeout: 50 * time.Millisecond}, ListenOptions{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Send nothing: the listener says why and closes.
	b, err := io.ReadAll(nc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), ErrorPrefix+"idle for 50ms") {
		t.Fatalf("got %q", b)
	}
}

func TestHandlerErrors(t *testing.T) {
	_, addr, _ := serve(t, func(_ context.Context, f Frame) ([]byte, error) {
		switch string(f.Data) {
		case "reject":
			return []byte("no"), fmt.Errorf("%w: not today", ErrRejected)
		case "fail":
			return nil, errors.New("queue jobs: backend unavailable")
		}
		return []byte("ok " + string(f.Data)), nil
	}, Options{}, ListenOptions{})
	out, _, err := exchange(t, addr, Request{Input: strings.NewReader("a\nreject\nb\nfail\nnever\n"), Reply: true, Wait: time.Minute}, DialOptions{})
	if !errors.Is(err, ErrPeer) || err.Error() != "queue jobs: backend unavailable: refused by the listener" {
		t.Fatalf("err = %v", err)
	}
	if out != "ok a\nno\nok b\n" {
		t.Fatalf("out %q", out)
	}
}

func TestConcurrentConnections(t *testing.T) {
	var mu sync.Mutex
	perConn := map[uint64][]string{}
	s, addr, _ := serve(t, func(_ context.Context, f Frame) ([]byte, error) {
		mu.Lock()
		perConn[f.Conn] = append(perConn[f.Conn], string(f.Data))
		mu.Unlock()
		return f.Data, nil
	}, Options{MaxConns: 100}, ListenOptions{})
	const clients, frames = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var in strings.Builder
			for i := range frames {
				fmt.Fprintf(&in, "%d-%d\n", c, i)
			}
			nc, err := Dial(context.Background(), addr, DialOptions{})
			if err != nil {
				errs <- err
				return
			}
			var out bytes.Buffer
			if _, err := Exchange(context.Background(), nc, Request{Input: strings.NewReader(in.String()), Reply: true, Out: &out, Wait: time.Minute}); err != nil {
				errs <- err
				return
			}
			if out.String() != in.String() {
				errs <- fmt.Errorf("client %d: replies differ", c)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := s.Stats(); st.Frames != clients*frames || st.Connections != clients {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, fs := range perConn {
		prefix := strings.SplitN(fs[0], "-", 2)[0]
		for i, f := range fs {
			if f != fmt.Sprintf("%s-%d", prefix, i) {
				t.Fatalf("conn %d: frame %d is %q: out of order", id, i, f)
			}
		}
	}
}

func TestShutdownEndsConnections(t *testing.T) {
	handled := make(chan struct{}, 1)
	s, addr, cancel := serve(t, func(context.Context, Frame) ([]byte, error) { handled <- struct{}{}; return nil, nil }, Options{}, ListenOptions{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintln(nc, "before")
	<-handled
	cancel()
	// The listener closes the idle connection on shutdown.
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Frames != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestListenErrors(t *testing.T) {
	ln, err := Listen(t.Context(), "127.0.0.1:0", ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = Listen(t.Context(), addr, ListenOptions{})
	if !errors.Is(err, ErrAddrInUse) || err.Error() != "listen "+addr+": address already in use" {
		t.Fatalf("port in use: %v", err)
	}
	for _, a := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.invalid:0", "[::]:0"} {
		if _, err := Listen(t.Context(), a, ListenOptions{}); !errors.Is(err, ErrRemoteNotAllowed) {
			t.Errorf("Listen(%s): %v, want ErrRemoteNotAllowed", a, err)
		}
	}
	if _, err := Listen(t.Context(), "127.0.0.1", ListenOptions{}); err == nil {
		t.Error("address without port accepted")
	}
	for _, a := range []string{"127.0.0.1:1", "localhost:1", "[::1]:1", "127.9.9.9:1"} {
		if !IsLoopback(a) {
			t.Errorf("IsLoopback(%s) = false", a)
		}
	}
}

func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(t.Context(), addr, DialOptions{Timeout: 5 * time.Second})
	if !errors.Is(err, ErrUnavailable) || err.Error() != "connect "+addr+": connection refused" {
		t.Fatalf("err = %v", err)
	}
}

// testCert makes a self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "netops test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestTLSRoundTrip(t *testing.T) {
	cert, pool := testCert(t)
	s, addr, _ := serve(t, upper, Options{}, ListenOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	out, _, err := exchange(t, addr, Request{Message: []byte("secret"), Reply: true, Wait: time.Minute}, DialOptions{TLS: &tls.Config{RootCAs: pool}})
	if err != nil || out != "SECRET\n" {
		t.Fatalf("reply %q, %v", out, err)
	}
	// A client that does not trust the certificate fails the handshake.
	_, err = Dial(t.Context(), addr, DialOptions{TLS: &tls.Config{RootCAs: x509.NewCertPool()}})
	if err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("untrusted: %v", err)
	}
	// A plain-text client gets nowhere: its "frame" is not TLS.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(nc, "plain")
	_, _ = io.ReadAll(bufio.NewReader(nc))
	nc.Close()
	if st := s.Stats(); st.Frames != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExecHandler(t *testing.T) {
	for _, p := range []string{"tr", "sh"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
	var stderr bytes.Buffer
	h := ExecHandler(ExecOptions{Argv: []string{"tr", "a-z", "A-Z"}, Stderr: &stderr})
	reply, err := h(t.Context(), Frame{Data: []byte("abc"), Conn: 1, Seq: 1, Remote: "127.0.0.1:1"})
	if err != nil || string(reply) != "ABC" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	env := ExecHandler(ExecOptions{Argv: []string{"sh", "-c", `echo "$NETOPS_IPC_REMOTE $NETOPS_IPC_CONN $NETOPS_IPC_FRAME"; exit 3`}})
	reply, err = env(t.Context(), Frame{Data: []byte("x"), Conn: 7, Seq: 2, Remote: "127.0.0.1:5"})
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "exit status 3") || string(reply) != "127.0.0.1:5 7 2\n" {
		t.Fatalf("reply %q, err %v", reply, err)
	}
	missing := ExecHandler(ExecOptions{Argv: []string{"/nonexistent/handler"}})
	if _, err := missing(t.Context(), Frame{Data: []byte("x")}); err == nil || errors.Is(err, ErrRejected) {
		t.Fatalf("missing program: %v", err)
	}
	slow := ExecHandler(ExecOptions{Argv: []string{"sh", "-c", "sleep 30"}, Timeout: 50 * time.Millisecond})
	if _, err := slow(t.Context(), Frame{Data: []byte("x")}); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow: %v", err)
	}
}
