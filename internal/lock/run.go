package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// RunOptions control RunCommand.
type RunOptions struct {
	// Signals delivers the signals to forward to the child (SIGINT, SIGTERM,
	// SIGHUP); the caller subscribes with signal.Notify. May be nil.
	Signals <-chan os.Signal
	// Grace is how long a child gets between SIGTERM and SIGKILL when the
	// lease is lost (default 10s).
	Grace time.Duration
	// Stdin, Stdout, Stderr of the child (default: none / discard).
	Stdin          *os.File
	Stdout, Stderr *os.File
	// Env is the child's base environment (default os.Environ()).
	Env []string
}

// RunResult is how the child ended.
type RunResult struct {
	Lease     *Lease
	ExitCode  int  // the child's exit code; 128+N when killed by signal N
	Signaled  bool // the child was killed by a signal
	LeaseLost bool // the lease was lost while the child ran; the child was stopped
	Duration  time.Duration
}

// ErrChildStart is returned when the command cannot be started.
var ErrChildStart = errors.New("cannot start command")

// RunCommand acquires the lock, runs argv (never through a shell) in its own
// process group with NETOPS_LOCK_NAME, NETOPS_LOCK_TOKEN, NETOPS_LOCK_OWNER and
// NETOPS_LOCK_MODE in its environment, renews the lease every TTL/3 while it
// runs, forwards SIGINT/SIGTERM/SIGHUP to it, and releases the lock when it
// exits. If the lease is lost (renewal fails past the TTL), the child gets
// SIGTERM, then SIGKILL after the grace period, and RunResult.LeaseLost is set.
func RunCommand(ctx context.Context, lk Locker, req Request, argv []string, opts RunOptions) (RunResult, error) {
	if len(argv) == 0 {
		return RunResult{}, fmt.Errorf("%w: no command given", ErrInvalid)
	}
	if req.TTL == 0 {
		req.TTL = DefaultTTL
	}
	// Resolve the program before locking, so a typo does not take the lock.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return RunResult{}, fmt.Errorf("%w %q: %w", ErrChildStart, argv[0], err)
	}
	lease, err := lk.Acquire(ctx, req)
	if err != nil {
		return RunResult{}, err
	}
	res := RunResult{Lease: lease}
	defer func() {
		// Release with a context of its own: an interrupted run still frees
		// the lock. A lost lease is not ours any more: one short try only.
		wait := 10 * time.Second
		if res.LeaseLost {
			wait = time.Second
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
		defer cancel()
		_ = lk.Release(rctx, lease.Name, lease.Owner)
	}()

	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = append(env,
		"NETOPS_LOCK_NAME="+lease.Name,
		"NETOPS_LOCK_TOKEN="+strconv.FormatUint(lease.Token, 10),
		"NETOPS_LOCK_OWNER="+lease.Owner,
		"NETOPS_LOCK_MODE="+string(lease.Mode))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	// A backend whose liveness is a held file (local) shares it with the
	// command: killing netops then does not free the lock under it.
	if sf, ok := lk.(interface{ SessionFile(*Lease) *os.File }); ok {
		if f := sf.SessionFile(lease); f != nil {
			cmd.ExtraFiles = []*os.File{f}
			cmd.Env = append(cmd.Env, "NETOPS_LOCK_FD=3")
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("%w %q: %w", ErrChildStart, argv[0], err)
	}
	pgid := cmd.Process.Pid
	signalGroup := func(sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	grace := opts.Grace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	renew := time.NewTicker(max(req.TTL/3, 100*time.Millisecond))
	defer renew.Stop()
	lastRenew := time.Now()
	var killTimer <-chan time.Time
	var waitErr error
	ctxDone := ctx.Done()
	if opts.Signals != nil {
		ctxDone = nil
	}
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		case sig := <-opts.Signals:
			if s, ok := sig.(syscall.Signal); ok {
				signalGroup(s)
			}
		case <-ctxDone:
			// Without signal forwarding, the caller's context is the way to
			// stop the child. With forwarding, the child decides: it got the
			// signal itself and netops waits for it to exit, like flock(1).
			ctxDone = nil
			signalGroup(syscall.SIGTERM)
			if killTimer == nil {
				killTimer = time.After(grace)
			}
		case <-renew.C:
			if res.LeaseLost {
				continue
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), req.TTL/3)
			err := lk.Renew(rctx, lease)
			cancel()
			switch {
			case err == nil:
				lastRenew = time.Now()
			case errors.Is(err, ErrLost) || time.Since(lastRenew) >= req.TTL:
				// Someone else may hold the lock now: the child must stop.
				res.LeaseLost = true
				signalGroup(syscall.SIGTERM)
				killTimer = time.After(grace)
			}
		case <-killTimer:
			signalGroup(syscall.SIGKILL)
		}
	}
	res.Duration = time.Since(start)
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
		res.ExitCode = 0
	case errors.As(waitErr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signaled = true
			res.ExitCode = 128 + int(ws.Signal())
		} else {
			res.ExitCode = ee.ExitCode()
		}
	default:
		return res, fmt.Errorf("waiting for %q: %w", argv[0], waitErr)
	}
	return res, nil
}
