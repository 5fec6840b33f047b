package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/lock"
	"github.com/netops-dev/netops/internal/render"
	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/store"
	"github.com/netops-dev/netops/internal/transfer"
)

func newTransferCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transfer",
		Short: "Move files over SFTP, HTTP and local paths, verified, with retry and resume",
		Long: `Copy files and directory trees between local paths, SFTP servers and HTTP(S)
sources. Every file lands complete and verified or not at all: it is written
under a temporary name in the destination directory (.NAME.netops-tmp-XXXX),
fsynced, its SHA-256 (computed while reading the source) checked against the
copy (remote sha256sum over SSH when the server allows it, else by reading it
back), then renamed over the final name. Small files to SFTP go in batches:
one remote 'sync -f' (syncfs) and 'sha256sum' per batch of files.

Locations: a local path; sftp://[user[:password]@]host[:port]/abs/path
(sftp://host/~/dir is relative to the login directory); user@host:path (scp
style, relative to the login directory); http(s)://... (download only).
SSH uses ~/.ssh/config, identity files, ssh-agent and known_hosts (config
section ssh:); host keys are checked strictly unless configured otherwise.

Modes: copy (every file), sync (one-way mirror: copy new and changed files by
size+mtime or --checksum; files whose mode alone differs, and directories, get
the source's mode and mtime without a copy; --delete extraneous files, guarded
by --max-delete, optionally moved to --backup-dir), bisync (two-way with a
baseline).
A profile's method maps as: scp, sftp -> SFTP; rsync -> mode sync; wget, curl
-> HTTP download; local -> local paths.

Failed files are retried (--retries, exponential backoff with jitter);
interrupted files continue where they stopped (HTTP Range + If-Range, SFTP
offsets; a journal in the state dir lets the next run resume). Authentication
and host key failures are never retried.

Exit codes: 0 all transfers succeeded; 1 a transfer failed; 64 unknown
profile or bad flag; 69 the server was unreachable; 78 bad config; 130
interrupted; with --lock, 75 the lock was not acquired within --lock-wait and
76 the lock was lost (the transfers were stopped).

With --notify CHANNEL, each transfer publishes, when it ends, one JSON event
on that ipc channel (configured backend: local or NATS): {"kind":
"transfer.result", "time", "profile", "source", "destination", "mode",
"status": ok|failed|interrupted, "files", "failed", "bytes", "bytes_sent",
"deleted", "duration_ms", "error"}. A dry run publishes nothing. An event that
cannot be published is a one-line warning on stderr; it does not change the
exit code.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newTransferRunCmd(a), newTransferCopyCmd(a), newTransferHistoryCmd(a), newTransferReportCmd(a))
	return cmd
}

// transferFlags are the flags shared by run and copy; a flag that is given
// overrides the profile's value.
type transferFlags struct {
	dryRun    bool
	bwlimit   string
	checksum  bool
	del       bool
	maxDelete int
	retries   int
	backoff   time.Duration
	verify    string
	lockName  string
	lockWait  time.Duration
	notify    string
	workers   int
	include   []string
	exclude   []string
	backupDir string
	sha256    string
	noHistory bool
}

func (f *transferFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVarP(&f.dryRun, "dry-run", "n", false, "print the plan (text or -o json) and change nothing")
	fl.StringVar(&f.bwlimit, "bwlimit", "", "bandwidth limit per transfer in bytes per second (512K, 10M)")
	fl.BoolVar(&f.checksum, "checksum", false, "sync: compare files by SHA-256 instead of size and mtime")
	fl.BoolVar(&f.del, "delete", false, "sync: delete destination files the source does not have")
	fl.IntVar(&f.maxDelete, "max-delete", 100, "sync: refuse to delete more than this many entries (-1 unlimited)")
	fl.IntVar(&f.retries, "retries", 3, "retries per file after a connection failure (run: the profile's retries unless given)")
	fl.DurationVar(&f.backoff, "backoff", time.Second, "first retry delay; doubles each retry, with jitter (run: the profile's backoff unless given)")
	fl.StringVar(&f.verify, "verify", config.VerifySHA256, "verify landed files: sha256 or none")
	fl.StringVar(&f.lockName, "lock", "", "hold this netops lock (exclusive) for the whole run")
	fl.DurationVar(&f.lockWait, "lock-wait", 0, "with --lock: wait at most this long for it (default forever), then exit 75")
	fl.StringVar(&f.notify, "notify", "", "publish each transfer's result as a JSON event on this ipc channel (failure: warning, same exit code)")
	fl.IntVar(&f.workers, "workers", 8, "files in flight per transfer (one connection per side; small files to SFTP: 4x this, in batches)")
	fl.StringSliceVar(&f.include, "include", nil, "copy only files matching this glob (repeatable; no slash: base name)")
	fl.StringSliceVar(&f.exclude, "exclude", nil, "skip files and directories matching this glob (repeatable)")
	fl.StringVar(&f.backupDir, "backup-dir", "", "sync --delete: move deleted files here (relative to the destination)")
	fl.StringVar(&f.sha256, "sha256", "", "expected SHA-256 of a single-file source")
	fl.BoolVar(&f.noHistory, "no-history", false, "do not record the run in the local history")
}

// apply overrides t with the flags that were given.
func (f *transferFlags) apply(cmd *cobra.Command, t *config.Transfer) error {
	ch := cmd.Flags().Changed
	if ch("bwlimit") {
		t.BWLimit = f.bwlimit
	}
	if ch("delete") {
		t.Delete = f.del
	}
	if ch("max-delete") {
		if f.maxDelete < -1 {
			return usageErrorf(errors.New("--max-delete must be -1 (unlimited) or more"))
		}
		m := f.maxDelete
		t.MaxDelete = &m
	}
	if ch("retries") {
		if f.retries < 0 {
			return usageErrorf(errors.New("--retries must not be negative"))
		}
		t.Retries = f.retries
	}
	if ch("backoff") {
		t.Backoff = config.Duration(f.backoff)
	}
	if ch("verify") {
		if !slices.Contains(config.Verifies(), f.verify) {
			return usageErrorf(fmt.Errorf("--verify %q: use sha256 or none", f.verify))
		}
		t.Verify = f.verify
	}
	if ch("include") {
		t.Include = f.include
	}
	if ch("exclude") {
		t.Exclude = f.exclude
	}
	if ch("backup-dir") {
		t.BackupDir = f.backupDir
	}
	if ch("sha256") {
		t.SHA256 = f.sha256
	}
	if t.SHA256 != "" && (len(t.SHA256) != 64 || strings.Trim(strings.ToLower(t.SHA256), "0123456789abcdef") != "") {
		return usageErrorf(fmt.Errorf("--sha256 %q: must be 64 hex characters", t.SHA256))
	}
	if f.workers < 1 {
		return usageErrorf(errors.New("--workers must be at least 1"))
	}
	return nil
}

// job is one transfer to run: a profile, or the ad hoc copy.
type transferJob struct {
	name     string
	profile  config.Transfer
	src, dst transfer.Location
	opts     transfer.Options
}

// newJob turns a profile (defaults applied) into a job.
func (a *app) newJob(t config.Transfer, f *transferFlags, cmd *cobra.Command) (*transferJob, error) {
	if err := f.apply(cmd, &t); err != nil {
		return nil, err
	}
	src, err := transfer.ParseLocation(t.Source)
	if err != nil {
		return nil, usageErrorf(fmt.Errorf("source: %w", err))
	}
	dst, err := transfer.ParseLocation(t.Destination)
	if err != nil {
		return nil, usageErrorf(fmt.Errorf("destination: %w", err))
	}
	if dst.Endpoint.Kind == config.EndpointHTTP {
		return nil, usageErrorf(fmt.Errorf("destination %s: http(s) destinations are not supported; download to a local path or sftp://", dst.Display))
	}
	var bw int64
	if t.BWLimit != "" {
		if bw, err = config.ParseBandwidth(t.BWLimit); err != nil {
			return nil, usageErrorf(fmt.Errorf("bwlimit: %w", err))
		}
	}
	maxDel := config.DefaultMaxDelete
	if t.MaxDelete != nil {
		maxDel = *t.MaxDelete
	}
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	stateDir, err := a.stateDir()
	if err != nil {
		return nil, err
	}
	home := a.getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	sshOpts := sshconn.OptionsFromConfig(cfg.WithDefaults().SSH, a.getenv, home)
	o := transfer.Options{
		Name: t.Name, Mode: t.Mode, Include: t.Include, Exclude: t.Exclude,
		Verify: t.Verify != config.VerifyNone, SHA256: t.SHA256,
		Retries: t.Retries, Backoff: t.Backoff.D(), Checksum: f.checksum, Delete: t.Delete,
		MaxDelete: maxDel, BackupDir: t.BackupDir, BWLimit: bw, Workers: f.workers,
		DryRun: f.dryRun, StateDir: stateDir, Permanent: transfer.Permanent,
		Dial: transfer.NewDialer(sshOpts, nil, "netops/"+a.build.Version),
	}
	name := t.Name
	if name == "" {
		name = "copy"
	}
	return &transferJob{name: name, profile: t, src: src, dst: dst, opts: o}, nil
}

func newTransferRunCmd(a *app) *cobra.Command {
	var (
		f    transferFlags
		all  bool
		tags []string
		par  int
	)
	cmd := &cobra.Command{
		Use:   "run [PROFILE...] [--all | --tag TAG]",
		Short: "Run transfer profiles from the config; summary table; exit 1 if any failed",
		Long: `Run the named transfer profiles (transfers: in the config), every profile
(--all) or those with a tag (--tag), -j at a time. Prints a summary table
(profile, files, bytes, duration, throughput, status) and the success rate;
-o json prints every file's receipt (path, size, sha256, duration, bytes sent,
resumed from). Flags given override the profiles' values.`,
		Example: `  netops transfer run backup_configs
  netops transfer run --all -j 4
  netops transfer run --tag nightly --lock nightly-backup
  netops transfer run backup_configs --dry-run -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if par < 1 {
				return usageErrorf(errors.New("-j must be at least 1"))
			}
			cfg, err := a.config()
			if err != nil {
				return err
			}
			profiles, err := selectProfiles(cfg.WithDefaults(), args, tags, all)
			if err != nil {
				return err
			}
			var jobs []*transferJob
			for _, p := range profiles {
				j, err := a.newJob(p, &f, cmd)
				if err != nil {
					return fmt.Errorf("transfer %s: %w", p.Name, err)
				}
				j.opts.Checksum = f.checksum
				jobs = append(jobs, j)
			}
			return a.runTransfers(cmd, jobs, &f, par)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "run every configured profile")
	cmd.Flags().StringSliceVar(&tags, "tag", nil, "run the profiles with this tag (repeatable)")
	cmd.Flags().IntVarP(&par, "jobs", "j", 1, "profiles run at once")
	return cmd
}

// selectProfiles resolves names, tags and --all to profiles, in config order.
func selectProfiles(cfg *config.Config, names, tags []string, all bool) ([]config.Transfer, error) {
	if len(names) == 0 && len(tags) == 0 && !all {
		return nil, usageErrorf(errors.New("name a transfer profile, or use --all or --tag (see 'netops transfer run --help')"))
	}
	if len(cfg.Transfers) == 0 {
		return nil, usageErrorf(errors.New("no transfer profiles in the config (transfers:); for an ad hoc transfer use 'netops transfer copy SRC DST'"))
	}
	want := map[string]bool{}
	for _, n := range names {
		if _, ok := cfg.Transfer(n); !ok {
			var known []string
			for _, t := range cfg.Transfers {
				known = append(known, t.Name)
			}
			msg := fmt.Sprintf("unknown transfer profile %q", n)
			if s := closest(n, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			return nil, usageErrorf(fmt.Errorf("%s (profiles: %s)", msg, strings.Join(known, ", ")))
		}
		want[n] = true
	}
	for _, tag := range tags {
		found := false
		for _, t := range cfg.Transfers {
			if slices.Contains(t.Tags, tag) {
				want[t.Name], found = true, true
			}
		}
		if !found {
			return nil, usageErrorf(fmt.Errorf("no transfer profile has the tag %q", tag))
		}
	}
	var out []config.Transfer
	for _, t := range cfg.Transfers {
		if all || want[t.Name] {
			out = append(out, t)
		}
	}
	return out, nil
}

// closest returns the candidate nearest to s by edit distance (<= 2), or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func newTransferCopyCmd(a *app) *cobra.Command {
	var (
		f    transferFlags
		mode string
	)
	cmd := &cobra.Command{
		Use:   "copy SRC DST [flags]",
		Short: "Transfer SRC to DST ad hoc (same engine and flags as a profile)",
		Long: `Copy SRC to DST: a file into an existing directory keeps its name, else DST
is the file's new path (its directory must exist); a directory copies its
contents into DST (created if its parent exists), like 'rsync -a SRC/ DST/'.
--mode sync mirrors (see --delete), --mode bisync keeps two trees in step
(baseline per SRC/DST pair in the state dir).`,
		Example: `  netops transfer copy ./site sftp://deploy@127.0.0.1:2222/var/www/site --mode sync --delete
  netops transfer copy backup@127.0.0.1:dumps/db.sql.gz /srv/restore/
  netops transfer copy https://127.0.0.1:8443/img.iso ./img.iso --sha256 9f86d0...
  netops transfer copy ./etc /tmp/etc-copy --exclude '*.log' --dry-run`,
		Args: exactArgs(2, "SRC and DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(config.Modes(), mode) {
				return usageErrorf(fmt.Errorf("--mode %q: use copy, sync or bisync", mode))
			}
			for i, s := range args {
				if _, err := config.ParseEndpoint(s); err != nil {
					return usageErrorf(fmt.Errorf("%s: %w", []string{"SRC", "DST"}[i], err))
				}
			}
			t := config.Transfer{Source: args[0], Destination: args[1], Mode: mode, Verify: config.VerifySHA256,
				Retries: f.retries, Backoff: config.Duration(f.backoff)}
			if f.del && mode != config.ModeSync {
				return usageErrorf(errors.New("--delete only applies to --mode sync"))
			}
			j, err := a.newJob(t, &f, cmd)
			if err != nil {
				return err
			}
			j.opts.Checksum = f.checksum
			return a.runTransfers(cmd, []*transferJob{j}, &f, 1)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&mode, "mode", config.ModeCopy, "copy, sync or bisync")
	return cmd
}

// transferOutcome is one job's result.
type transferOutcome struct {
	job *transferJob
	res *transfer.Result
	err error
}

// transferGCPercent is the garbage collector's target for transfers.
const transferGCPercent = 400

// runTransfers runs jobs (par at a time) under the optional lock, records
// them, prints the summary, and turns failures into the exit code.
func (a *app) runTransfers(cmd *cobra.Command, jobs []*transferJob, f *transferFlags, par int) error {
	format, err := a.format()
	if err != nil {
		return err
	}
	if a.getenv("GOGC") == "" {
		// The SSH library allocates a buffer per 32 KiB packet, so a
		// download makes garbage at the speed of the link, and at the
		// default GOGC=100 collects it about every 10 MiB. At 400 (1 GiB
		// download over loopback on the bench box): 0.4 to 0.6 s less
		// client CPU and about 10% less time, for a peak RSS of about
		// 100 MiB instead of 55. GOGC set in the environment is kept;
		// the setting is undone when the run ends (in-process callers).
		defer debug.SetGCPercent(debug.SetGCPercent(transferGCPercent))
	}
	ctx := cmd.Context()
	notify, err := a.newNotifier("--notify", f.notify)
	if err != nil {
		return err
	}
	if f.dryRun {
		notify = nil // a dry run publishes nothing
	}
	defer notify.close()
	if f.lockName != "" && !f.dryRun {
		release, lctx, err := a.holdLock(ctx, f.lockName, f.lockWait)
		if err != nil {
			return err
		}
		defer release()
		ctx = lctx
	}
	var prog *progressBar
	if a.ios.IsStderrTTY() && !a.opts.quiet && !f.dryRun {
		prog = newProgressBar(a.ios.ErrOut)
		defer prog.stop()
	}
	outcomes := make([]transferOutcome, len(jobs))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, j := range jobs {
		j.opts.Progress = func(e transfer.Event) {
			if e.Kind == transfer.EventRetry {
				a.log.Info("retrying", "transfer", j.name, "path", e.Path, "attempt", e.Attempt, "err", e.Err)
			}
			if prog != nil {
				prog.event(e)
			}
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a.log.Debug("transfer start", "profile", j.name, "source", j.src.Display, "destination", j.dst.Display, "mode", j.opts.Mode)
			res, err := transfer.Run(ctx, j.src, j.dst, j.opts)
			outcomes[i] = transferOutcome{job: j, res: res, err: err}
			// The result is final: publish it even when the run is being stopped.
			notify.publish(context.WithoutCancel(ctx), eventTransferResult, "transfer "+j.name, newTransferEvent(outcomes[i], time.Now()))
		}()
	}
	wg.Wait()
	if prog != nil {
		prog.stop()
	}
	if !f.dryRun && !f.noHistory {
		for _, o := range outcomes {
			a.recordTransfer(ctx, o)
		}
	}
	if err := a.printTransfers(format, outcomes, f.dryRun); err != nil {
		return err
	}
	var errs []error
	for _, o := range outcomes {
		if o.err != nil {
			errs = append(errs, o.err)
			if ctx.Err() == nil || !errors.Is(o.err, context.Canceled) {
				fmt.Fprintf(a.ios.ErrOut, "netops: transfer %s: %v\n", o.job.name, o.err)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	if cmd.Context().Err() != nil {
		return &exitError{code: ExitInterrupted, err: errInterrupted}
	}
	if ctx.Err() != nil {
		// the lock was lost: the run was stopped
		return &exitError{code: ExitLeaseLost, err: fmt.Errorf("lease on lock %q was lost; the transfers were stopped", f.lockName)}
	}
	return &exitError{code: transferExitCode(errs, false), silent: true}
}

// holdLock takes an exclusive lock for the run and keeps its lease renewed;
// the returned context ends if the lease is lost.
func (a *app) holdLock(ctx context.Context, name string, wait time.Duration) (func(), context.Context, error) {
	if err := lock.ValidateName(name); err != nil {
		return nil, nil, usageErrorf(fmt.Errorf("--lock: %w", err))
	}
	lk, err := a.locker(ctx)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	req := lock.Request{Name: name, Mode: lock.Exclusive, TTL: lock.DefaultTTL, Wait: lock.WaitForever, Session: true,
		Holder: lock.Holder{Owner: newOwnerID(), Host: host, PID: os.Getpid(), Command: "netops transfer"}}
	if wait > 0 {
		req.Wait = wait
	}
	asked := time.Now()
	lease, err := lk.Acquire(ctx, req)
	a.recordLock(ctx, req, lock.RunResult{Lease: lease, Waited: time.Since(asked)}, err)
	if err != nil {
		lk.Close()
		return nil, nil, err
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(lease.TTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := lk.Renew(lctx, lease); err != nil && lctx.Err() == nil {
					if errors.Is(err, lock.ErrLost) {
						a.log.Warn("lock lost; stopping the transfers", "lock", name, "err", err)
						cancel()
						return
					}
					a.log.Warn("lock renewal failed", "lock", name, "err", err)
				}
			}
		}
	}()
	release := func() {
		close(done)
		cancel()
		if err := lk.Release(context.WithoutCancel(ctx), name, req.Owner); err != nil {
			a.log.Warn("lock release failed", "lock", name, "err", err)
		}
		lk.Close()
	}
	return release, lctx, nil
}

func (a *app) recordTransfer(ctx context.Context, o transferOutcome) {
	if o.res == nil {
		return
	}
	rr := transfer.Record(o.res, o.job.opts, o.err)
	rr.Name = o.job.profile.Name
	detail, err := json.Marshal(rr)
	if err != nil {
		return
	}
	st, err := a.store(context.WithoutCancel(ctx))
	if err != nil {
		a.log.Warn("transfer history not recorded", "err", err)
		return
	}
	if _, err := st.RecordRun(context.WithoutCancel(ctx), store.Run{Kind: "transfer", Name: o.job.name, Status: rr.Status,
		Started: o.res.Started, Finished: o.res.Started.Add(o.res.Duration), Detail: detail}); err != nil {
		a.log.Warn("transfer history not recorded", "err", err)
	}
}

// transferDoc is the -o json document of run and copy.
type transferDoc struct {
	Transfers   []*transfer.Result `json:"transfers"`
	Errors      map[string]string  `json:"errors,omitempty"`
	Succeeded   int                `json:"succeeded"`
	Failed      int                `json:"failed"`
	SuccessRate float64            `json:"success_rate"`
}

func (a *app) printTransfers(format render.Format, outs []transferOutcome, dryRun bool) error {
	ok := 0
	for _, o := range outs {
		if o.err == nil {
			ok++
		}
	}
	rate := float64(ok) / float64(len(outs))
	if format == render.JSON {
		doc := transferDoc{Succeeded: ok, Failed: len(outs) - ok, SuccessRate: rate}
		for _, o := range outs {
			if o.res != nil {
				doc.Transfers = append(doc.Transfers, o.res)
			}
			if o.err != nil {
				if doc.Errors == nil {
					doc.Errors = map[string]string{}
				}
				doc.Errors[o.job.name] = o.err.Error()
			}
		}
		return render.WriteJSON(a.ios.Out, doc)
	}
	m := a.mode()
	if dryRun {
		return a.printPlans(outs, m)
	}
	if a.opts.quiet {
		return nil
	}
	t := render.NewTable("profile", "files", "bytes", "duration", "throughput", "status")
	t.StatusColumn = 5
	for _, o := range outs {
		r := o.res
		status := "OK"
		if o.err != nil {
			status = "FAILED"
		}
		if r == nil {
			t.Add(o.job.name, "0", "0", "0s", "-", status)
			continue
		}
		files := strconv.Itoa(r.Files)
		if r.Failed > 0 {
			files += fmt.Sprintf(" (%d failed)", r.Failed)
		}
		t.Add(o.job.name, files, humanBytes(r.Bytes), r.Duration.Round(time.Millisecond).String(),
			humanBytes(int64(transfer.Throughput(r.Bytes, r.Duration)))+"/s", status)
	}
	if err := t.WriteText(a.ios.Out, m); err != nil {
		return err
	}
	if m.TTY {
		fmt.Fprintf(a.ios.Out, "\n%d of %d transfers succeeded (%.0f%%)\n", ok, len(outs), rate*100)
	}
	return nil
}

func (a *app) printPlans(outs []transferOutcome, m render.Mode) error {
	for _, o := range outs {
		if o.res == nil {
			continue
		}
		if m.TTY {
			fmt.Fprintf(a.ios.Out, "%s (%s %s -> %s): %d actions, nothing changed (dry run)\n", o.job.name, o.res.Mode, o.res.Source, o.res.Destination, len(o.res.Plan))
			if len(o.res.Plan) == 0 {
				fmt.Fprintln(a.ios.Out, "  up to date")
				continue
			}
		}
		t := render.NewTable("op", "path", "size", "reason")
		for _, s := range o.res.Plan {
			p := s.Path
			if s.ConflictPath != "" {
				p += " -> " + s.ConflictPath
			}
			if s.Direction != "" {
				p = s.Direction + " " + p
			}
			size := ""
			if s.Op == "copy" {
				size = strconv.FormatInt(s.Size, 10)
			}
			row := []string{s.Op, p, size, s.Reason}
			if !m.TTY {
				row = append([]string{o.job.name}, row...)
			}
			t.Add(row...)
		}
		if err := t.WriteText(a.ios.Out, m); err != nil {
			return err
		}
	}
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newTransferHistoryCmd(a *app) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history [PROFILE]",
		Short: "Recorded transfer runs, newest first",
		Args:  maxArgs(1, "one PROFILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.format()
			if err != nil {
				return err
			}
			recs, err := a.transferRuns(cmd.Context(), args, limit)
			if err != nil {
				return err
			}
			if format == render.JSON {
				if recs == nil {
					recs = []transfer.RunRecord{}
				}
				return render.WriteJSON(a.ios.Out, recs)
			}
			t := render.NewTable("started", "profile", "status", "files", "bytes", "duration", "throughput", "error")
			t.StatusColumn = 2
			for _, r := range recs {
				name := r.Name
				if name == "" {
					name = "copy"
				}
				t.Add(r.Started.Local().Format(time.RFC3339), name, strings.ToUpper(r.Status), strconv.Itoa(r.Files),
					humanBytes(r.Bytes), r.Duration.Round(time.Millisecond).String(),
					humanBytes(int64(transfer.Throughput(r.Bytes, r.Duration)))+"/s", render.Dash(r.Error))
			}
			return t.WriteText(a.ios.Out, a.mode())
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "show at most this many runs (0 = all)")
	return cmd
}

// transferRuns reads the recorded runs (of one profile when names has one).
func (a *app) transferRuns(ctx context.Context, names []string, limit int) ([]transfer.RunRecord, error) {
	st, err := a.store(ctx)
	if err != nil {
		return nil, err
	}
	runs, err := st.Runs(ctx, "transfer", 0)
	if err != nil {
		return nil, err
	}
	var out []transfer.RunRecord
	for _, r := range runs {
		if len(names) == 1 && r.Name != names[0] {
			continue
		}
		var rr transfer.RunRecord
		if json.Unmarshal(r.Detail, &rr) != nil {
			continue
		}
		out = append(out, rr)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

func newTransferReportCmd(a *app) *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Profiles, recent runs, success rate, average duration and throughput, recommendations",
		Long: `Summarize the configured transfer profiles and the runs recorded in the local
history over --since: runs, success rate, average duration and throughput of
successful runs, files that needed retries, the last error, and
recommendations drawn from those numbers.`,
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
			cfg, err := a.config()
			if err != nil {
				return err
			}
			recs, err := a.transferRuns(cmd.Context(), nil, 0)
			if err != nil {
				return err
			}
			now := time.Now()
			rep := transfer.Summarize(cfg.WithDefaults().Transfers, recs, now.Add(-period), now)
			if format == render.JSON {
				return render.WriteJSON(a.ios.Out, rep)
			}
			return writeTransferReport(a.ios.Out, a.mode(), rep)
		},
	}
	cmd.Flags().StringVar(&since, "since", "7d", "history period (7d, 36h, 90m)")
	return cmd
}

func writeTransferReport(out io.Writer, m render.Mode, rep *transfer.Report) error {
	fmt.Fprintf(out, "transfer runs since %s: %d, success rate %.0f%%\n\n", rep.Since.Local().Format("2006-01-02 15:04"), rep.Runs, rep.SuccessRate*100)
	t := render.NewTable("profile", "mode", "runs", "ok", "failed", "success", "avg duration", "avg throughput", "last run", "last status")
	t.StatusColumn = 9
	for _, p := range rep.Profiles {
		last := "-"
		if !p.LastRun.IsZero() {
			last = p.LastRun.Local().Format("2006-01-02 15:04")
		}
		succ := "-"
		if p.Runs > 0 {
			succ = fmt.Sprintf("%.0f%%", p.SuccessRate*100)
		}
		t.Add(p.Name, render.Dash(p.Mode), strconv.Itoa(p.Runs), strconv.Itoa(p.OK), strconv.Itoa(p.Failed), succ,
			p.AvgDuration.Round(time.Millisecond).String(), humanBytes(int64(p.AvgRate))+"/s", last,
			render.Dash(strings.ToUpper(p.LastStatus)))
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

// progressBar draws one status line on stderr (a TTY): files and bytes done
// of the total, speed, ETA, and the file in progress.
type progressBar struct {
	w io.Writer

	mu         sync.Mutex
	totalFiles int
	totalBytes int64
	doneFiles  int
	doneBytes  int64
	current    string
	curSize    int64
	curDone    int64
	start      time.Time
	lastDraw   time.Time
	drawn      bool
	stopped    bool
}

func newProgressBar(w io.Writer) *progressBar {
	return &progressBar{w: w, start: time.Now()}
}

func (p *progressBar) event(e transfer.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	switch e.Kind {
	case transfer.EventPlan:
		p.totalFiles += e.TotalFiles
		p.totalBytes += e.TotalBytes
	case transfer.EventFileStart:
		p.current, p.curSize, p.curDone = e.Path, e.Size, e.Done
		p.doneBytes += e.Done
	case transfer.EventFileProgress:
		p.doneBytes += e.Delta
		if e.Path == p.current {
			p.curDone = e.Done
		}
	case transfer.EventFileDone:
		p.doneFiles++
	}
	now := time.Now()
	if now.Sub(p.lastDraw) < 200*time.Millisecond && e.Kind != transfer.EventFileDone {
		return
	}
	p.lastDraw = now
	el := now.Sub(p.start).Seconds()
	speed := 0.0
	if el > 0 {
		speed = float64(p.doneBytes) / el
	}
	pct := 0.0
	if p.totalBytes > 0 {
		pct = min(100, float64(p.doneBytes)*100/float64(p.totalBytes))
	}
	eta := "-"
	if speed > 0 && p.totalBytes > p.doneBytes {
		eta = (time.Duration(float64(p.totalBytes-p.doneBytes)/speed) * time.Second / time.Second).Round(time.Second).String()
	}
	cur := ""
	if p.current != "" && p.curSize > 0 {
		cur = fmt.Sprintf("  %s %.0f%%", p.current, min(100, float64(p.curDone)*100/float64(p.curSize)))
	}
	line := fmt.Sprintf("%d/%d files  %s/%s  %.0f%%  %s/s  ETA %s%s", p.doneFiles, p.totalFiles,
		humanBytes(p.doneBytes), humanBytes(p.totalBytes), pct, humanBytes(int64(speed)), eta, cur)
	if len(line) > 120 {
		line = line[:120]
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	p.drawn = true
}

func (p *progressBar) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn && !p.stopped {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	p.stopped = true
}
