package transfer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
)

// TestOpenSSHInterop runs upload, sync and download against the system
// sshd (skipped when it is not installed): posix-rename, fsync@openssh.com,
// the real sha256sum over exec.
func TestOpenSSHInterop(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	srv := sshtest.StartOpenSSH(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	e := &sshEnv{srv: srv, user: srv.User, opts: sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), HostKeyPolicy: sshconn.PolicyStrict,
		IdentityFiles: []string{id}, ConfigFile: "none", ConnectTimeout: 10 * time.Second,
		HomeDir: t.TempDir(), Getenv: func(string) string { return "" },
	}}
	src := t.TempDir()
	files := makeTree(t, src)
	remote := t.TempDir() // absolute: the sshd user is the test user
	o := sftpOpts(e)
	o.Mode = config.ModeSync
	res, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote+"/up")), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != len(files) {
		t.Errorf("uploaded %d files, want %d", res.Files, len(files))
	}
	for _, r := range res.Receipts {
		if r.Op == OpCopy && r.Size >= remoteHashMin && r.Verified != VerifiedRemote {
			t.Errorf("%s verified by %q, want the remote sha256sum", r.Path, r.Verified)
		}
	}
	for p, want := range files {
		if got := readFile(t, filepath.Join(remote, "up", p)); !bytes.Equal(got, want) {
			t.Errorf("%s differs on the server", p)
		}
		fi, _ := os.Stat(filepath.Join(remote, "up", p))
		if !fi.ModTime().Equal(mtime0) {
			t.Errorf("%s: mtime %v on the server", p, fi.ModTime())
		}
	}
	noTemps(t, remote)
	// Replacing an existing file (posix-rename over it).
	writeFile(t, filepath.Join(src, "a.txt"), []byte("changed\n"), 0o644, mtime0.Add(time.Hour))
	if res, err = Run(context.Background(), loc(t, src), loc(t, e.url(remote+"/up")), o); err != nil || res.Files != 1 {
		t.Fatalf("second sync: files %d, err %v", res.Files, err)
	}
	if string(readFile(t, filepath.Join(remote, "up/a.txt"))) != "changed\n" {
		t.Error("changed file not replaced on the server")
	}
	// A file of several segments is verified span by span during the
	// upload (dd | openssl or sha256sum on the server): two spans of two
	// segments and the rest.
	o = sftpOpts(e)
	o.segment = 1 << 20
	o.verifySpan = 2 << 20
	o.fastLinkRate = -1 // never fast: range checks however quick loopback is
	res, err = Run(context.Background(), loc(t, filepath.Join(src, "big.bin")), loc(t, e.url(remote+"/seg.bin")), o)
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Receipts[0].Verified; v != VerifiedSegments {
		t.Errorf("multi-segment upload verified by %q, want %q", v, VerifiedSegments)
	}
	if !bytes.Equal(readFile(t, filepath.Join(remote, "seg.bin")), files["big.bin"]) {
		t.Error("segment-verified upload differs")
	}
	// On a fast link (here: any rate counts as fast) the range checks stop
	// after the second segment and one whole-file hash decides; with short
	// spans a check of the first span is already running then.
	for _, span := range []int64{1 << 20, 2 << 20} {
		o.verifySpan = span
		o.fastLinkRate = 1
		res, err = Run(context.Background(), loc(t, filepath.Join(src, "big.bin")), loc(t, e.url(remote+"/fast.bin")), o)
		if err != nil {
			t.Fatal(err)
		}
		if v := res.Receipts[0].Verified; v != VerifiedRemote {
			t.Errorf("span %d: fast upload verified by %q, want %q", span, v, VerifiedRemote)
		}
		if !bytes.Equal(readFile(t, filepath.Join(remote, "fast.bin")), files["big.bin"]) {
			t.Errorf("span %d: fast upload differs", span)
		}
	}
	back := t.TempDir()
	if _, err := Run(context.Background(), loc(t, e.url(remote+"/up")), loc(t, back), sftpOpts(e)); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(back, "big.bin")); !bytes.Equal(got, files["big.bin"]) {
		t.Error("download differs")
	}
	noTemps(t, back)
	// The download of big.bin was checked against its source, hashed by
	// openssl (or sha256sum) on the server while it moved.
	if res, err = Run(context.Background(), loc(t, e.url(remote+"/up/big.bin")), loc(t, filepath.Join(back, "one.bin")), sftpOpts(e)); err != nil {
		t.Fatal(err)
	}
	if v := res.Receipts[0].Verified; v != VerifiedSource {
		t.Errorf("download verified by %q, want %q", v, VerifiedSource)
	}
}
