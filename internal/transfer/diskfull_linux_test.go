//go:build linux

package transfer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
)

// smallFS mounts a tmpfs of size bytes at a temporary directory: a real
// file system that really runs out of space. Needs root (CAP_SYS_ADMIN).
func smallFS(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill up needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): no way to fill a file system for real", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func resizeFS(t *testing.T, dir string, size int) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size="+strconv.Itoa(size)); err != nil {
		t.Fatalf("remount: %v", err)
	}
}

func TestDiskFull(t *testing.T) {
	dst := smallFS(t, 1<<20)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "big"), randBytes(12, 3<<20), 0o644, mtime0)
	o := localOpts()
	o.StateDir = t.TempDir()
	_, err := Run(context.Background(), loc(t, filepath.Join(src, "big")), loc(t, filepath.Join(dst, "big")), o)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("err = %v, want ErrNoSpace", err)
	}
	if _, serr := os.Stat(filepath.Join(dst, "big")); serr == nil {
		t.Error("a partial file landed under the final name")
	}
	noTemps(t, dst)
	t.Logf("message: %v", err)
}

// One file that fails (no space) does not lock a bisync profile out: the
// files that landed are in the baseline, and the next run does only the
// failed one.
func TestBisyncBaselineSurvivesAFailedFile(t *testing.T) {
	bDir := smallFS(t, 1<<20)
	aDir := t.TempDir()
	o := localOpts()
	o.Mode, o.Name, o.StateDir, o.Workers = config.ModeBisync, "p", t.TempDir(), 1
	writeFile(t, filepath.Join(aDir, "ok"), []byte("small"), 0o644, mtime0)
	writeFile(t, filepath.Join(aDir, "large"), randBytes(13, 2<<20), 0o644, mtime0)
	if _, err := Run(context.Background(), loc(t, aDir), loc(t, bDir), o); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("first run: %v, want ErrNoSpace for the large file", err)
	}
	checkFile(t, filepath.Join(bDir, "ok"), "small")
	resizeFS(t, bDir, 8<<20)
	res, err := Run(context.Background(), loc(t, aDir), loc(t, bDir), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 1 || res.Receipts[0].Path != "large" {
		t.Errorf("second run: %+v, want just the file that failed", res.Receipts)
	}
}

func TestSFTPDiskFull(t *testing.T) {
	remote := smallFS(t, 1<<20)
	e := startSSH(t, sshtest.Config{Root: remote})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "big"), randBytes(14, 3<<20), 0o644, mtime0)
	o := sftpOpts(e)
	o.StateDir = t.TempDir()
	_, err := Run(context.Background(), loc(t, filepath.Join(src, "big")), loc(t, e.url(remote+"/big")), o)
	if err == nil {
		t.Fatal("upload to a full file system succeeded")
	}
	t.Logf("message: %v", err)
	if !errors.Is(err, ErrNoSpace) {
		t.Errorf("err = %v, want ErrNoSpace", err)
	}
	if _, serr := os.Stat(filepath.Join(remote, "big")); serr == nil {
		t.Error("a partial file landed under the final name")
	}
	noTemps(t, remote)
}

// A read-only destination (root ignores permission bits, so a read-only
// mount stands in for "permission denied"): a clear error naming the file,
// no retry, nothing left behind.
func TestReadOnlyDestination(t *testing.T) {
	dst := smallFS(t, 1<<20)
	if err := syscall.Mount("tmpfs", dst, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("remount read-only: %v", err)
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("data"), 0o644, mtime0)
	o := localOpts()
	o.Retries = 5
	res, err := Run(context.Background(), loc(t, filepath.Join(src, "f")), loc(t, filepath.Join(dst, "f")), o)
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("err = %v, want EROFS", err)
	}
	if res.Receipts[0].Attempts != 1 {
		t.Errorf("%d attempts, want 1 (not retried)", res.Receipts[0].Attempts)
	}
	if !strings.Contains(err.Error(), filepath.Join(dst, "f")) {
		t.Errorf("message %q does not name the file", err)
	}
}
