package transfer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
	"github.com/netops-dev/netops/internal/transfer/plan"
)

func bisyncRun(t *testing.T, a, b Location, o Options) *Result {
	t.Helper()
	res, err := Run(context.Background(), a, b, o)
	if err != nil {
		t.Fatalf("bisync: %v", err)
	}
	return res
}

func checkFile(t *testing.T, p, want string) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	if string(got) != want {
		t.Errorf("%s = %q, want %q", p, got, want)
	}
}

func testBisync(t *testing.T, aDir, bDir string, a, b Location, o Options) {
	t0 := mtime0
	writeFile(t, filepath.Join(aDir, "only-a.txt"), []byte("A"), 0o644, t0)
	writeFile(t, filepath.Join(bDir, "sub/only-b.txt"), []byte("B"), 0o644, t0)
	writeFile(t, filepath.Join(aDir, "same.txt"), []byte("same"), 0o644, t0)
	writeFile(t, filepath.Join(bDir, "same.txt"), []byte("same"), 0o644, t0)

	// First run: the union on both sides.
	bisyncRun(t, a, b, o)
	for _, d := range []string{aDir, bDir} {
		checkFile(t, filepath.Join(d, "only-a.txt"), "A")
		checkFile(t, filepath.Join(d, "sub/only-b.txt"), "B")
		checkFile(t, filepath.Join(d, "same.txt"), "same")
	}
	// No change: nothing to do.
	if res := bisyncRun(t, a, b, o); res.Files != 0 || res.Deleted != 0 {
		t.Errorf("no-change bisync: files %d deleted %d", res.Files, res.Deleted)
	}
	// A change on each side propagates; a deletion propagates.
	writeFile(t, filepath.Join(aDir, "only-a.txt"), []byte("A2"), 0o644, t0.Add(time.Hour))
	writeFile(t, filepath.Join(bDir, "sub/only-b.txt"), []byte("B2"), 0o644, t0.Add(time.Hour))
	os.Remove(filepath.Join(bDir, "same.txt"))
	bisyncRun(t, a, b, o)
	for _, d := range []string{aDir, bDir} {
		checkFile(t, filepath.Join(d, "only-a.txt"), "A2")
		checkFile(t, filepath.Join(d, "sub/only-b.txt"), "B2")
		if _, err := os.Stat(filepath.Join(d, "same.txt")); err == nil {
			t.Errorf("%s: deletion on B not propagated", d)
		}
	}
	// Both changed differently: a conflict, both copies kept on both sides.
	writeFile(t, filepath.Join(aDir, "only-a.txt"), []byte("from A"), 0o644, t0.Add(2*time.Hour))
	writeFile(t, filepath.Join(bDir, "only-a.txt"), []byte("from B"), 0o644, t0.Add(3*time.Hour))
	// Deleted on A, modified on B: the modified file wins.
	os.Remove(filepath.Join(aDir, "sub/only-b.txt"))
	writeFile(t, filepath.Join(bDir, "sub/only-b.txt"), []byte("B3"), 0o644, t0.Add(2*time.Hour))
	res := bisyncRun(t, a, b, o)
	for _, d := range []string{aDir, bDir} {
		checkFile(t, filepath.Join(d, "only-a.txt"), "from A")
		checkFile(t, filepath.Join(d, "sub/only-b.txt"), "B3")
		m, _ := filepath.Glob(filepath.Join(d, "only-a.conflict-*"))
		if len(m) != 1 {
			t.Errorf("%s: conflict copies %v, want one", d, m)
			continue
		}
		checkFile(t, m[0], "from B")
	}
	conflicts := 0
	for _, r := range res.Receipts {
		if r.Op == OpConflict {
			conflicts++
		}
	}
	if conflicts != 1 {
		t.Errorf("%d conflict receipts, want 1: %+v", conflicts, res.Receipts)
	}
	// A side emptied (an unmounted disk?) aborts and deletes nothing.
	ents, _ := os.ReadDir(aDir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(aDir, e.Name()))
	}
	_, err := Run(context.Background(), a, b, o)
	var ese *plan.EmptySideError
	if !errors.As(err, &ese) {
		t.Fatalf("empty side: err = %v, want EmptySideError", err)
	}
	checkFile(t, filepath.Join(bDir, "only-a.txt"), "from A")
}

func TestBisyncLocal(t *testing.T) {
	aDir, bDir := t.TempDir(), t.TempDir()
	o := localOpts()
	o.Mode, o.Name, o.StateDir = config.ModeBisync, "docs", t.TempDir()
	testBisync(t, aDir, bDir, loc(t, aDir), loc(t, bDir), o)
	fi, err := os.Stat(BaselinePath(o.StateDir, "docs", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("baseline mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestBisyncSFTP(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	aDir := t.TempDir()
	bDir := filepath.Join(remote, "b")
	os.Mkdir(bDir, 0o755)
	o := sftpOpts(e)
	o.Mode, o.Name, o.StateDir = config.ModeBisync, "remote-docs", t.TempDir()
	testBisync(t, aDir, bDir, loc(t, aDir), loc(t, e.url(bDir)), o)
}

// faultFS is the local file system with faults: renames to a conflict name
// and the creation of directories named in mkdirFail are refused, like a
// server denying them.
type faultFS struct {
	Local
	mkdirFail string // base name of directories Mkdir refuses
}

func (f faultFS) Rename(ctx context.Context, from, to string) error {
	if strings.Contains(filepath.Base(to), ".conflict-") {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: os.ErrPermission}
	}
	return f.Local.Rename(ctx, from, to)
}

func (f faultFS) Mkdir(ctx context.Context, p string, perm os.FileMode) error {
	if f.mkdirFail != "" && filepath.Base(p) == f.mkdirFail {
		return &os.PathError{Op: "mkdir", Path: p, Err: os.ErrPermission}
	}
	return f.Local.Mkdir(ctx, p, perm)
}

// faultOn dials faultFS for the local path dir and Local for the others.
func faultOn(dir string, f faultFS) Dialer {
	return func(ctx context.Context, e config.Endpoint) (FS, error) {
		if e.Path == dir {
			return f, nil
		}
		return Local{}, nil
	}
}

func receiptFor(res *Result, p, op string) (Receipt, bool) {
	for _, r := range res.Receipts {
		if r.Path == p && r.Op == op {
			return r, true
		}
	}
	return Receipt{}, false
}

// A Conflict rename that fails must not be followed by the Copy that takes
// its place: that would overwrite the copy the rename was to keep.
func TestBisyncFailedConflictRenameKeepsBothCopies(t *testing.T) {
	aDir, bDir := t.TempDir(), t.TempDir()
	o := localOpts()
	o.Mode, o.Name, o.StateDir = config.ModeBisync, "docs", t.TempDir()
	writeFile(t, filepath.Join(aDir, "x.txt"), []byte("base"), 0o644, mtime0)
	bisyncRun(t, loc(t, aDir), loc(t, bDir), o)
	checkFile(t, filepath.Join(bDir, "x.txt"), "base")

	// Both sides change x.txt; renaming B's copy out of the way is refused.
	writeFile(t, filepath.Join(aDir, "x.txt"), []byte("from A"), 0o644, mtime0.Add(time.Hour))
	writeFile(t, filepath.Join(bDir, "x.txt"), []byte("from B"), 0o644, mtime0.Add(2*time.Hour))
	faulty := o
	faulty.Dial = faultOn(bDir, faultFS{})
	res, err := Run(context.Background(), loc(t, aDir), loc(t, bDir), faulty)
	var fe *FilesError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a FilesError", err)
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("err = %v, want it to wrap the rename's permission error", err)
	}
	checkFile(t, filepath.Join(aDir, "x.txt"), "from A")
	checkFile(t, filepath.Join(bDir, "x.txt"), "from B")
	for _, d := range []string{aDir, bDir} {
		if m, _ := filepath.Glob(filepath.Join(d, "x.conflict-*")); len(m) != 0 {
			t.Errorf("%s: conflict copies %v after a failed rename", d, m)
		}
		noTemps(t, d)
	}
	if rec, ok := receiptFor(res, "x.txt", OpConflict); !ok || rec.Error == "" {
		t.Errorf("conflict receipt %+v (found %v), want a failure", rec, ok)
	}
	rec, ok := receiptFor(res, "x.txt", OpCopy)
	if !ok || !strings.Contains(rec.Error, "conflict copy of x.txt could not be kept") ||
		!strings.Contains(rec.Error, "x.txt left unchanged on both sides") {
		t.Errorf("copy receipt %+v (found %v), want it skipped as unsafe", rec, ok)
	}
	if res.Files != 0 || res.Failed != 3 {
		t.Errorf("files %d failed %d, want 0 and 3 (conflict and both copies)", res.Files, res.Failed)
	}

	// The baseline did not take either copy: the next run sees the same
	// conflict and, without the fault, keeps both copies on both sides.
	res = bisyncRun(t, loc(t, aDir), loc(t, bDir), o)
	if _, ok := receiptFor(res, "x.txt", OpConflict); !ok {
		t.Errorf("the next run found no conflict: %+v", res.Receipts)
	}
	for _, d := range []string{aDir, bDir} {
		checkFile(t, filepath.Join(d, "x.txt"), "from A")
		m, _ := filepath.Glob(filepath.Join(d, "x.conflict-B-*.txt"))
		if len(m) != 1 {
			t.Errorf("%s: conflict copies %v, want one", d, m)
			continue
		}
		checkFile(t, m[0], "from B")
	}
}

// A file on one side against a directory on the other: when the file cannot
// be renamed, neither the directory nor its contents are created over it.
func TestBisyncFailedConflictRenameFileAgainstDirectory(t *testing.T) {
	aDir, bDir := t.TempDir(), t.TempDir()
	o := localOpts()
	o.Mode, o.Name, o.StateDir = config.ModeBisync, "docs", t.TempDir()
	o.Dial = faultOn(bDir, faultFS{})
	writeFile(t, filepath.Join(aDir, "d/inner.txt"), []byte("inner"), 0o644, mtime0)
	writeFile(t, filepath.Join(aDir, "other.txt"), []byte("other"), 0o644, mtime0)
	writeFile(t, filepath.Join(bDir, "d"), []byte("a file on B"), 0o644, mtime0)
	res, err := Run(context.Background(), loc(t, aDir), loc(t, bDir), o)
	var fe *FilesError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a FilesError", err)
	}
	checkFile(t, filepath.Join(bDir, "d"), "a file on B")
	checkFile(t, filepath.Join(aDir, "d/inner.txt"), "inner")
	checkFile(t, filepath.Join(bDir, "other.txt"), "other") // unrelated work goes on
	if m, _ := filepath.Glob(filepath.Join(aDir, "d.conflict-*")); len(m) != 0 {
		t.Errorf("conflict copies %v on A after a failed rename", m)
	}
	rec, ok := receiptFor(res, "d/inner.txt", OpCopy)
	if !ok || !strings.Contains(rec.Error, "conflict copy of d could not be kept") {
		t.Errorf("copy receipt %+v (found %v), want it skipped", rec, ok)
	}
}

// A directory that cannot be created: the copies into it are reported as
// failed (nothing lost on either side) and stay out of the baseline, so the
// next run copies them.
func TestBisyncFailedMkdirSkipsItsContents(t *testing.T) {
	aDir, bDir := t.TempDir(), t.TempDir()
	o := localOpts()
	o.Mode, o.Name, o.StateDir = config.ModeBisync, "docs", t.TempDir()
	writeFile(t, filepath.Join(aDir, "keep.txt"), []byte("keep"), 0o644, mtime0)
	bisyncRun(t, loc(t, aDir), loc(t, bDir), o)

	writeFile(t, filepath.Join(aDir, "newdir/f.txt"), []byte("new"), 0o644, mtime0)
	faulty := o
	faulty.Dial = faultOn(bDir, faultFS{mkdirFail: "newdir"})
	res, err := Run(context.Background(), loc(t, aDir), loc(t, bDir), faulty)
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("err = %v, want the mkdir's permission error", err)
	}
	checkFile(t, filepath.Join(aDir, "newdir/f.txt"), "new")
	rec, ok := receiptFor(res, "newdir/f.txt", OpCopy)
	if !ok || !strings.Contains(rec.Error, "directory newdir could not be created on B") {
		t.Errorf("copy receipt %+v (found %v), want it skipped", rec, ok)
	}
	if res.Failed != 2 {
		t.Errorf("failed %d, want 2 (mkdir and the copy)", res.Failed)
	}
	bisyncRun(t, loc(t, aDir), loc(t, bDir), o)
	checkFile(t, filepath.Join(bDir, "newdir/f.txt"), "new")
	checkFile(t, filepath.Join(aDir, "newdir/f.txt"), "new")
}
