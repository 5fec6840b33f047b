package transfer

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"

	"github.com/netops-dev/netops/internal/sshconn"
)

// conn is a lazily (re)opened FS shared by the workers of one run: after a
// connection error, the first worker to notice resets it and the next get
// dials again.
type conn struct {
	dial func(ctx context.Context) (FS, error)

	mu  sync.Mutex
	fs  FS
	gen int
}

func newConn(dial func(ctx context.Context) (FS, error)) *conn { return &conn{dial: dial} }

func (c *conn) get(ctx context.Context) (FS, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fs != nil {
		return c.fs, c.gen, nil
	}
	f, err := c.dial(ctx)
	if err != nil {
		return nil, c.gen, err
	}
	c.fs = f
	c.gen++
	return f, c.gen, nil
}

// reset closes the FS of generation gen (if it is still the current one).
func (c *conn) reset(gen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fs != nil && c.gen == gen {
		_ = c.fs.Close()
		c.fs = nil
	}
}

func (c *conn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fs == nil {
		return nil
	}
	err := c.fs.Close()
	c.fs = nil
	return err
}

// backoff returns the wait before retry attempt+1: base x 2^attempt, capped
// at 60 s, with full jitter in [d/2, d).
func backoff(base time.Duration, attempt int) time.Duration {
	if base <= 0 {
		base = time.Second
	}
	d := base
	for i := 0; i < attempt && d < time.Minute; i++ {
		d *= 2
	}
	d = min(d, time.Minute)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryable decides whether a failed file is tried again: connection
// failures and temporary server errors are; bad input, permissions, missing
// files, full disks, checksum mismatches, authentication and host-key
// failures (Options.Permanent) are not.
func (c *copier) retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if Permanent(err) || (c.o.Permanent != nil && c.o.Permanent(err)) {
		return false
	}
	if errors.Is(err, ErrSourceChanged) {
		return true // starts over from the beginning
	}
	var he *HTTPStatusError
	if errors.As(err, &he) {
		return he.Temporary()
	}
	return isConnErr(err)
}

// isConnErr reports a broken or unreachable connection.
func isConnErr(err error) bool {
	if errors.Is(err, ErrChecksum) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC) {
		return false
	}
	// Not net.Error: syscall.Errno satisfies it, and a read-only or full
	// file system is no connection problem.
	var oe *net.OpError
	return errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, sftp.ErrSSHFxNoConnection) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.As(err, &oe) || errors.Is(err, sshconn.ErrUnreachable) || sshconn.Retryable(err)
}

// destErr turns ENOSPC/EDQUOT into ErrNoSpace so callers can tell it.
func destErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &wrapErr{err: err, kind: ErrNoSpace}
	}
	return err
}

type wrapErr struct {
	err  error
	kind error
}

func (e *wrapErr) Error() string   { return e.err.Error() }
func (e *wrapErr) Unwrap() []error { return []error{e.err, e.kind} }
