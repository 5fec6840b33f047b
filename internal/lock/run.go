package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RunOptions control RunCommand.
type RunOptions struct {
	// Subscribe, called once the lock is granted and just before the command
	// starts, returns the signals to forward to it (SIGINT, SIGTERM, SIGHUP)
	// and a function that stops the subscription. Signals that arrive while
	// waiting for the lock therefore never reach the command. May be nil.
	Subscribe func() (<-chan os.Signal, func())
	// Grace is how long the command gets between SIGTERM and SIGKILL when the
	// lease is being lost (default: 10s or TTL/3, whichever is shorter; it
	// must be shorter than the TTL).
	Grace time.Duration
	// Stdin, Stdout, Stderr of the command (nil: /dev/null).
	Stdin          *os.File
	Stdout, Stderr *os.File
	// Env is the command's base environment (default os.Environ()).
	Env []string
	// Warn reports problems that do not change the outcome (a failed release).
	Warn func(msg string, err error)
}

// RunResult is how the command ended.
type RunResult struct {
	Lease     *Lease
	ExitCode  int           // the command's exit code; 128+N when killed by signal N
	Signaled  bool          // the command was killed by a signal
	LeaseLost bool          // the lease was being lost while it ran; it was stopped
	Waited    time.Duration // time spent waiting for the grant
	Duration  time.Duration // time the command ran
}

// ErrChildStart is returned when the command cannot be started (not found,
// not executable).
var ErrChildStart = errors.New("cannot start command")

// RunCommand acquires the lock, runs argv (never through a shell) in its own
// process group with NETOPS_LOCK_NAME, NETOPS_LOCK_TOKEN, NETOPS_LOCK_OWNER and
// NETOPS_LOCK_MODE in its environment, renews the lease every TTL/3 while it
// runs, forwards signals to it, and releases the lock when it exits.
//
// If renewals fail (ErrLost, or the backend stays unreachable) so that less
// than Grace is left of the lease, the command's process group gets SIGTERM,
// and SIGKILL when the lease runs out (or Grace later, whichever is first):
// the command is stopped before another holder can be granted the lock.
// RunResult.LeaseLost is then set.
func RunCommand(ctx context.Context, lk Locker, req Request, argv []string, opts RunOptions) (RunResult, error) {
	if len(argv) == 0 {
		return RunResult{}, fmt.Errorf("%w: no command given", ErrInvalid)
	}
	if req.TTL == 0 {
		req.TTL = DefaultTTL
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = min(10*time.Second, req.TTL/3)
	}
	if grace >= req.TTL {
		return RunResult{}, fmt.Errorf("%w: grace %s must be shorter than the TTL %s", ErrInvalid, grace, req.TTL)
	}
	// Resolve the program before locking, so a typo does not take the lock.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return RunResult{}, fmt.Errorf("%w %q: %w", ErrChildStart, argv[0], err)
	}
	asked := time.Now()
	lease, err := lk.Acquire(ctx, req)
	if err != nil {
		return RunResult{Waited: time.Since(asked)}, err
	}
	res := RunResult{Lease: lease, Waited: time.Since(asked)}
	defer func() {
		// Release with a context of its own: an interrupted run still frees
		// the lock. A lost lease is not ours any more: one short try only.
		wait := 10 * time.Second
		if res.LeaseLost {
			wait = time.Second
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
		defer cancel()
		if err := lk.Release(rctx, lease.Name, lease.Owner); err != nil && !res.LeaseLost && opts.Warn != nil {
			opts.Warn("lock not released; it frees itself when its lease expires", err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return res, err // interrupted just as the lock was granted: do not start
	}
	// A grant that took long to confirm (a NATS node went away during the
	// write) may leave less of the lease than the command needs to be
	// stopped in time, or none: by the lease's own clock it may have run
	// out, and the lock gone to the next in line. Renew before starting;
	// a lease that cannot be renewed is lost, and the command does not run.
	if time.Until(lease.Expires) <= grace {
		if err := lk.Renew(ctx, lease); err != nil {
			res.LeaseLost = errors.Is(err, ErrLost)
			return res, fmt.Errorf("lock %q: less than %s of the lease was left when the grant was confirmed, and renewing it failed; the command did not run: %w",
				req.Name, grace, err)
		}
	}

	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	env = withoutVar(env, "NETOPS_LOCK_FD")
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = append(env,
		"NETOPS_LOCK_NAME="+lease.Name,
		"NETOPS_LOCK_TOKEN="+strconv.FormatUint(lease.Token, 10),
		"NETOPS_LOCK_OWNER="+lease.Owner,
		"NETOPS_LOCK_MODE="+string(lease.Mode))
	if lease.Slots > 0 {
		cmd.Env = append(cmd.Env, "NETOPS_LOCK_SLOTS="+strconv.Itoa(lease.Slots))
	}
	if opts.Stdin != nil {
		cmd.Stdin = opts.Stdin
	}
	if opts.Stdout != nil {
		cmd.Stdout = opts.Stdout
	}
	if opts.Stderr != nil {
		cmd.Stderr = opts.Stderr
	}
	// A backend whose liveness is a held file (local) shares it with the
	// command, like flock(1): killing netops then does not free the lock
	// while the command runs.
	if sf, ok := lk.(interface{ SessionFile(*Lease) *os.File }); ok {
		if f := sf.SessionFile(lease); f != nil {
			cmd.ExtraFiles = []*os.File{f}
			cmd.Env = append(cmd.Env, "NETOPS_LOCK_FD=3")
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// An interactive command (stdin is our controlling terminal and we are
	// in the foreground) gets the terminal, or reading it would stop it
	// with SIGTTIN; netops takes the terminal back when it exits.
	tty := foregroundTTY(opts.Stdin)
	if tty >= 0 {
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = tty
		defer reclaimTTY(tty)
	}
	var sigs <-chan os.Signal
	if opts.Subscribe != nil {
		var stop func()
		sigs, stop = opts.Subscribe()
		defer stop()
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("%w %q: %w", ErrChildStart, argv[0], err)
	}
	pgid := cmd.Process.Pid
	signalGroup := func(sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// Renewals run beside the loop so a slow backend never delays signal
	// forwarding or the command's exit.
	type renewal struct {
		expires time.Time
		err     error
	}
	renewed := make(chan renewal, 1)
	renewing := false
	expires := lease.Expires
	renew := time.NewTicker(max(req.TTL/3, 100*time.Millisecond))
	defer renew.Stop()
	var killTimer <-chan time.Time
	stopping := false
	stopCommand := func() {
		if stopping {
			return
		}
		stopping, res.LeaseLost = true, true
		signalGroup(syscall.SIGTERM)
		killTimer = time.After(min(grace, max(time.Until(expires), 0)))
	}
	ctxDone := ctx.Done()
	if sigs != nil {
		// With forwarding, the command decides: it got the signal itself and
		// netops waits for it to exit, like flock(1).
		ctxDone = nil
	}
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		case sig := <-sigs:
			if s, ok := sig.(syscall.Signal); ok {
				signalGroup(s)
			}
		case <-ctxDone:
			ctxDone = nil
			signalGroup(syscall.SIGTERM)
			if killTimer == nil {
				killTimer = time.After(grace)
			}
		case <-renew.C:
			if renewing || stopping {
				continue
			}
			renewing = true
			l := *lease
			go func() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), req.TTL/3)
				defer cancel()
				err := lk.Renew(rctx, &l)
				renewed <- renewal{expires: l.Expires, err: err}
			}()
		case r := <-renewed:
			renewing = false
			switch err := r.err; {
			case err == nil:
				expires, lease.Expires = r.expires, r.expires
			case errors.Is(err, ErrLost) || time.Until(expires) <= grace:
				// Someone else may be granted the lock soon (or already):
				// stop the command before the lease runs out.
				stopCommand()
			}
		case <-killTimer:
			signalGroup(syscall.SIGKILL)
		}
	}
	if res.LeaseLost {
		// Whatever the command left in its group must not go on unlocked.
		signalGroup(syscall.SIGKILL)
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

func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// foregroundTTY returns the descriptor of f when it is the controlling
// terminal and this process's group is its foreground group, else -1.
func foregroundTTY(f *os.File) int {
	if f == nil {
		return -1
	}
	fd := int(f.Fd())
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || fg != unix.Getpgrp() {
		return -1
	}
	return fd
}

// reclaimTTY makes this process's group the terminal's foreground group
// again, ignoring the SIGTTOU a background group gets for asking.
func reclaimTTY(fd int) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	_ = unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, unix.Getpgrp())
}
