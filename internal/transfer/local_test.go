package transfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
	"github.com/netops-dev/netops/internal/transfer/plan"
)

var mtime0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func localOpts() Options {
	return Options{Verify: true, Retries: 2, Backoff: time.Millisecond, Dial: NewDialer(sshconnZero(), nil, "t"), MaxDelete: -1}
}

func makeTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"a.txt":           []byte("alpha\n"),
		"big.bin":         randBytes(1, remoteHashMin+17), // hashed on the server when uploaded
		"empty":           {},
		"sub/b.conf":      []byte("beta"),
		"sub/deep/c.conf": []byte("gamma"),
		"sub/x.log":       []byte("log line"),
		"cache/junk.tmp":  []byte("junk"),
	}
	for p, b := range files {
		mode := os.FileMode(0o644)
		if p == "sub/b.conf" {
			mode = 0o600
		}
		writeFile(t, filepath.Join(root, p), b, mode, mtime0)
	}
	return files
}

func TestCopyLocalTree(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "out")
	files := makeTree(t, src)
	o := localOpts()
	o.Exclude = []string{"*.log", "cache"}
	res, err := Run(context.Background(), loc(t, src), loc(t, dst), o)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(dst, p))
		excluded := filepath.Ext(p) == ".log" || filepath.Dir(p) == "cache"
		if excluded {
			if err == nil {
				t.Errorf("%s was copied despite the exclude", p)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: content differs (err %v)", p, err)
			continue
		}
		fi, _ := os.Stat(filepath.Join(dst, p))
		if !fi.ModTime().Equal(mtime0) {
			t.Errorf("%s: mtime %v, want %v", p, fi.ModTime(), mtime0)
		}
		wantMode := os.FileMode(0o644)
		if p == "sub/b.conf" {
			wantMode = 0o600
		}
		if fi.Mode().Perm() != wantMode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), wantMode)
		}
	}
	if res.Files != 5 || res.Failed != 0 {
		t.Errorf("files %d failed %d, want 5 and 0", res.Files, res.Failed)
	}
	for _, r := range res.Receipts {
		if r.Op != OpCopy {
			continue
		}
		if want := sum(files[r.Path]); r.SHA256 != want {
			t.Errorf("receipt %s: sha256 %s, want %s", r.Path, r.SHA256, want)
		}
		if r.Verified != VerifiedReadBack {
			t.Errorf("receipt %s: verified %q", r.Path, r.Verified)
		}
	}
	noTemps(t, dst)
}

func TestCopyIncludeOnly(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src)
	o := localOpts()
	o.Include = []string{"*.conf"}
	if _, err := Run(context.Background(), loc(t, src), loc(t, dst), o); err != nil {
		t.Fatal(err)
	}
	var got []string
	_ = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dst, p)
			got = append(got, rel)
		}
		return nil
	})
	if len(got) != 2 || got[0] != "sub/b.conf" || got[1] != "sub/deep/c.conf" {
		t.Errorf("copied %v, want only the two .conf files", got)
	}
}

func TestCopySingleFile(t *testing.T) {
	src := t.TempDir()
	data := randBytes(2, 100000)
	writeFile(t, filepath.Join(src, "f.bin"), data, 0o640, mtime0)
	dir := t.TempDir()
	ctx := context.Background()

	// Into an existing directory: keeps its name.
	if _, err := Run(ctx, loc(t, filepath.Join(src, "f.bin")), loc(t, dir), localOpts()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "f.bin")), data) {
		t.Fatal("content differs")
	}
	// To a new name.
	if _, err := Run(ctx, loc(t, filepath.Join(src, "f.bin")), loc(t, filepath.Join(dir, "g.bin")), localOpts()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "g.bin")), data) {
		t.Fatal("content differs")
	}
	// Over an existing file: replaced.
	writeFile(t, filepath.Join(dir, "h.bin"), []byte("old"), 0o644, time.Time{})
	if _, err := Run(ctx, loc(t, filepath.Join(src, "f.bin")), loc(t, filepath.Join(dir, "h.bin")), localOpts()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "h.bin")), data) {
		t.Fatal("existing file not replaced")
	}
	// Pinned SHA-256: right passes, wrong fails and lands nothing.
	o := localOpts()
	o.SHA256 = sum(data)
	if _, err := Run(ctx, loc(t, filepath.Join(src, "f.bin")), loc(t, filepath.Join(dir, "pinned")), o); err != nil {
		t.Fatal(err)
	}
	o.SHA256 = sum([]byte("something else"))
	_, err := Run(ctx, loc(t, filepath.Join(src, "f.bin")), loc(t, filepath.Join(dir, "pinned-bad")), o)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("wrong pin: err = %v, want ErrChecksum", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pinned-bad")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a file failing its pinned SHA-256 landed under its final name")
	}
	noTemps(t, dir)
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644, time.Time{})
	dst := t.TempDir()

	_, err := Run(ctx, loc(t, filepath.Join(src, "missing")), loc(t, dst), localOpts())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing source: %v, want fs.ErrNotExist", err)
	}
	_, err = Run(ctx, loc(t, filepath.Join(src, "f")), loc(t, filepath.Join(dst, "no/such/dir/f")), localOpts())
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing destination directory: %v, want ErrNotFound", err)
	}
	_, err = Run(ctx, loc(t, src), loc(t, filepath.Join(dst, "no/such")), localOpts())
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing destination parent for a tree: %v, want ErrNotFound", err)
	}
	_, err = Run(ctx, loc(t, src), loc(t, filepath.Join(src, "f")), localOpts())
	if err == nil {
		t.Error("a directory onto a file must fail")
	}
}

func TestUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every file: cannot test an unreadable file")
	}
	src, dst := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "ok"), []byte("fine"), 0o644, time.Time{})
	writeFile(t, filepath.Join(src, "secret"), []byte("no"), 0o000, time.Time{})
	res, err := Run(context.Background(), loc(t, src), loc(t, dst), localOpts())
	var fe *FilesError
	if !errors.As(err, &fe) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("err = %v, want a FilesError wrapping fs.ErrPermission", err)
	}
	if res.Files != 1 || res.Failed != 1 {
		t.Errorf("files %d failed %d, want 1 and 1", res.Files, res.Failed)
	}
	if _, err := os.Stat(filepath.Join(dst, "secret")); err == nil {
		t.Error("unreadable file landed")
	}
	noTemps(t, dst)
}

func TestDryRunTouchesNothing(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "new")
	makeTree(t, src)
	o := localOpts()
	o.DryRun = true
	res, err := Run(context.Background(), loc(t, src), loc(t, dst), o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Error("dry run created the destination")
	}
	copies := 0
	for _, s := range res.Plan {
		if s.Op == "copy" {
			copies++
		}
	}
	if copies != 7 {
		t.Errorf("plan has %d copies, want 7: %+v", copies, res.Plan)
	}
}

func TestSyncDeleteBackupMaxDelete(t *testing.T) {
	ctx := context.Background()
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src)
	o := localOpts()
	o.Mode = config.ModeSync
	if _, err := Run(ctx, loc(t, src), loc(t, dst), o); err != nil {
		t.Fatal(err)
	}
	// Second sync: nothing to do.
	res, err := Run(ctx, loc(t, src), loc(t, dst), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 0 || len(res.Plan) != 0 {
		t.Errorf("no-change sync copied %d files, plan %+v", res.Files, res.Plan)
	}
	// Change one file (same size, new mtime), remove two from the source.
	writeFile(t, filepath.Join(src, "a.txt"), []byte("ALPHA\n"), 0o644, mtime0.Add(time.Hour))
	os.Remove(filepath.Join(src, "sub/x.log"))
	os.Remove(filepath.Join(src, "empty"))
	// The guard trips first and changes nothing.
	o.Delete, o.MaxDelete = true, 1
	_, err = Run(ctx, loc(t, src), loc(t, dst), o)
	var mde *plan.MaxDeleteError
	if !errors.As(err, &mde) {
		t.Fatalf("err = %v, want MaxDeleteError", err)
	}
	if string(readFile(t, filepath.Join(dst, "a.txt"))) != "alpha\n" {
		t.Error("max-delete guard tripped but the sync changed files")
	}
	o.MaxDelete, o.BackupDir = 10, ".backup"
	res, err = Run(ctx, loc(t, src), loc(t, dst), o)
	if err != nil {
		t.Fatal(err)
	}
	if string(readFile(t, filepath.Join(dst, "a.txt"))) != "ALPHA\n" {
		t.Error("changed file not copied")
	}
	if _, err := os.Stat(filepath.Join(dst, "sub/x.log")); err == nil {
		t.Error("extraneous file not removed")
	}
	if string(readFile(t, filepath.Join(dst, ".backup/sub/x.log"))) != "log line" {
		t.Error("removed file not moved to the backup dir")
	}
	if res.Files != 1 || res.Deleted != 2 {
		t.Errorf("files %d deleted %d, want 1 and 2", res.Files, res.Deleted)
	}
	// --checksum sees a same-size, same-mtime content change.
	writeFile(t, filepath.Join(dst, "sub/b.conf"), []byte("BETA"), 0o600, mtime0)
	o.BackupDir = ""
	res, _ = Run(ctx, loc(t, src), loc(t, dst), o)
	if res.Files != 0 {
		t.Errorf("size+mtime sync copied %d files, want 0", res.Files)
	}
	o.Checksum = true
	if res, err = Run(ctx, loc(t, src), loc(t, dst), o); err != nil || res.Files != 1 {
		t.Fatalf("checksum sync: files %d, err %v; want 1 file", res.Files, err)
	}
	if string(readFile(t, filepath.Join(dst, "sub/b.conf"))) != "beta" {
		t.Error("checksum sync did not restore the file")
	}
}

// TestInterruptKeepsResumablePrefix cancels a (rate-limited) copy half way:
// nothing lands under the final name, the temporary file and its journal
// stay, and the next run continues from there.
func TestInterruptKeepsResumablePrefix(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	size := 4 << 20
	data := randBytes(15, size)
	writeFile(t, filepath.Join(src, "f"), data, 0o644, mtime0)
	o := localOpts()
	o.StateDir = t.TempDir()
	o.BWLimit = 8 << 20 // slow enough to stop in the middle
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o.Progress = func(e Event) {
		if e.Kind == EventFileProgress && e.Done >= int64(size/2) {
			cancel()
		}
	}
	_, err := Run(ctx, loc(t, filepath.Join(src, "f")), loc(t, filepath.Join(dst, "f")), o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "f")); err == nil {
		t.Fatal("interrupted copy landed under the final name")
	}
	if tmp := tempsIn(dst); len(tmp) != 1 {
		t.Fatalf("temporary files %v, want one kept for resume", tmp)
	}
	o.Progress, o.BWLimit = nil, 0
	res, err := Run(context.Background(), loc(t, filepath.Join(src, "f")), loc(t, filepath.Join(dst, "f")), o)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Receipts[0]; r.ResumedFrom < int64(size/2) || r.ResumedFrom+r.BytesSent != int64(size) {
		t.Errorf("resumed from %d and sent %d of %d", r.ResumedFrom, r.BytesSent, size)
	}
	if sum(readFile(t, filepath.Join(dst, "f"))) != sum(data) {
		t.Fatal("resumed copy has the wrong hash")
	}
	noTemps(t, dst)
}

// corruptFS is the local file system with a fault: every written file gets
// one byte flipped on its way to the disk (a bad cable, a bad disk).
type corruptFS struct{ Local }

func (c corruptFS) Create(ctx context.Context, p string, offset int64) (Writer, error) {
	w, err := c.Local.Create(ctx, p, offset)
	if err != nil {
		return nil, err
	}
	return &corruptWriter{Writer: w}, nil
}

type corruptWriter struct {
	Writer
	done bool
}

func (w *corruptWriter) WriteFrom(r io.Reader) (int64, error) {
	return w.Writer.WriteFrom(&flipReader{r: r, w: w})
}

type flipReader struct {
	r io.Reader
	w *corruptWriter
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && !f.w.done {
		p[n/2] ^= 0x55
		f.w.done = true
	}
	return n, err
}

// A copy whose landed bytes differ from what was read fails the file with
// ErrChecksum and removes the temporary file; nothing reaches the final name.
func TestVerifyMismatchFailsTheFile(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "f"), randBytes(17, 100000), 0o644, mtime0)
	o := localOpts()
	o.StateDir = t.TempDir()
	o.Dial = func(ctx context.Context, e config.Endpoint) (FS, error) {
		if e.Path == dst {
			return corruptFS{}, nil
		}
		return Local{}, nil
	}
	_, err := Run(context.Background(), loc(t, src), loc(t, dst), o)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "f")); err == nil {
		t.Error("a corrupted copy landed under the final name")
	}
	noTemps(t, dst)
	// verify: none does not look, and lands the corrupted copy: the check
	// above is what catches it.
	o.Verify = false
	if _, err := Run(context.Background(), loc(t, src), loc(t, dst), o); err != nil {
		t.Fatal(err)
	}
	if sum(readFile(t, filepath.Join(dst, "f"))) == sum(readFile(t, filepath.Join(src, "f"))) {
		t.Error("the fault injection did not corrupt anything: the test proves nothing")
	}
}

// Sync mirrors attributes: a file whose mode alone changed gets it without
// a copy, and directories end with the source's mtimes and modes even
// though files landed in them; a second run then has nothing to do. Copy
// sets directory times too. Locally and over SFTP.
func TestSyncAttributes(t *testing.T) {
	e := startSSH(t, sshtest.Config{})
	for _, side := range []string{"local", "sftp"} {
		t.Run(side, func(t *testing.T) {
			src, dstDir := t.TempDir(), t.TempDir()
			dst := filepath.Join(dstDir, "out")
			o := localOpts()
			url := dst
			if side == "sftp" {
				o = sftpOpts(e)
				url = e.url(dst)
			}
			o.Mode = config.ModeSync
			makeTree(t, src)
			dirTime := mtime0.Add(-time.Hour)
			for _, d := range []string{"sub/deep", "sub", "cache"} {
				if err := os.Chtimes(filepath.Join(src, d), dirTime, dirTime); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(filepath.Join(src, "cache"), 0o750); err != nil {
				t.Fatal(err)
			}
			// A read-only directory lands with rwx for its owner (later runs
			// write into it), and that counts as the same mode.
			if err := os.Chmod(filepath.Join(src, "sub/deep"), 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(filepath.Join(src, "sub/deep"), 0o755) })
			check := func(what string) {
				t.Helper()
				for _, p := range []string{"sub/deep", "sub", "cache", "sub/b.conf", "a.txt"} {
					si, _ := os.Stat(filepath.Join(src, p))
					di, err := os.Stat(filepath.Join(dst, p))
					if err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					if !di.ModTime().Truncate(time.Second).Equal(si.ModTime().Truncate(time.Second)) {
						t.Errorf("%s: %s mtime %v, want %v", what, p, di.ModTime(), si.ModTime())
					}
					want := si.Mode().Perm()
					if si.IsDir() {
						want = plan.DirPerm(want)
					}
					if di.Mode().Perm() != want {
						t.Errorf("%s: %s mode %v, want %v", what, p, di.Mode().Perm(), want)
					}
				}
			}
			if _, err := Run(context.Background(), loc(t, src), loc(t, url), o); err != nil {
				t.Fatal(err)
			}
			check("first sync")
			// The mode alone changes: attrs, no copy.
			if err := os.Chmod(filepath.Join(src, "a.txt"), 0o640); err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), loc(t, src), loc(t, url), o)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Receipts) != 1 || res.Receipts[0].Op != OpAttrs || res.Receipts[0].Path != "a.txt" || res.BytesSent != 0 {
				t.Errorf("mode change: receipts %+v, %d bytes sent; want one attrs for a.txt, nothing sent", res.Receipts, res.BytesSent)
			}
			check("mode-only sync")
			res, err = Run(context.Background(), loc(t, src), loc(t, url), o)
			if err != nil || len(res.Receipts) != 0 {
				t.Errorf("no-change sync: receipts %+v, err %v; want none", res.Receipts, err)
			}
			// Copy mode sets directory times as well.
			cp := filepath.Join(dstDir, "copy")
			o.Mode = config.ModeCopy
			curl := cp
			if side == "sftp" {
				curl = e.url(cp)
			}
			if _, err := Run(context.Background(), loc(t, src), loc(t, curl), o); err != nil {
				t.Fatal(err)
			}
			di, _ := os.Stat(filepath.Join(cp, "sub/deep"))
			if !di.ModTime().Equal(dirTime) {
				t.Errorf("copy: sub/deep mtime %v, want %v", di.ModTime(), dirTime)
			}
		})
	}
}
