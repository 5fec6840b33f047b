package socket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// ExecOptions configure ExecHandler.
type ExecOptions struct {
	// Argv is the program and its arguments (never run through a shell).
	Argv []string
	// Env is the environment of the program (nil: none besides the
	// NETOPS_IPC_* variables).
	Env []string
	// Stderr receives the program's stderr (nil: discarded).
	Stderr io.Writer
	// Timeout stops a program still running after this long (SIGTERM, then
	// SIGKILL 2s later); 0: no limit.
	Timeout time.Duration
	// MaxReply bounds the stdout kept as the reply (default DefaultMaxFrame);
	// more is an error.
	MaxReply int
}

// ExecHandler returns a Handler that runs o.Argv once per frame with the
// frame on stdin and these variables in the environment:
//
//	NETOPS_IPC_REMOTE   peer address (host:port)
//	NETOPS_IPC_CONN     connection number
//	NETOPS_IPC_FRAME    frame number within the connection
//
// Its stdout is the reply. A non-zero exit (or a timeout) wraps
// ErrRejected: the reply is still sent and the connection goes on. A
// program that cannot be started is an error that closes the connection.
func ExecHandler(o ExecOptions) Handler {
	if o.MaxReply <= 0 {
		o.MaxReply = DefaultMaxFrame
	}
	return func(ctx context.Context, f Frame) ([]byte, error) {
		if o.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.Timeout)
			defer cancel()
		}
		cmd := exec.CommandContext(ctx, o.Argv[0], o.Argv[1:]...)
		// Its own process group: a timeout or shutdown stops the program
		// and whatever it started.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
		cmd.WaitDelay = 2 * time.Second
		cmd.Env = append(append([]string(nil), o.Env...),
			"NETOPS_IPC_REMOTE="+f.Remote,
			"NETOPS_IPC_CONN="+strconv.FormatUint(f.Conn, 10),
			"NETOPS_IPC_FRAME="+strconv.FormatUint(f.Seq, 10))
		cmd.Stdin = bytes.NewReader(f.Data)
		out := &limitedBuffer{max: o.MaxReply}
		cmd.Stdout = out
		if o.Stderr != nil {
			cmd.Stderr = o.Stderr
		}
		err := cmd.Run()
		reply := out.buf.Bytes()
		if reply == nil {
			reply = []byte{}
		}
		if err == nil && out.over {
			return reply[:0], fmt.Errorf("%w: %s wrote more than %d bytes to stdout", ErrRejected, o.Argv[0], o.MaxReply)
		}
		if err == nil {
			return reply, nil
		}
		var ee *exec.ExitError
		switch {
		case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
			return reply, fmt.Errorf("%w: %s timed out after %s", ErrRejected, o.Argv[0], o.Timeout)
		case errors.As(err, &ee):
			return reply, fmt.Errorf("%w: %s %s", ErrRejected, o.Argv[0], ee.ProcessState.String())
		}
		return nil, fmt.Errorf("run %s: %w", o.Argv[0], err)
	}
}

// limitedBuffer keeps up to max bytes and remembers that more came.
type limitedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}
