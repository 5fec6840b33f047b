package transfer

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/transfer/plan"
)

// bisyncState is the baseline of a bisync run. Successful actions update it
// as they finish; it is written at most every second while the run goes on
// and once at the end, so a failed or interrupted file never enters it (the
// next run sees that change again), and a crash loses at most the last
// second of updates (the next run then finds identical copies on both sides:
// a no-op that records them).
type bisyncState struct {
	base *plan.Baseline

	mu        sync.Mutex
	lastSave  time.Time
	saveError error
	// blocked holds the paths whose Conflict or Mkdir failed: the later
	// actions on them are not carried out (see bisyncBlocked).
	blocked map[string]blockedPath
}

// blockedPath is why later actions on a path (and below it) are skipped.
type blockedPath struct {
	conflict plan.Action // the failed Conflict (Op == plan.Conflict), if any
	mkdir    plan.Action // the failed Mkdir (Op == plan.Mkdir), if any
	cause    error
}

// BaselinePath is where the baseline of a bisync lives: one file per
// profile (per source/destination pair for ad hoc runs) under
// <state dir>/transfer/bisync/.
func BaselinePath(stateDir, profile, src, dst string) string {
	name := profile
	if name == "" {
		name = "adhoc-" + journalKey(src, dst, "")
	}
	return filepath.Join(stateDir, "transfer", "bisync", name+".json")
}

func (r *runner) prepareBisync(ctx context.Context, sfs, dfs FS, a, b []plan.Entry) error {
	if r.o.StateDir == "" {
		return fmt.Errorf("bisync needs a state directory for its baseline")
	}
	base, err := plan.LoadBaseline(BaselinePath(r.o.StateDir, r.o.Name, r.src.Display, r.dst.Display))
	if err != nil {
		return err
	}
	if r.o.Checksum {
		for _, side := range []struct {
			f    FS
			root string
			list []plan.Entry
		}{{sfs, r.srcRoot, a}, {dfs, r.dstRoot, b}} {
			for i := range side.list {
				if side.list[i].IsDir {
					continue
				}
				p := path.Join(side.root, side.list[i].Path)
				if side.list[i].Hash, _, err = fileSHA256(ctx, side.f, p); err != nil {
					return fmt.Errorf("hash %s: %w", p, err)
				}
			}
		}
	}
	acts, err := plan.Bisync(base.Entries(), a, b, plan.BisyncOptions{Checksum: r.o.Checksum})
	if err != nil {
		return err
	}
	r.bisync = &bisyncState{base: base}
	for _, act := range acts {
		r.add(act)
	}
	r.finishPlan()
	return nil
}

// bisyncFailed notes a failed action of a bisync. A failed Conflict rename
// leaves the losing copy under its name: the Copy of Path that follows would
// overwrite it (data loss), so every later action on Path, below Path and on
// ConflictPath is skipped; Path stays as it was on both sides and out of the
// baseline, so the next run finds the conflict again. A failed Mkdir skips
// the later actions below the directory (they could only fail).
func (r *runner) bisyncFailed(a plan.Action, cause error) {
	s := r.bisync
	if s == nil || cause == nil || (a.Op != plan.Conflict && a.Op != plan.Mkdir) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blocked == nil {
		s.blocked = map[string]blockedPath{}
	}
	b := blockedPath{cause: cause}
	if a.Op == plan.Conflict {
		b.conflict = a
		s.blocked[a.Path] = b
		if a.ConflictPath != "" {
			s.blocked[a.ConflictPath] = b
		}
		return
	}
	if _, ok := s.blocked[a.Path]; !ok {
		b.mkdir = a
		s.blocked[a.Path] = b
	}
}

// bisyncBlocked returns the error to report instead of carrying out a when
// an earlier failure makes it unsafe (see bisyncFailed), else nil.
func (r *runner) bisyncBlocked(a plan.Action) error {
	s := r.bisync
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.blocked) == 0 {
		return nil
	}
	for p := a.Path; ; p = path.Dir(p) {
		if b, ok := s.blocked[p]; ok {
			switch {
			case b.conflict.Op == plan.Conflict:
				c := b.conflict.Path
				return fmt.Errorf("conflict copy of %s could not be kept: %w; %s left unchanged on both sides", c, b.cause, c)
			case p != a.Path: // below a directory that could not be created
				return fmt.Errorf("%s not carried out: directory %s could not be created on %s: %w",
					a.Path, p, b.mkdir.Target(), b.cause)
			}
		}
		if p == "." || p == "/" || p == "" {
			return nil
		}
	}
}

// skipBlocked reports a blocked action as failed, without touching either
// side or the baseline.
func (r *runner) skipBlocked(a plan.Action, err error) Receipt {
	ops := map[plan.Op]string{plan.Copy: OpCopy, plan.Delete: OpDelete, plan.Backup: OpBackup,
		plan.Mkdir: OpMkdir, plan.Conflict: OpConflict, plan.Skip: OpSkip}
	rec := Receipt{Path: a.Path, Op: ops[a.Op], Reason: a.Reason, Direction: r.dirOf(a), Error: err.Error()}
	if a.Op == plan.Copy {
		r.emit(Event{Kind: EventFileDone, Path: a.Path, Err: err})
	}
	return rec
}

// baselineUpdate records a successful action in the baseline.
func (r *runner) baselineUpdate(_ context.Context, a plan.Action, rec Receipt) {
	s := r.bisync
	if s == nil {
		return
	}
	if a.Op == plan.Copy && rec.SHA256 != "" {
		a.Entry.Hash = rec.SHA256
	}
	s.base.Apply(a)
	s.mu.Lock()
	due := time.Since(s.lastSave) >= time.Second
	if due {
		s.lastSave = time.Now()
	}
	s.mu.Unlock()
	if due {
		if err := s.base.Save(); err != nil {
			s.mu.Lock()
			s.saveError = err
			s.mu.Unlock()
		}
	}
}

// saveBaseline writes the baseline at the end of the run.
func (r *runner) saveBaseline() error {
	if r.bisync == nil {
		return nil
	}
	if err := r.bisync.base.Save(); err != nil {
		return fmt.Errorf("save the bisync baseline: %w", err)
	}
	return nil
}
