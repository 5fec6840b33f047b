package cutproxy_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/testutil/cutproxy"
)

// server accepts connections; each one gets `send` written to it (followed
// by end-of-stream when fin), and whatever the client sends is delivered on
// the returned channel when the client side ends.
func server(t *testing.T, send []byte, fin bool) (string, <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				wrote := make(chan struct{})
				go func() {
					defer close(wrote)
					if _, err := c.Write(send); err == nil && fin {
						_ = c.(*net.TCPConn).CloseWrite()
					}
				}()
				b, _ := io.ReadAll(c)
				<-wrote
				got <- b
			}()
		}
	}()
	return ln.Addr().String(), got
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCutAfterDownstream(t *testing.T) {
	payload := random(t, 300<<10)
	addr, _ := server(t, payload, true)
	p := cutproxy.Start(t, addr)
	const n = 100_001
	p.CutAfter(n)

	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(got) != n || !bytes.Equal(got, payload[:n]) {
		t.Fatalf("got %d bytes, want exactly the first %d", len(got), n)
	}
	if p.Cuts() != 1 || p.Conns() != 1 {
		t.Fatalf("cuts %d conns %d", p.Cuts(), p.Conns())
	}

	// The next connection passes through whole.
	c, err = net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("second connection: %d bytes, %v", len(got), err)
	}
	if p.Cuts() != 1 || p.Conns() != 2 || p.BytesDown() != int64(n+len(payload)) {
		t.Fatalf("cuts %d conns %d down %d", p.Cuts(), p.Conns(), p.BytesDown())
	}
}

func TestCutUpstreamAfter(t *testing.T) {
	addr, received := server(t, nil, false)
	p := cutproxy.Start(t, addr)
	const n = 70_000
	p.CutUpstreamAfter(n)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	payload := random(t, 1<<20)
	_, werr := c.Write(payload) // fails once the proxy resets us
	_, rerr := io.ReadAll(c)
	c.Close()
	if werr == nil && rerr == nil {
		t.Fatal("client saw no error after the upstream cut")
	}
	got := <-received
	if !bytes.Equal(got, payload[:n]) {
		t.Fatalf("server received %d bytes, want exactly the first %d", len(got), n)
	}
	if p.BytesUp() != n || p.Cuts() != 1 {
		t.Fatalf("up %d cuts %d", p.BytesUp(), p.Cuts())
	}
}

func TestCutAfterZero(t *testing.T) {
	addr, _ := server(t, []byte("hello"), true)
	p := cutproxy.Start(t, addr)
	p.CutAfter(0)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if len(got) != 0 {
		t.Fatalf("got %q", got)
	}
}

func TestStallResumeAndCutAll(t *testing.T) {
	addr, _ := server(t, []byte("0123456789"), false)
	p := cutproxy.Start(t, addr)
	p.Stall()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// While stalled nothing gets through. (A broken Stall delivers the 10
	// bytes at once; the deadline only bounds how long we look for them.)
	one := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(one); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a stalled proxy: %d bytes, %v", n, err)
	}
	if p.BytesDown() != 0 {
		t.Fatalf("stalled proxy forwarded %d bytes", p.BytesDown())
	}
	_ = c.SetReadDeadline(time.Time{})
	p.Resume()
	buf := make([]byte, 10)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "0123456789" {
		t.Fatalf("after resume: %q %v", buf, err)
	}
	p.CutAll()
	if _, err := io.ReadAll(c); err == nil {
		t.Fatal("CutAll: expected a reset")
	}
	if p.Cuts() != 1 {
		t.Fatalf("cuts %d", p.Cuts())
	}
}
