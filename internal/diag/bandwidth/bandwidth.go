// Package bandwidth measures TCP throughput between netops and a netops
// bandwidth server (`netops diag bandwidth-server`).
//
// Protocol (version 1), one test per TCP connection:
//
//	server -> client  greeting  "NETOPS-BW1\n"
//	client -> server  header    "NETOPS-BW1" | direction 'U' or 'D' | duration ms (uint32, big endian)
//	server -> client  reply     "OK\n" or "ERR <reason>\n" (then the server closes)
//	upload:   the client sends for the duration, then half-closes; the server
//	          reads and discards until EOF and answers with a 16-byte trailer:
//	          bytes received (uint64) | nanoseconds from first byte to EOF (uint64)
//	download: the server sends for the duration, then closes; the client counts
//	          until EOF.
//
// The server speaks first so a client can tell within a second that the peer
// is not a netops server (an iperf3 server, for one, waits for its client).
package bandwidth

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults.
const (
	// DefaultPort is the port of a netops bandwidth server.
	DefaultPort = 9116
	// DefaultAddr is where `netops diag bandwidth-server` listens by default.
	DefaultAddr = "127.0.0.1:9116"
	// DefaultMaxDuration is the longest test a Server accepts when
	// Server.MaxDuration is zero.
	DefaultMaxDuration = 60 * time.Second
	// DefaultMaxClients is how many tests a Server runs at once when
	// Server.MaxClients is zero; more get "ERR busy".
	DefaultMaxClients = 4
	// BufferSize is the size of every read and write.
	BufferSize = 256 << 10
)

const (
	magic        = "NETOPS-BW1"
	greeting     = magic + "\n"
	headerLen    = len(magic) + 1 + 4
	trailerLen   = 16
	greetTimeout = 2 * time.Second  // how long a client waits for the greeting
	headerWait   = 10 * time.Second // how long the server waits for the header
	grace        = 10 * time.Second // slack after the test duration before giving up
)

// Direction of a test, seen from the client.
type Direction string

const (
	Upload   Direction = "upload"   // client -> server
	Download Direction = "download" // server -> client
)

func (d Direction) wire() (byte, bool) {
	switch d {
	case Upload:
		return 'U', true
	case Download:
		return 'D', true
	}
	return 0, false
}

// Measurement is the result of one test.
type Measurement struct {
	Direction Direction `json:"direction"`
	Bytes     int64     `json:"bytes"`   // payload bytes the receiving side counted
	Seconds   float64   `json:"seconds"` // from the first byte received to EOF
	Mbps      float64   `json:"mbps"`    // Bytes*8 / Seconds / 1e6
}

func newMeasurement(dir Direction, n int64, d time.Duration) Measurement {
	m := Measurement{Direction: dir, Bytes: n, Seconds: d.Seconds()}
	if d > 0 {
		m.Mbps = float64(n) * 8 / d.Seconds() / 1e6
	}
	return m
}

// Errors a client can tell apart.
var (
	// ErrNotNetops means the peer accepted the connection but did not greet
	// like a netops bandwidth server.
	ErrNotNetops = errors.New("not a netops bandwidth server")
	// ErrRejected means the server refused the test (busy, duration too
	// long, bad header); the error text carries its reason.
	ErrRejected = errors.New("bandwidth server rejected the test")
)

// Measure runs one test of duration d in direction dir against the netops
// bandwidth server at addr (host:port). It returns when the test is over or
// ctx is done.
func Measure(ctx context.Context, addr string, dir Direction, d time.Duration) (Measurement, error) {
	code, ok := dir.wire()
	if !ok {
		return Measurement{}, fmt.Errorf("bandwidth: unknown direction %q", dir)
	}
	ms := d.Milliseconds()
	if ms < 1 || ms > int64(^uint32(0)) {
		return Measurement{}, fmt.Errorf("bandwidth: test duration %v out of range", d)
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Measurement{}, fmt.Errorf("bandwidth: %w", err)
	}
	defer conn.Close()
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return Measurement{}, fmt.Errorf("bandwidth: %s: not a TCP connection", addr)
	}
	c := &clientConn{ctx: ctx, conn: tc}
	stop := context.AfterFunc(ctx, func() { _ = tc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	m, err := c.run(code, dir, d, ms)
	if err != nil {
		if ctx.Err() != nil {
			return Measurement{}, fmt.Errorf("bandwidth %s %s: %w", dir, addr, context.Cause(ctx))
		}
		return Measurement{}, fmt.Errorf("bandwidth %s %s: %w", dir, addr, err)
	}
	return m, nil
}

type clientConn struct {
	ctx  context.Context
	conn *net.TCPConn
}

// deadline sets a deadline without losing a cancellation that raced with it.
func (c *clientConn) deadline(set func(time.Time) error, t time.Time) {
	_ = set(t)
	if c.ctx.Err() != nil {
		_ = c.conn.SetDeadline(time.Unix(1, 0))
	}
}

func (c *clientConn) run(code byte, dir Direction, d time.Duration, ms int64) (Measurement, error) {
	// Greeting: the server speaks first.
	c.deadline(c.conn.SetReadDeadline, time.Now().Add(greetTimeout))
	g := make([]byte, len(greeting))
	if n, err := io.ReadFull(c.conn, g); err != nil {
		if c.ctx.Err() == nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			if n == 0 {
				return Measurement{}, fmt.Errorf("%w: no greeting within %v", ErrNotNetops, greetTimeout)
			}
			return Measurement{}, fmt.Errorf("%w: it sent %q", ErrNotNetops, g[:n])
		}
		return Measurement{}, fmt.Errorf("reading greeting: %w", err)
	}
	if string(g) != greeting {
		return Measurement{}, fmt.Errorf("%w: it sent %q", ErrNotNetops, g)
	}

	hdr := make([]byte, 0, headerLen)
	hdr = append(hdr, magic...)
	hdr = append(hdr, code)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(ms))
	c.deadline(c.conn.SetDeadline, time.Now().Add(grace))
	if _, err := c.conn.Write(hdr); err != nil {
		return Measurement{}, fmt.Errorf("sending header: %w", err)
	}
	br := bufio.NewReaderSize(c.conn, BufferSize)
	line, err := readLine(br, 256)
	if err != nil {
		return Measurement{}, fmt.Errorf("reading reply: %w", err)
	}
	if line != "OK" {
		return Measurement{}, fmt.Errorf("%w: %s", ErrRejected, strings.TrimPrefix(line, "ERR "))
	}
	if dir == Upload {
		return c.upload(br, d)
	}
	return c.download(br, d)
}

func (c *clientConn) upload(br *bufio.Reader, d time.Duration) (Measurement, error) {
	buf := make([]byte, BufferSize)
	end := time.Now().Add(d)
	c.deadline(c.conn.SetWriteDeadline, end)
	var sent int64
	for time.Now().Before(end) {
		n, err := c.conn.Write(buf)
		sent += int64(n)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.ctx.Err() == nil {
				break // the test time is up
			}
			return Measurement{}, fmt.Errorf("sending: %w", err)
		}
	}
	if err := c.conn.CloseWrite(); err != nil {
		return Measurement{}, fmt.Errorf("half-close: %w", err)
	}
	c.deadline(c.conn.SetReadDeadline, time.Now().Add(grace))
	var tr [trailerLen]byte
	if _, err := io.ReadFull(br, tr[:]); err != nil {
		return Measurement{}, fmt.Errorf("reading the server's count: %w", err)
	}
	got := int64(binary.BigEndian.Uint64(tr[:8]))
	took := time.Duration(binary.BigEndian.Uint64(tr[8:]))
	if got != sent {
		return Measurement{}, fmt.Errorf("server counted %d bytes, client sent %d", got, sent)
	}
	return newMeasurement(Upload, got, took), nil
}

func (c *clientConn) download(br *bufio.Reader, d time.Duration) (Measurement, error) {
	c.deadline(c.conn.SetReadDeadline, time.Now().Add(d+grace))
	got, first, err := drain(br)
	if err != nil {
		return Measurement{}, fmt.Errorf("receiving: %w", err)
	}
	if got == 0 {
		return Measurement{}, errors.New("the server sent no data")
	}
	return newMeasurement(Download, got, time.Since(first)), nil
}

func readLine(br *bufio.Reader, limit int) (string, error) {
	var b []byte
	for len(b) <= limit {
		c, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return string(b), nil
		}
		b = append(b, c)
	}
	return "", fmt.Errorf("line longer than %d bytes", limit)
}

// Server answers bandwidth tests. The zero value is ready to use.
type Server struct {
	// MaxDuration is the longest test a client may ask for (0: 60s).
	MaxDuration time.Duration
	// MaxClients is how many tests run at once (0: 4); others get "ERR busy".
	MaxClients int
}

// Serve accepts connections on ln until ctx is done, then closes ln and every
// open test and returns nil. It returns an error when accepting fails for
// another reason. Serve owns ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	maxDur, maxClients := s.MaxDuration, s.MaxClients
	if maxDur <= 0 {
		maxDur = DefaultMaxDuration
	}
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer ln.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	var active atomic.Int64
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isResourceErr(err) {
				// Out of file descriptors or similar: wait and retry, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			return fmt.Errorf("bandwidth server: accept: %w", err)
		}
		backoff = 0
		busy := active.Add(1) > int64(maxClients)
		wg.Go(func() {
			defer active.Add(-1)
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
			defer stop()
			_ = handle(conn, busy, maxDur)
		})
	}
}

// handle runs one test. Its error only explains why the connection ended;
// the client learns about problems from the reply line.
func handle(conn net.Conn, busy bool, maxDur time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(headerWait))
	if _, err := io.WriteString(conn, greeting); err != nil {
		return err
	}
	// Read the header, rejecting a wrong magic as soon as a byte differs so a
	// stray client (HTTP, iperf3) is not kept waiting for bytes it never sends.
	hdr := make([]byte, headerLen)
	for got := 0; got < headerLen; {
		n, err := conn.Read(hdr[got:])
		got += n
		if k := min(got, len(magic)); !bytes.Equal(hdr[:k], []byte(magic[:k])) {
			reject(conn, "bad magic: not a netops bandwidth client")
			return errors.New("bad magic")
		}
		if err != nil && got < headerLen {
			return fmt.Errorf("reading header: %w", err)
		}
	}
	d := time.Duration(binary.BigEndian.Uint32(hdr[len(magic)+1:])) * time.Millisecond
	switch {
	case busy:
		reject(conn, "busy: too many tests running, try again later")
		return errors.New("busy")
	case d <= 0 || d > maxDur:
		reject(conn, "duration "+d.String()+" out of range (1ms.."+maxDur.String()+")")
		return errors.New("bad duration")
	}
	switch hdr[len(magic)] {
	case 'U':
		return serveUpload(conn, d)
	case 'D':
		return serveDownload(conn, d)
	}
	reject(conn, "unknown direction "+strconv.Quote(string(hdr[len(magic)])))
	return errors.New("bad direction")
}

func isResourceErr(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func reject(conn net.Conn, why string) { _, _ = io.WriteString(conn, "ERR "+why+"\n") }

func serveUpload(conn net.Conn, d time.Duration) error {
	if _, err := io.WriteString(conn, "OK\n"); err != nil {
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(d + grace))
	got, first, err := drain(conn)
	if err != nil {
		return err
	}
	var took time.Duration
	if got > 0 {
		took = time.Since(first)
	}
	var tr [trailerLen]byte
	binary.BigEndian.PutUint64(tr[:8], uint64(got))
	binary.BigEndian.PutUint64(tr[8:], uint64(took))
	_, err = conn.Write(tr[:])
	return err
}

func serveDownload(conn net.Conn, d time.Duration) error {
	if _, err := io.WriteString(conn, "OK\n"); err != nil {
		return err
	}
	buf := make([]byte, BufferSize)
	end := time.Now().Add(d)
	_ = conn.SetWriteDeadline(end)
	for time.Now().Before(end) {
		if _, err := conn.Write(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return err
		}
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return nil
}

// drain reads r to EOF and returns how many bytes arrived and when the first
// one did (the measurement starts there, not at the request).
func drain(r io.Reader) (got int64, first time.Time, err error) {
	buf := make([]byte, BufferSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if got == 0 {
				first = time.Now()
			}
			got += int64(n)
		}
		if errors.Is(err, io.EOF) {
			return got, first, nil
		}
		if err != nil {
			return got, first, err
		}
	}
}
