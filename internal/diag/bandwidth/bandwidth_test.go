package bandwidth

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// startServer runs s on a free loopback port until the test ends.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

func TestMeasureUploadDownload(t *testing.T) {
	addr := startServer(t, &Server{})
	for _, dir := range []Direction{Upload, Download} {
		start := time.Now()
		m, err := Measure(t.Context(), addr, dir, 300*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		el := time.Since(start)
		if m.Direction != dir || m.Bytes <= 0 || m.Seconds <= 0 || m.Mbps <= 0 {
			t.Errorf("%s: %+v", dir, m)
		}
		if m.Seconds > 2 || el < 250*time.Millisecond || el > 5*time.Second {
			t.Errorf("%s: test of 300ms measured %.3fs, took %v", dir, m.Seconds, el)
		}
		t.Logf("%s: %d bytes in %.3fs = %.0f Mbps", dir, m.Bytes, m.Seconds, m.Mbps)
	}
}

func TestServerRejectsBadMagic(t *testing.T) {
	addr := startServer(t, &Server{})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	if g, err := br.ReadString('\n'); err != nil || g != greeting {
		t.Fatalf("greeting %q, %v", g, err)
	}
	// A short, wrong header: rejected at once, not after the header timeout.
	if _, err := io.WriteString(conn, "GET /"); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ERR bad magic") {
		t.Fatalf("reply %q, %v", line, err)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("connection not closed after rejection: %v", err)
	}
}

func TestServerRejectsLongTestAndBusy(t *testing.T) {
	addr := startServer(t, &Server{MaxDuration: time.Second, MaxClients: 1})
	if _, err := Measure(t.Context(), addr, Download, 2*time.Second); !errors.Is(err, ErrRejected) ||
		!strings.Contains(err.Error(), "out of range") {
		t.Errorf("long test: %v", err)
	}
	// Hold the only slot with a running test, then ask for another.
	done := make(chan error, 1)
	go func() {
		// The rejected connection above may still hold its slot for a moment
		// after the client read the rejection: retry while the server says busy.
		var err error
		for range 200 {
			_, err = Measure(t.Context(), addr, Download, 800*time.Millisecond)
			if err == nil || !strings.Contains(err.Error(), "busy") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		done <- err
	}()
	// Until the first test holds the slot, a short test may still get it
	// (a loaded machine starts the goroutine late): ask again until the
	// server says busy. The first test's retries outlast these.
	var err error
	for range 20 {
		time.Sleep(20 * time.Millisecond)
		if _, err = Measure(t.Context(), addr, Upload, 50*time.Millisecond); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "busy") {
		t.Errorf("second test: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("first test: %v", err)
	}
}

func TestMeasureHonoursContext(t *testing.T) {
	addr := startServer(t, &Server{})
	for _, dir := range []Direction{Upload, Download} {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		start := time.Now()
		_, err := Measure(ctx, addr, dir, 10*time.Second)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err %v, want deadline exceeded", dir, err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("%s: returned after %v", dir, el)
		}
	}
}

func TestMeasureNotNetops(t *testing.T) {
	// A silent server (like iperf3, which waits for its client) and one that
	// talks another protocol.
	for name, greet := range map[string]string{"silent": "", "other": "SSH-2.0-OpenSSH_9.6\r\n"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, greet)
			_, _ = io.Copy(io.Discard, c)
		}()
		_, err = Measure(t.Context(), ln.Addr().String(), Upload, 100*time.Millisecond)
		ln.Close()
		if !errors.Is(err, ErrNotNetops) {
			t.Errorf("%s: err %v, want ErrNotNetops", name, err)
		}
	}
}

func TestMeasureRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := Measure(t.Context(), addr, Upload, 100*time.Millisecond); err == nil {
		t.Fatal("no error from a closed port")
	}
	if _, err := Measure(t.Context(), addr, "sideways", time.Second); err == nil {
		t.Error("unknown direction accepted")
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- (&Server{}).Serve(ctx, ln) }()
	// A test in progress is cut when the server stops.
	mErr := make(chan error, 1)
	go func() {
		_, err := Measure(t.Context(), ln.Addr().String(), Download, 30*time.Second)
		mErr <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	select {
	case <-mErr:
	case <-time.After(5 * time.Second):
		t.Fatal("client still running after the server stopped")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open")
	}
}

// BenchmarkBandwidthLoopback reports loopback throughput of a 1s test each
// way against an in-process server (Mbps metrics).
func BenchmarkBandwidthLoopback(b *testing.B) {
	addr := startServer(b, &Server{})
	for _, dir := range []Direction{Upload, Download} {
		b.Run(string(dir), func(b *testing.B) {
			var bytes int64
			var secs float64
			for b.Loop() {
				m, err := Measure(b.Context(), addr, dir, time.Second)
				if err != nil {
					b.Fatal(err)
				}
				bytes += m.Bytes
				secs += m.Seconds
			}
			b.ReportMetric(float64(bytes)*8/secs/1e6, "Mbps")
			b.SetBytes(bytes / int64(b.N))
		})
	}
}
