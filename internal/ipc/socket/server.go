package socket

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for Options.
const (
	DefaultMaxConns      = 64
	DefaultIdleTimeout   = 5 * time.Minute
	DefaultWriteTimeout  = 10 * time.Second
	DefaultShutdownGrace = 5 * time.Second
)

// ErrorPrefix starts every line (or frame) the listener itself sends to a
// peer to say why it refuses or closes the connection, e.g.
// "netops ipc listen: too many connections (max 64); try again later".
// Connect recognises it.
const ErrorPrefix = "netops ipc listen: "

var (
	// ErrAddrInUse: the listen address is taken by another socket.
	ErrAddrInUse = errors.New("address already in use")
	// ErrRemoteNotAllowed: a non-loopback listen address without
	// ListenOptions.AllowRemote.
	ErrRemoteNotAllowed = errors.New("non-loopback listen address")
	// ErrRejected, wrapped by a Handler's error, means the handler ran but
	// rejected the frame (e.g. the --exec program exited non-zero): it is
	// counted and logged, and the connection goes on. Any other handler
	// error closes the connection after telling the peer.
	ErrRejected = errors.New("frame rejected by the handler")
)

// Frame is one frame received on a connection.
type Frame struct {
	Data   []byte // the handler may keep it
	Conn   uint64 // connection number, from 1 in the order of acceptance
	Seq    uint64 // frame number within the connection, from 1
	Remote string // peer address
}

// Handler handles one frame. A non-nil reply is written back to the peer
// framed like the input (a reply that is empty is not written with line
// framing). Frames of one connection are handled one at a time, in order;
// frames of different connections concurrently.
type Handler func(ctx context.Context, f Frame) (reply []byte, err error)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	Framing  Framing
	MaxFrame int // default DefaultMaxFrame
	// MaxConns is the number of connections served at once; further ones
	// are told so and closed (default DefaultMaxConns).
	MaxConns int
	// IdleTimeout closes a connection that sends nothing for this long
	// (default DefaultIdleTimeout; negative: never).
	IdleTimeout time.Duration
	// WriteTimeout bounds the writing of one reply (default DefaultWriteTimeout).
	WriteTimeout time.Duration
	// ShutdownGrace is how long Serve waits, after ctx is done, for
	// handlers in progress before cancelling their context and closing
	// their connections (default DefaultShutdownGrace).
	ShutdownGrace time.Duration
	// Log receives connection events (nil: discarded).
	Log *slog.Logger
}

// Stats are a Server's counters.
type Stats struct {
	Connections uint64 `json:"connections"` // accepted and served
	Refused     uint64 `json:"refused"`     // turned away: too many connections
	Active      int64  `json:"active"`      // being served now
	Frames      uint64 `json:"frames"`      // frames received and handed to the handler
	Bytes       uint64 `json:"bytes"`       // bytes of those frames (framing excluded)
	Replies     uint64 `json:"replies"`     // replies written
	ReplyBytes  uint64 `json:"reply_bytes"` // bytes of those replies
	Errors      uint64 `json:"errors"`      // handler failures, oversized frames, broken connections
}

// Server serves framed connections: one goroutine per connection.
type Server struct {
	opts    Options
	handler Handler
	log     *slog.Logger

	nconn, refused, frames, bytes, replies, replyBytes, errs atomic.Uint64
	active                                                   atomic.Int64
	stopping                                                 atomic.Bool

	mu   sync.Mutex
	live map[*conn]struct{}
}

// NewServer returns a Server handing frames to h.
func NewServer(h Handler, o Options) *Server {
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: o, handler: h, log: log, live: map[*conn]struct{}{}}
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections: s.nconn.Load(), Refused: s.refused.Load(), Active: s.active.Load(),
		Frames: s.frames.Load(), Bytes: s.bytes.Load(), Replies: s.replies.Load(),
		ReplyBytes: s.replyBytes.Load(), Errors: s.errs.Load(),
	}
}

// ListenOptions configure Listen.
type ListenOptions struct {
	// AllowRemote permits an address that is not loopback (a wildcard
	// address, a non-loopback IP, a host name other than localhost).
	AllowRemote bool
	// TLS, when set, makes the listener speak TLS.
	TLS *tls.Config
}

// IsLoopback reports whether the host of addr ("host:port") is a loopback
// IP or "localhost". Names are not resolved.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Listen opens a TCP listener on addr. A non-loopback address needs
// o.AllowRemote (else an error wrapping ErrRemoteNotAllowed). A taken
// address gives "listen ADDR: address already in use" wrapping
// ErrAddrInUse.
func Listen(ctx context.Context, addr string, o ListenOptions) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if !o.AllowRemote && !IsLoopback(addr) {
		return nil, fmt.Errorf("listen %s: %w: netops listens on loopback unless allowed to listen remotely", addr, ErrRemoteNotAllowed)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return nil, fmt.Errorf("listen %s: %w", addr, ErrAddrInUse)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EADDRNOTAVAIL):
			var se *os.SyscallError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("listen %s: %w", addr, se.Err)
			}
		}
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, oe.Err)
		}
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if o.TLS != nil {
		ln = tls.NewListener(ln, o.TLS)
	}
	return ln, nil
}

// Serve accepts connections on ln until ctx is done, then shuts down: it
// stops accepting, lets every connection finish the frames it has already
// received (waiting up to ShutdownGrace for handlers), and returns nil.
// It closes ln. An accept error other than the shutdown is returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Handlers run under hard: cancelled ShutdownGrace after ctx is done.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		s.stopping.Store(true)
		_ = ln.Close()
		s.mu.Lock()
		for c := range s.live {
			c.interrupt()
		}
		s.mu.Unlock()
	})
	defer stop()

	var acceptErr error
	var tempDelay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.stopping.Load() || ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or a transient error: back off.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", tempDelay)
				select {
				case <-time.After(tempDelay):
				case <-ctx.Done():
				}
				continue
			}
			acceptErr = fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			break
		}
		tempDelay = 0
		if s.active.Load() >= int64(s.opts.MaxConns) {
			s.refused.Add(1)
			s.log.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(), "max", s.opts.MaxConns)
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.refuse(nc)
			}()
			continue
		}
		c := &conn{srv: s, nc: nc, id: s.nconn.Add(1), remote: nc.RemoteAddr().String()}
		s.active.Add(1)
		s.mu.Lock()
		s.live[c] = struct{}{}
		if s.stopping.Load() {
			c.interrupt()
		}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.live, c)
				s.mu.Unlock()
				s.active.Add(-1)
			}()
			c.serve(hard)
		}()
	}
	_ = ln.Close()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.opts.ShutdownGrace):
		s.log.Warn("shutdown: handlers still running after the grace period; cancelling them", "grace", s.opts.ShutdownGrace)
		cancelHard()
		s.mu.Lock()
		for c := range s.live {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
		<-done
	}
	return acceptErr
}

// refuse tells a connection over the limit why it is closed.
func (s *Server) refuse(nc net.Conn) {
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
	msg := fmt.Sprintf("%stoo many connections (max %d); try again later", ErrorPrefix, s.opts.MaxConns)
	if WriteFrame(nc, s.opts.Framing, []byte(msg)) == nil {
		lingerClose(nc)
	}
}

// lingerClose half-closes nc and reads what the peer still sends (for up to
// a second) before the connection is closed, so that the peer reads what
// was last written instead of a reset for the data it sent and nobody read.
func lingerClose(nc net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := nc.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, nc, 4<<20)
}

// conn is one served connection.
type conn struct {
	srv    *Server
	nc     net.Conn
	id     uint64
	remote string

	mu          sync.Mutex // orders deadline changes with interrupt
	interrupted bool
}

// interrupt makes a blocked read return (shutdown).
func (c *conn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	_ = c.nc.SetReadDeadline(time.Now())
}

// armRead sets the idle deadline for the next read, unless interrupted.
func (c *conn) armRead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		return
	}
	if c.srv.opts.IdleTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.IdleTimeout))
	} else {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}

func (c *conn) isInterrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

func (c *conn) serve(ctx context.Context) {
	s := c.srv
	log := s.log.With("conn", c.id, "remote", c.remote)
	defer c.nc.Close()
	log.Info("connection opened")
	var frames, nbytes uint64
	reason := "closed by peer"
	defer func() {
		log.Info("connection closed", "reason", reason, "frames", frames, "bytes", nbytes)
	}()
	r := NewReader(c.nc, s.opts.Framing, s.opts.MaxFrame)
	for {
		c.armRead()
		data, err := r.Next()
		if err != nil {
			var tooLarge *FrameTooLargeError
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF):
			case c.isInterrupted() && errors.As(err, &ne) && ne.Timeout():
				reason = "shutdown"
			case errors.As(err, &ne) && ne.Timeout():
				reason = "idle timeout"
				c.tell(fmt.Sprintf("idle for %s; closing the connection", s.opts.IdleTimeout))
			case errors.As(err, &tooLarge):
				s.errs.Add(1)
				reason = "frame too large"
				log.Warn("frame too large; closing the connection", "max", s.opts.MaxFrame, "size", tooLarge.Size)
				c.tell(err.Error() + "; closing the connection")
			default:
				s.errs.Add(1)
				reason = "read error: " + err.Error()
				log.Warn("connection read failed", "err", err)
			}
			return
		}
		frames++
		nbytes += uint64(len(data))
		s.frames.Add(1)
		s.bytes.Add(uint64(len(data)))
		f := Frame{Data: append([]byte(nil), data...), Conn: c.id, Seq: frames, Remote: c.remote}
		reply, herr := s.handler(ctx, f)
		if herr != nil {
			s.errs.Add(1)
			if !errors.Is(herr, ErrRejected) {
				reason = "handler failed: " + herr.Error()
				log.Error("handler failed; closing the connection", "frame", f.Seq, "err", herr)
				c.tell(herr.Error())
				return
			}
			log.Warn("frame rejected", "frame", f.Seq, "err", herr)
		}
		if reply != nil && (len(reply) > 0 || s.opts.Framing == Length) {
			_ = c.nc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
			if err := WriteFrame(c.nc, s.opts.Framing, reply); err != nil {
				s.errs.Add(1)
				reason = "reply failed: " + err.Error()
				log.Warn("writing the reply failed; closing the connection", "err", err)
				return
			}
			s.replies.Add(1)
			s.replyBytes.Add(uint64(len(reply)))
		}
	}
}

// tell sends the peer a one-line reason before the connection is closed.
func (c *conn) tell(msg string) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	msg = strings.ReplaceAll(msg, "\n", " ")
	if WriteFrame(c.nc, c.srv.opts.Framing, []byte(ErrorPrefix+msg)) == nil {
		lingerClose(c.nc)
	}
}
