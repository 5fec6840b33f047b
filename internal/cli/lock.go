package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/lock"
	"github.com/netops-dev/netops/internal/lock/local"
	"github.com/netops-dev/netops/internal/natsbackend"
	"github.com/netops-dev/netops/internal/render"
	"github.com/netops-dev/netops/internal/store"
)

func newLockCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Exclusive and shared locks for jobs, on one host or across a fleet",
		Long: `Coordinate jobs with named locks: exclusive (one holder) or shared (many readers,
no writer), granted in FIFO order, with leases and fencing tokens.

Backend: local (default; SQLite in the state dir plus flock, no daemon) or nats
(NATS JetStream KV: set backend.kind: nats and backend.url, or --backend nats
--backend-url nats://127.0.0.1:4222; 'netops server' runs one).

Exit codes: 'lock run' exits with the command's code (128+N when it was killed
by signal N); 75 when the lock was not acquired within --wait; 76 when the
lease was lost while the command ran (the command was stopped); 69 when the
backend is unreachable.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newLockRunCmd(a), newLockAcquireCmd(a), newLockReleaseCmd(a), newLockStatusCmd(a),
		newLockCleanupCmd(a), newLockReportCmd(a))
	return cmd
}

// lockFlags are the acquisition flags shared by run and acquire.
type lockFlags struct {
	shared bool
	slots  int
	wait   time.Duration
	noWait bool
	ttl    time.Duration
}

func (f *lockFlags) add(cmd *cobra.Command, ttlDefault time.Duration, ttlHelp string) {
	fl := cmd.Flags()
	fl.BoolVar(&f.shared, "shared", false, "take a shared (reader) lock instead of an exclusive one")
	fl.IntVar(&f.slots, "semaphore", 0, "counting semaphore: at most N holders at once (a shared lock with N slots, FIFO)")
	fl.DurationVar(&f.wait, "wait", 0, "wait at most this long for the lock (default: wait forever), then exit 75")
	fl.BoolVar(&f.noWait, "no-wait", false, "fail at once (exit 75) when the lock is taken")
	fl.DurationVar(&f.ttl, "ttl", ttlDefault, ttlHelp)
}

func (f *lockFlags) request(cmd *cobra.Command, name, owner string, session bool) (lock.Request, error) {
	req := lock.Request{Name: name, Mode: lock.Exclusive, TTL: f.ttl, Session: session}
	if f.shared {
		req.Mode = lock.Shared
	}
	if cmd.Flags().Changed("semaphore") {
		if f.slots < 1 || f.slots > lock.MaxSlots {
			return req, usageErrorf(fmt.Errorf("--semaphore %d: want 1 to %d holders", f.slots, lock.MaxSlots))
		}
		req.Mode, req.Slots = lock.Shared, f.slots
	}
	switch {
	case f.noWait && cmd.Flags().Changed("wait"):
		return req, usageErrorf(errors.New("--wait and --no-wait exclude each other"))
	case f.noWait:
		req.Wait = 0
	case cmd.Flags().Changed("wait"):
		if f.wait <= 0 {
			return req, usageErrorf(errors.New("--wait must be positive (use --no-wait not to wait)"))
		}
		req.Wait = f.wait
	default:
		req.Wait = lock.WaitForever
	}
	host, _ := os.Hostname()
	req.Holder = lock.Holder{Owner: owner, Host: host, PID: os.Getpid()}
	if err := lock.ValidateRequest(req); err != nil {
		return req, usageErrorf(err)
	}
	return req, nil
}

// locker opens the configured lock backend.
func (a *app) locker(ctx context.Context) (lock.Locker, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	switch cfg.WithDefaults().Backend.Kind {
	case config.BackendNATS:
		return natsbackend.Open(ctx, cfg.Backend, "netops lock", natsbackend.Options{Replicas: cfg.Backend.Replicas})
	default:
		st, err := a.store(ctx)
		if err != nil {
			return nil, err
		}
		dir, err := a.stateDir()
		if err != nil {
			return nil, err
		}
		return local.New(st, dir), nil
	}
}

// modeText shows a mode, with the size of a semaphore: "shared/4".
func modeText(m lock.Mode, slots int) string {
	if slots > 0 {
		return string(m) + "/" + strconv.Itoa(slots)
	}
	return string(m)
}

func newOwnerID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b[:])
}

func newLockRunCmd(a *app) *cobra.Command {
	var (
		f     lockFlags
		grace time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run NAME [flags] -- COMMAND [ARGS...]",
		Short: "Run a command while holding a lock; exit with its exit code",
		Long: `Acquire the lock NAME, run COMMAND (never through a shell) in its own process
group, keep the lease alive while it runs, and release the lock when it exits.
SIGINT, SIGTERM and SIGHUP are forwarded to the command. The command gets
NETOPS_LOCK_NAME, NETOPS_LOCK_TOKEN (fencing token: strictly increasing per lock,
so a resource can reject writes from an older holder), NETOPS_LOCK_OWNER and
NETOPS_LOCK_MODE (exclusive or shared; with --semaphore N also NETOPS_LOCK_SLOTS).

--semaphore N makes the lock a counting semaphore: up to N holders at once, the
others wait in FIFO order (an exclusive request on the same name still waits for
all of them). Everyone using the semaphore should pass the same N.

The local backend ties the lock to a file lock that netops shares with the
command, like flock(1): if netops dies, the lock stays held until the command
exits, and is freed at once after that. The NATS backend frees a lock when its
lease (--ttl) runs out without renewal. When renewals fail so that less than
--grace is left of the lease, the command's process group gets SIGTERM, then
SIGKILL when the lease runs out, and netops exits 76: the command is stopped
before anyone else can be granted the lock. A grant confirmed with less than
--grace of its lease left (a node went away during the write) is renewed before
the command starts; if that fails, the command does not run (exit 76, or 69 when
NATS is unreachable). A command that cannot be started
(not found, not executable) exits 127 without running.`,
		Example: `  netops lock run nightly-backup -- /usr/local/bin/backup.sh --full
  netops lock run db-schema --wait 5m -- ./migrate
  netops lock run reports --shared --no-wait -- ./read-only-report
  netops lock run encoders --semaphore 4 -- ./encode.sh   # at most 4 at once`,
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 || len(args) < 2 {
				return usageErrorf(errors.New(`usage: netops lock run NAME [flags] -- COMMAND [ARGS...]`))
			}
			req, err := f.request(cmd, args[0], newOwnerID(), true)
			if err != nil {
				return err
			}
			req.Command = strings.Join(args[1:], " ")
			lk, err := a.locker(cmd.Context())
			if err != nil {
				return err
			}
			defer lk.Close()
			if cmd.Flags().Changed("grace") && grace <= 0 {
				return usageErrorf(errors.New("--grace must be positive"))
			}
			// SIGINT/SIGTERM end netops's own context (cli.Main): that
			// interrupts a wait for the lock. Once the command runs, they
			// and SIGHUP are forwarded to it and netops waits for it to exit.
			res, err := lock.RunCommand(cmd.Context(), lk, req, args[1:], lock.RunOptions{
				Subscribe: func() (<-chan os.Signal, func()) {
					sigs := make(chan os.Signal, 4)
					signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
					return sigs, func() { signal.Stop(sigs) }
				},
				Grace: grace,
				Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
				Warn: func(msg string, err error) { a.log.Warn(msg, "lock", req.Name, "err", err) },
			})
			a.recordLock(cmd.Context(), req, res, err)
			if err != nil {
				return err
			}
			a.log.Debug("lock run finished", "lock", req.Name, "token", res.Lease.Token, "exit", res.ExitCode, "took", res.Duration)
			if res.LeaseLost {
				return &exitError{code: ExitLeaseLost, err: fmt.Errorf("lease on lock %q was lost while the command ran; the command was stopped (exit %d)", req.Name, res.ExitCode)}
			}
			if res.ExitCode != 0 {
				return &exitError{code: res.ExitCode, silent: true}
			}
			return nil
		},
	}
	f.add(cmd, lock.DefaultTTL, "lease length; renewed every TTL/3 while the command runs")
	cmd.Flags().DurationVar(&grace, "grace", 0, "time between SIGTERM and SIGKILL when the lease is being lost (default: 10s or TTL/3, whichever is shorter)")
	return cmd
}

func newLockAcquireCmd(a *app) *cobra.Command {
	var (
		f     lockFlags
		owner string
	)
	cmd := &cobra.Command{
		Use:   "acquire NAME --owner ID",
		Short: "Take a lock now and keep it until 'lock release' or the TTL",
		Long: `Take the lock NAME for owner ID and exit, for scripts that lock in one command
and unlock in a later one. The lease lasts --ttl unless released first; acquiring
again with the same owner is idempotent (same token). Prints the fencing token.`,
		Example: `  netops lock acquire deploy --owner "$CI_JOB_ID" --ttl 30m --wait 10m
  netops lock release deploy --owner "$CI_JOB_ID"`,
		Args: exactArgs(1, "one lock NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			if owner == "" {
				return usageErrorf(errors.New("--owner is required: the same ID releases the lock later"))
			}
			req, err := f.request(cmd, args[0], owner, false)
			if err != nil {
				return err
			}
			lk, err := a.locker(cmd.Context())
			if err != nil {
				return err
			}
			defer lk.Close()
			asked := time.Now()
			lease, err := lk.Acquire(cmd.Context(), req)
			a.recordLock(cmd.Context(), req, lock.RunResult{Lease: lease, Waited: time.Since(asked)}, err)
			if err != nil {
				return err
			}
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, lease)
			}
			var r render.Record
			r.Set("lock", lease.Name)
			r.Set("owner", lease.Owner)
			r.Set("mode", modeText(lease.Mode, lease.Slots))
			r.Set("token", strconv.FormatUint(lease.Token, 10))
			r.Set("expires", lease.Expires.Local().Format(time.RFC3339))
			return r.WriteText(a.ios.Out, a.mode())
		},
	}
	f.add(cmd, 10*time.Minute, "lease length: the lock frees itself after this unless released")
	cmd.Flags().StringVar(&owner, "owner", "", "owner ID (required; release with the same ID)")
	return cmd
}

func newLockReleaseCmd(a *app) *cobra.Command {
	var owner string
	cmd := &cobra.Command{
		Use:   "release NAME --owner ID",
		Short: "Release a lock taken with 'lock acquire'",
		Args:  exactArgs(1, "one lock NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if owner == "" {
				return usageErrorf(errors.New("--owner is required"))
			}
			if err := lock.ValidateName(args[0]); err != nil {
				return usageErrorf(err)
			}
			lk, err := a.locker(cmd.Context())
			if err != nil {
				return err
			}
			defer lk.Close()
			return lk.Release(cmd.Context(), args[0], owner)
		},
	}
	cmd.Flags().StringVar(&owner, "owner", "", "owner ID given to 'lock acquire'")
	return cmd
}

func newLockStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show holders and waiters (in queue order) of one lock or all locks",
		Args:  maxArgs(1, "one lock NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
				if err := lock.ValidateName(name); err != nil {
					return usageErrorf(err)
				}
			}
			lk, err := a.locker(cmd.Context())
			if err != nil {
				return err
			}
			defer lk.Close()
			sts, err := lk.Status(cmd.Context(), name)
			if err != nil {
				return err
			}
			if format == render.JSON {
				if sts == nil {
					sts = []lock.Status{}
				}
				return render.WriteJSON(a.ios.Out, sts)
			}
			now := time.Now()
			t := render.NewTable("lock", "state", "mode", "owner", "host", "pid", "command", "token", "for", "expires in")
			t.StatusColumn = 1
			for _, s := range sts {
				for _, h := range s.Holders {
					t.Add(s.Name, "HELD", modeText(h.Mode, h.Slots), h.Owner, h.Host, strconv.Itoa(h.PID), render.Dash(h.Command),
						strconv.FormatUint(h.Token, 10), now.Sub(h.Since).Round(time.Millisecond).String(), until(now, h.Expires))
				}
				for _, w := range s.Waiters {
					t.Add(s.Name, "WAITING", modeText(w.Mode, w.Slots), w.Owner, w.Host, strconv.Itoa(w.PID), render.Dash(w.Command),
						"#"+strconv.Itoa(w.Position), now.Sub(w.Since).Round(time.Millisecond).String(), "-")
				}
			}
			return t.WriteText(a.ios.Out, a.mode())
		},
	}
}

func until(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(now).Round(time.Millisecond).String()
}

func newLockCleanupCmd(a *app) *cobra.Command {
	var olderThan time.Duration
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove expired leases and dead waiters, and say what was removed",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			if olderThan < 0 {
				return usageErrorf(errors.New("--older-than must not be negative"))
			}
			lk, err := a.locker(cmd.Context())
			if err != nil {
				return err
			}
			defer lk.Close()
			c, err := lk.Cleanup(cmd.Context(), olderThan)
			if err != nil {
				return err
			}
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, c)
			}
			t := render.NewTable("removed", "owner", "host", "pid", "mode", "since")
			for _, e := range c.ExpiredLeases {
				t.Add("expired-lease", e.Owner, e.Host, strconv.Itoa(e.PID), string(e.Mode), e.Since.Local().Format(time.RFC3339))
			}
			for _, e := range c.DeadWaiters {
				t.Add("dead-waiter", e.Owner, e.Host, strconv.Itoa(e.PID), string(e.Mode), e.Since.Local().Format(time.RFC3339))
			}
			if len(t.Rows) == 0 && !a.opts.quiet {
				_, err := fmt.Fprintln(a.ios.ErrOut, "nothing to clean up")
				return err
			}
			return t.WriteText(a.ios.Out, a.mode())
		},
	}
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "only leases expired for at least this long")
	return cmd
}

// recordLock adds one use of a lock to the local history (for 'lock report').
// History is a convenience: a failure to record is logged, nothing more.
func (a *app) recordLock(ctx context.Context, req lock.Request, res lock.RunResult, runErr error) {
	ev := lock.Event{Name: req.Name, Owner: req.Owner, Mode: req.Mode, Outcome: "released",
		At: time.Now(), Waited: res.Waited, Held: res.Duration, ExitCode: res.ExitCode, Backend: a.backendKind()}
	if res.Lease != nil {
		ev.Token = res.Lease.Token
	}
	switch {
	case runErr == nil && res.LeaseLost:
		ev.Outcome = "lost"
	case runErr == nil && res.Duration == 0:
		ev.Outcome = "acquired"
	case errors.Is(runErr, lock.ErrTimeout):
		ev.Outcome = "timeout"
	case errors.Is(runErr, context.Canceled):
		ev.Outcome = "interrupted"
	case runErr != nil && res.Lease == nil && res.Waited == 0:
		return // never asked for the lock (bad command, bad input)
	case runErr != nil:
		ev.Outcome = "error"
	}
	st, err := a.store(context.WithoutCancel(ctx))
	if err != nil {
		a.log.Warn("lock history not recorded", "err", err)
		return
	}
	detail, err := json.Marshal(ev)
	if err != nil {
		return
	}
	started := ev.At.Add(-ev.Waited - ev.Held)
	if _, err := st.RecordRun(context.WithoutCancel(ctx), store.Run{Kind: "lock", Name: req.Name, Status: ev.Outcome,
		Started: started, Finished: ev.At, Detail: detail}); err != nil {
		a.log.Warn("lock history not recorded", "err", err)
	}
}

func (a *app) backendKind() string {
	if cfg, err := a.config(); err == nil {
		return cfg.WithDefaults().Backend.Kind
	}
	return ""
}

func newLockReportCmd(a *app) *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Report active locks, queued requests, contention, longest holds, recommendations",
		Long: `Report on locks: what is held and queued now (from the backend), and from this
host's lock history (every 'lock run' and 'lock acquire' is recorded in the local
state database): uses, timeouts, contention rate (share of attempts that waited
more than 100ms or gave up), average and longest waits, longest holds and lost
leases, with recommendations derived from them. With the NATS backend the
history covers the runs made from this host.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			period, err := diag.ParseSince(since)
			if err != nil {
				return usageErrorf(fmt.Errorf("--since: %w", err))
			}
			lk, err := a.locker(cmd.Context())
			if err != nil {
				return err
			}
			defer lk.Close()
			active, err := lk.Status(cmd.Context(), "")
			if err != nil {
				return err
			}
			st, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			runs, err := st.Runs(cmd.Context(), "lock", 0)
			if err != nil {
				return err
			}
			var events []lock.Event
			for _, r := range runs {
				var ev lock.Event
				if json.Unmarshal(r.Detail, &ev) == nil {
					events = append(events, ev)
				}
			}
			rep := lock.Summarize(active, events, time.Now().Add(-period))
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, rep)
			}
			return writeLockReport(a, rep)
		},
	}
	cmd.Flags().StringVar(&since, "since", "7d", "history period (7d, 36h, 90m)")
	return cmd
}

func writeLockReport(a *app, rep *lock.Report) error {
	m := a.mode()
	out := a.ios.Out
	fmt.Fprintf(out, "locks held now: %d, requests queued: %d\n\n", rep.Held, rep.Queued)
	t := render.NewTable("lock", "uses", "timeouts", "contention", "avg wait", "max wait", "longest hold", "by", "lost")
	for _, s := range rep.Locks {
		t.Add(s.Name, strconv.Itoa(s.Uses), strconv.Itoa(s.Timeouts), fmt.Sprintf("%.0f%%", s.Contention*100),
			s.AvgWait.String(), s.MaxWait.Round(time.Millisecond).String(), s.LongestHold.Round(time.Millisecond).String(),
			render.Dash(s.LongestBy), strconv.Itoa(s.Lost))
	}
	if err := t.WriteText(out, render.Mode{TTY: true, Color: m.Color}); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nrecommendations:")
	for _, r := range rep.Recommendations {
		fmt.Fprintf(out, "  - %s\n", r)
	}
	return nil
}
