package socket

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

var (
	// ErrUnavailable: the peer could not be reached (connection refused,
	// no route, dial timeout).
	ErrUnavailable = errors.New("peer unavailable")
	// ErrNoReply: Exchange with Reply set received nothing in time.
	ErrNoReply = errors.New("no reply")
	// ErrPeer: a netops listener closed the connection with an error line
	// (too many connections, frame too large, handler failure).
	ErrPeer = errors.New("refused by the listener")
)

// DialOptions configure Dial.
type DialOptions struct {
	// Timeout bounds connecting (and the TLS handshake); 0: only ctx.
	Timeout time.Duration
	// TLS, when set, makes the connection TLS; ServerName defaults to the
	// host of addr.
	TLS *tls.Config
}

// Dial connects to addr ("host:port"). A refused or unreachable peer, or a
// connection not made in time, gives an error wrapping ErrUnavailable:
// "connect 127.0.0.1:9: connection refused".
func Dial(ctx context.Context, addr string, o DialOptions) (net.Conn, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, dialError(addr, err)
	}
	if o.TLS == nil {
		return nc, nil
	}
	cfg := o.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("connect %s: TLS handshake timed out: %w", addr, ErrUnavailable)
		}
		return nil, fmt.Errorf("connect %s: TLS handshake: %w", addr, err)
	}
	return tc, nil
}

func dialError(addr string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &peerError{msg: fmt.Sprintf("connect %s: timed out", addr), errs: []error{ErrUnavailable, err}}
	}
	var oe *net.OpError
	msg := err.Error()
	if errors.As(err, &oe) && oe.Err != nil {
		msg = oe.Err.Error()
		// "connect: connection refused" -> "connection refused"
		msg = strings.TrimPrefix(msg, "connect: ")
	}
	return &peerError{msg: fmt.Sprintf("connect %s: %s", addr, msg), errs: []error{ErrUnavailable, err}}
}

// peerError has its own message and wraps several errors.
type peerError struct {
	msg  string
	errs []error
}

func (e *peerError) Error() string   { return e.msg }
func (e *peerError) Unwrap() []error { return e.errs }

// Request is what Exchange sends and how it waits.
type Request struct {
	// Message is sent as one frame, unless Input is set.
	Message []byte
	// Input is copied to the connection: as is with Lines framing (like
	// nc), as one frame (read whole) with Length framing.
	Input   io.Reader
	Framing Framing
	// Reply: copy what the peer sends to Out (frames' data with Length
	// framing, bytes as they come with Lines) and fail with ErrNoReply if
	// nothing came within Wait.
	Reply bool
	Out   io.Writer
	// Wait is how long to wait, once everything is sent, for the peer to
	// close the connection (default 5s).
	Wait time.Duration
	// MaxFrame bounds reply frames with Length framing (default
	// DefaultMaxFrame).
	MaxFrame int
}

// Result is what Exchange did.
type Result struct {
	Sent      int64 `json:"sent_bytes"`
	Received  int64 `json:"received_bytes"`
	PeerClose bool  `json:"peer_closed"` // the peer closed the connection within the wait
}

// Exchange sends req on nc, half-closes the connection, then waits up to
// req.Wait for the peer to close it, reading what it sends meanwhile (a
// netops listener closes a connection once it has handled every frame).
// A line or frame starting with ErrorPrefix ends Exchange with an error
// wrapping ErrPeer. It closes nc.
func Exchange(ctx context.Context, nc net.Conn, req Request) (Result, error) {
	defer nc.Close()
	if req.Wait <= 0 {
		req.Wait = 5 * time.Second
	}
	if req.Out == nil {
		req.Out = io.Discard
	}
	var res Result
	var (
		wg      sync.WaitGroup
		readErr error
		peerMsg string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, msg, err := readPeer(nc, req)
		res.Received, peerMsg, readErr = n, msg, err
	}()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()

	sent, werr := send(nc, req)
	res.Sent = sent
	if werr == nil {
		type closeWriter interface{ CloseWrite() error }
		if cw, ok := nc.(closeWriter); ok {
			werr = cw.CloseWrite()
		}
	}
	// Wait for the peer to close, at most req.Wait from now.
	timer := time.AfterFunc(req.Wait, func() { _ = nc.SetReadDeadline(time.Now()) })
	wg.Wait()
	timedOut := !timer.Stop()

	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if peerMsg != "" {
		return res, fmt.Errorf("%s: %w", strings.TrimPrefix(peerMsg, ErrorPrefix), ErrPeer)
	}
	if werr != nil {
		return res, fmt.Errorf("send to %s: %w", nc.RemoteAddr(), werr)
	}
	var ne net.Error
	switch {
	case readErr == nil:
		res.PeerClose = true
	case timedOut && errors.As(readErr, &ne) && ne.Timeout():
	default:
		return res, fmt.Errorf("read from %s: %w", nc.RemoteAddr(), readErr)
	}
	if req.Reply && res.Received == 0 {
		return res, fmt.Errorf("no reply from %s within %s: %w", nc.RemoteAddr(), req.Wait, ErrNoReply)
	}
	return res, nil
}

func send(nc net.Conn, req Request) (int64, error) {
	if req.Input == nil {
		b, err := AppendFrame(nil, req.Framing, req.Message)
		if err != nil {
			return 0, err
		}
		n, err := nc.Write(b)
		return int64(n), err
	}
	if req.Framing == Length {
		data, err := io.ReadAll(req.Input)
		if err != nil {
			return 0, fmt.Errorf("read input: %w", err)
		}
		b, err := AppendFrame(nil, Length, data)
		if err != nil {
			return 0, err
		}
		n, err := nc.Write(b)
		return int64(n), err
	}
	return io.Copy(nc, req.Input)
}

// readPeer reads until EOF. It returns the bytes of reply data, and the
// message of a netops listener error line, if one came.
func readPeer(nc net.Conn, req Request) (int64, string, error) {
	var n int64
	if req.Framing == Length {
		r := NewReader(nc, Length, req.MaxFrame)
		for {
			data, err := r.Next()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				return n, "", err
			}
			if bytes.HasPrefix(data, []byte(ErrorPrefix)) {
				return n, string(data), nil
			}
			n += int64(len(data))
			if req.Reply {
				if _, werr := req.Out.Write(data); werr != nil {
					return n, "", werr
				}
			}
		}
	}
	// Lines: pass bytes through as they come, but hold back a line start
	// that may be a listener error line until it is complete.
	buf := make([]byte, 32<<10)
	var pending []byte // bytes of the current line not yet written
	atLineStart := true
	flush := func(b []byte) error {
		if len(b) == 0 {
			return nil
		}
		n += int64(len(b))
		if req.Reply {
			_, err := req.Out.Write(b)
			return err
		}
		return nil
	}
	for {
		m, err := nc.Read(buf)
		data := buf[:m]
		for len(data) > 0 {
			if atLineStart || len(pending) > 0 {
				// Collect up to len(ErrorPrefix) bytes or a newline.
				i := bytes.IndexByte(data, '\n')
				take := len(data)
				if i >= 0 {
					take = i + 1
				}
				pending = append(pending, data[:take]...)
				data = data[take:]
				atLineStart = false
				complete := bytes.HasSuffix(pending, []byte("\n"))
				if bytes.HasPrefix(pending, []byte(ErrorPrefix)) {
					if complete {
						return n, strings.TrimRight(string(pending), "\r\n"), nil
					}
					continue // an error line still arriving
				}
				if !complete && len(pending) < len(ErrorPrefix) && bytes.HasPrefix([]byte(ErrorPrefix), pending) {
					continue // may still become one
				}
				if werr := flush(pending); werr != nil {
					return n, "", werr
				}
				pending = pending[:0]
				atLineStart = complete
				continue
			}
			i := bytes.IndexByte(data, '\n')
			take := len(data)
			if i >= 0 {
				take = i + 1
				atLineStart = true
			}
			if werr := flush(data[:take]); werr != nil {
				return n, "", werr
			}
			data = data[take:]
		}
		if err != nil {
			if bytes.HasPrefix(pending, []byte(ErrorPrefix)) {
				return n, strings.TrimRight(string(pending), "\r\n"), nil
			}
			if werr := flush(pending); werr != nil {
				return n, "", werr
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return n, "", err
		}
	}
}
