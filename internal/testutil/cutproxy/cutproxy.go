// Package cutproxy is a TCP fault-injection proxy for tests: it forwards
// connections from 127.0.0.1:0 to a target and can cut the next connection
// after exactly N bytes in one direction, stall every connection (a peer
// that stops answering), or drop all connections at once.
package cutproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a running proxy. Its methods are safe for concurrent use.
type Proxy struct {
	// Addr is the proxy's "127.0.0.1:PORT"; connect here instead of target.
	Addr   string
	target string
	ln     net.Listener

	mu       sync.Mutex
	cutDown  int64 // for the next connection, -1: none
	cutUp    int64
	stall    chan struct{} // non-nil while stalled; closed by Resume
	live     map[*pair]struct{}
	closed   bool
	closedCh chan struct{}
	wg       sync.WaitGroup

	conns atomic.Int64
	cuts  atomic.Int64
	down  atomic.Int64 // bytes forwarded server -> client
	up    atomic.Int64 // bytes forwarded client -> server
}

// pair is one proxied connection.
type pair struct {
	client, server net.Conn
	once           sync.Once
	cut            atomic.Bool // one direction was cut: the other only drains
}

func (p *pair) abort() {
	p.once.Do(func() {
		resetClose(p.client)
		resetClose(p.server)
	})
}

// resetClose closes c with SO_LINGER 0 so the peer gets a RST.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Start starts a proxy to target ("host:port", loopback) and closes it when
// the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cutproxy: listen: %v", err)
	}
	p := &Proxy{
		Addr: ln.Addr().String(), target: target, ln: ln,
		cutDown: -1, cutUp: -1,
		live: map[*pair]struct{}{}, closedCh: make(chan struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Port returns the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// CutAfter makes the NEXT accepted connection end after exactly n bytes
// were forwarded from the server to the client: the client receives those n
// bytes then end-of-stream, the server side is reset. Later connections
// pass through unless CutAfter is called again.
func (p *Proxy) CutAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutDown = n
}

// CutUpstreamAfter makes the NEXT accepted connection end after exactly n
// bytes were forwarded from the client to the server: the server receives
// those n bytes then end-of-stream, the client side is reset.
func (p *Proxy) CutUpstreamAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutUp = n
}

// Stall stops forwarding in both directions on every connection, current
// and future, while keeping the sockets open: the peer looks alive to TCP
// but never answers (what keepalives must detect). Resume undoes it.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stall == nil {
		p.stall = make(chan struct{})
	}
}

// Resume resumes forwarding after Stall.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stall != nil {
		close(p.stall)
		p.stall = nil
	}
}

// CutAll resets every open connection now; the proxy keeps accepting.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.live {
		p.cuts.Add(1)
		c.abort()
	}
}

// Conns returns how many connections the proxy accepted.
func (p *Proxy) Conns() int { return int(p.conns.Load()) }

// Cuts returns how many connections were cut (by CutAfter,
// CutUpstreamAfter or CutAll).
func (p *Proxy) Cuts() int { return int(p.cuts.Load()) }

// BytesDown returns the bytes forwarded server -> client so far.
func (p *Proxy) BytesDown() int64 { return p.down.Load() }

// BytesUp returns the bytes forwarded client -> server so far.
func (p *Proxy) BytesUp() int64 { return p.up.Load() }

// Close stops accepting, resets every connection and waits for the
// forwarding goroutines (also run by t.Cleanup; safe to call twice).
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.closedCh)
	p.ln.Close()
	for c := range p.live {
		c.abort()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			resetClose(c)
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pr.abort()
			return
		}
		down, up := p.cutDown, p.cutUp
		p.cutDown, p.cutUp = -1, -1
		p.live[pr] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()

		var copies sync.WaitGroup
		copies.Add(2)
		go func() {
			defer p.wg.Done()
			defer copies.Done()
			p.pipe(pr, s, c, down, &p.down)
		}()
		go func() {
			defer p.wg.Done()
			defer copies.Done()
			p.pipe(pr, c, s, up, &p.up)
		}()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			copies.Wait()
			pr.abort()
			p.mu.Lock()
			delete(p.live, pr)
			p.mu.Unlock()
		}()
	}
}

// waitUnstalled blocks while the proxy is stalled; false when closed.
func (p *Proxy) waitUnstalled() bool {
	for {
		p.mu.Lock()
		ch, closed := p.stall, p.closed
		p.mu.Unlock()
		if closed {
			return false
		}
		if ch == nil {
			return true
		}
		select {
		case <-ch:
		case <-p.closedCh:
			return false
		}
	}
}

// pipe copies src -> dst. With limit >= 0 it forwards exactly limit bytes,
// then cuts the connection (see cut). Once the other direction was cut, it
// only reads and drops what src still sends, until src closes.
func (p *Proxy) pipe(pr *pair, src, dst net.Conn, limit int64, counter *atomic.Int64) {
	buf := make([]byte, 32<<10)
	var sent int64
	for {
		if limit >= 0 && sent >= limit {
			p.cut(pr, src, dst)
			return
		}
		n, err := src.Read(buf)
		if n > 0 && !pr.cut.Load() {
			if !p.waitUnstalled() {
				return
			}
			chunk := buf[:n]
			if limit >= 0 && sent+int64(n) > limit {
				chunk = buf[:limit-sent]
			}
			w, werr := dst.Write(chunk)
			sent += int64(w)
			counter.Add(int64(w))
			if werr != nil && !pr.cut.Load() {
				pr.abort()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && !pr.cut.Load() {
				// Pass the half-close on.
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			return
		}
	}
}

// cut ends a connection after its byte limit: dst (the receiver) gets
// end-of-stream right after the forwarded bytes, src (the sender) is reset
// so it sees the connection die. The reverse direction then only drains.
func (p *Proxy) cut(pr *pair, src, dst net.Conn) {
	p.cuts.Add(1)
	pr.cut.Store(true)
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	resetClose(src)
}
