package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
	"github.com/netops-dev/netops/internal/testutil/cutproxy"
)

// smallTree writes n small files in a few directories and returns them.
func smallTree(t *testing.T, root string, n int) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("d%d/f%03d", i%3, i)
		files[p] = randBytes(uint64(100+i), 1000+i)
		writeFile(t, filepath.Join(root, p), files[p], 0o644, mtime0)
	}
	return files
}

// corruptFirst returns a beforeBatchVerify hook that overwrites the first
// temporary file of every batch (same size, other bytes) and reports which
// final names it spoiled.
func corruptFirst(t *testing.T, remote string) (func([]string), func() []string) {
	var mu sync.Mutex
	var spoiled []string
	hook := func(temps []string) {
		p := temps[0]
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("batch temporary file %s: %v", p, err)
			return
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, int(fi.Size())), 0o600); err != nil {
			t.Error(err)
			return
		}
		base := filepath.Base(p)
		final := filepath.Join(filepath.Dir(p), strings.TrimPrefix(base[:strings.Index(base, tempMarker)], "."))
		rel, _ := filepath.Rel(remote, final)
		mu.Lock()
		spoiled = append(spoiled, filepath.ToSlash(rel))
		mu.Unlock()
	}
	return hook, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), spoiled...)
	}
}

// checkBatchRun checks a run in which the files in spoiled were corrupted
// after their upload: every failure is one of them, with a SHA-256
// mismatch, and absent under its final name; every other file (including
// spoiled ones the batch path handed to the single-file path, which
// uploads them again) landed intact; no temporary file is left. It returns
// the files that failed.
func checkBatchRun(t *testing.T, res *Result, err error, files map[string][]byte, dst string, spoiled []string) map[string]bool {
	t.Helper()
	sp := map[string]bool{}
	for _, p := range spoiled {
		sp[strings.TrimPrefix(p, "up/")] = true
	}
	bad := map[string]bool{}
	for _, r := range res.Receipts {
		if r.Op != OpCopy || r.Error == "" {
			continue
		}
		bad[r.Path] = true
		if !sp[r.Path] || !strings.Contains(r.Error, "SHA-256 mismatch") {
			t.Errorf("%s failed: %s (corrupted: %v)", r.Path, r.Error, sp[r.Path])
		}
	}
	var fe *FilesError
	if len(bad) == 0 {
		if err != nil {
			t.Fatal(err)
		}
	} else if !errors.As(err, &fe) || fe.Failed != len(bad) || !errors.Is(err, ErrChecksum) {
		t.Fatalf("run error %v, want %d SHA-256 mismatch(es)", err, len(bad))
	}
	if res.Files != len(files)-len(bad) {
		t.Errorf("landed %d files, want %d", res.Files, len(files)-len(bad))
	}
	for p, want := range files {
		got, rerr := os.ReadFile(filepath.Join(dst, p))
		if bad[p] {
			if rerr == nil {
				t.Errorf("%s: corrupted copy landed under its final name", p)
			}
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs on the server (%v)", p, rerr)
		}
		if fi, err := os.Stat(filepath.Join(dst, p)); err == nil && !fi.ModTime().Equal(mtime0) {
			t.Errorf("%s: mtime %v", p, fi.ModTime())
		}
	}
	noTemps(t, dst)
	return bad
}

// TestBatchOpenSSH: against the system sshd, small files go up in batches,
// each made durable and verified by one remote command (sync -f +
// sha256sum); a file corrupted after its upload fails alone and never
// lands; modes survive.
func TestBatchOpenSSH(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	srv := sshtest.StartOpenSSH(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	e := &sshEnv{srv: srv, user: srv.User, opts: sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), HostKeyPolicy: sshconn.PolicyStrict,
		IdentityFiles: []string{id}, ConfigFile: "none", ConnectTimeout: 10 * time.Second,
		HomeDir: t.TempDir(), Getenv: func(string) string { return "" },
	}}
	src, remote := t.TempDir(), t.TempDir()
	files := smallTree(t, src, 600)
	// Names sha256sum escapes, a shell would split, or sync would take
	// for an option.
	for i, p := range []string{"d0/-dash", "d1/new\nline", "d2/back\\slash 'quote' $x", "d3/*"} {
		files[p] = randBytes(uint64(7000+i), 300+i)
		writeFile(t, filepath.Join(src, p), files[p], 0o644, mtime0)
	}
	modes := map[string]os.FileMode{"d0/f000": 0o600, "d1/f001": 0o755, "d2/f002": 0o444, "d0/f003": 0o666}
	for p, m := range modes {
		if err := os.Chmod(filepath.Join(src, p), m); err != nil {
			t.Fatal(err)
		}
	}
	hook, spoiled := corruptFirst(t, remote)
	o := sftpOpts(e)
	o.beforeBatchVerify = hook
	res, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote+"/up")), o)
	batches := len(spoiled())
	if batches < 2 {
		t.Fatalf("%d batches verified, want several", batches)
	}
	// Every batch was checked by the server: each corrupted file failed.
	if bad := checkBatchRun(t, res, err, files, filepath.Join(remote, "up"), spoiled()); len(bad) != batches {
		t.Errorf("%d files failed, want the %d corrupted ones", len(bad), batches)
	}
	for _, r := range res.Receipts {
		if r.Op == OpCopy && r.Error == "" && r.Verified != VerifiedRemote {
			t.Errorf("%s verified by %q, want %q", r.Path, r.Verified, VerifiedRemote)
		}
	}
	if n := srv.Execs(); n != int64(batches) {
		t.Errorf("the server ran %d commands, want one per batch (%d)", n, batches)
	}
	for p, m := range modes {
		fi, err := os.Stat(filepath.Join(remote, "up", p))
		if err != nil {
			continue // corrupted, checked above
		}
		if fi.Mode().Perm() != m {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, m)
		}
	}
}

// TestBatchNoScript: a server that runs sha256sum but has no sh (the
// in-process one): the first batch's command finds out; from then on files
// are fsynced one by one (those uploaded before go the single-file way)
// and each batch is verified by one sha256sum.
func TestBatchNoScript(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	src := t.TempDir()
	files := smallTree(t, src, 600)
	hook, spoiled := corruptFirst(t, remote)
	o := sftpOpts(e)
	o.beforeBatchVerify = hook
	res, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote+"/up")), o)
	bad := checkBatchRun(t, res, err, files, filepath.Join(remote, "up"), spoiled())
	scripts, sums := 0, 0
	for _, c := range e.srv.Commands() {
		switch {
		case strings.HasPrefix(c, "sh -c "):
			scripts++
		case strings.HasPrefix(c, "sha256sum -- "):
			sums++
		}
	}
	if scripts != 1 || sums == 0 || len(bad) != sums {
		t.Errorf("server ran %d scripts and %d sha256sum, %d files failed; want one script, and one mismatch per sha256sum: %q",
			scripts, sums, len(bad), e.srv.Commands())
	}
	remoteSums := 0
	for _, r := range res.Receipts {
		if r.Verified == VerifiedRemote {
			remoteSums++
		}
	}
	if remoteSums == 0 {
		t.Error("no file verified by a batch sha256sum")
	}
}

// TestBatchNoExec: an SFTP-only account: batches fall back to reading each
// file back, and a corrupted file still fails alone.
func TestBatchNoExec(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote, NoExec: true})
	src := t.TempDir()
	files := smallTree(t, src, 600)
	hook, spoiled := corruptFirst(t, remote)
	o := sftpOpts(e)
	o.beforeBatchVerify = hook
	res, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote+"/up")), o)
	if bad := checkBatchRun(t, res, err, files, filepath.Join(remote, "up"), spoiled()); len(bad) == 0 {
		t.Error("no corrupted file was caught by reading back")
	}
	for _, r := range res.Receipts {
		if r.Op == OpCopy && r.Error == "" && r.Verified != VerifiedReadBack {
			t.Errorf("%s verified by %q, want %q", r.Path, r.Verified, VerifiedReadBack)
		}
	}
	if n := e.srv.Execs(); n != 0 {
		t.Errorf("%d commands ran on a server without exec", n)
	}
}

func TestTempMode(t *testing.T) {
	for in, want := range map[os.FileMode]os.FileMode{0: 0o644, 0o644: 0o644, 0o600: 0o600, 0o755: 0o755,
		0o664: 0o600, 0o666: 0o600, 0o444: 0o600, 0o400: 0o600, 0o700: 0o700} {
		if got := tempMode(in); got != want {
			t.Errorf("tempMode(%o) = %o, want %o", in, got, want)
		}
	}
}

// TestBatchConnectionCut: the connection dies in the middle of the batches;
// the files not yet landed go the single-file way over a new connection
// (with its retries), every file lands intact and no temporary file stays.
func TestBatchConnectionCut(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	p := cutproxy.Start(t, e.srv.Addr)
	e.opts.Fingerprint = e.srv.Fingerprint() // the proxy's port is not in known_hosts
	src := t.TempDir()
	files := smallTree(t, src, 600)
	p.CutUpstreamAfter(400 << 10)
	res, err := Run(context.Background(), loc(t, src), loc(t, e.urlVia(p.Port(), remote+"/up")), sftpOpts(e))
	if p.Cuts() != 1 {
		t.Fatalf("proxy cut %d connections, want 1", p.Cuts())
	}
	checkBatchRun(t, res, err, files, filepath.Join(remote, "up"), nil)
	how := map[string]int{}
	for _, r := range res.Receipts {
		how[r.Verified]++
	}
	t.Logf("verified by: %v", how)
}
