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
	e := startOpenSSH(t)
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
	// A file of several segments is hashed on the server as it lands (one
	// sh -c 'dd ... | openssl dgst' fed the written segments), one segment
	// behind the transfer.
	o = sftpOpts(e)
	o.segment = 1 << 20
	res, err = Run(context.Background(), loc(t, filepath.Join(src, "big.bin")), loc(t, e.url(remote+"/seg.bin")), o)
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Receipts[0].Verified; v != VerifiedStream {
		t.Errorf("multi-segment upload verified by %q, want %q", v, VerifiedStream)
	}
	if !bytes.Equal(readFile(t, filepath.Join(remote, "seg.bin")), files["big.bin"]) {
		t.Error("stream-verified upload differs")
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

// The streamed hash against a real sshd: segments announced as they are
// written, a tail that is not a whole block, resumed from a prefix; and a
// feed that announces more than the file holds gives a digest that does not
// match (never a false match).
func TestHashFeedOpenSSH(t *testing.T) {
	e := startOpenSSH(t)
	ctx := context.Background()
	s, err := DialSFTP(ctx, sshconn.Target{User: e.user, Host: "127.0.0.1", Port: e.srv.Port}, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	data := randBytes(7, 3*hashBlock+12345)
	want := sum(data)

	p := filepath.Join(dir, "landing")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	feed, err := s.HashStream(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < 3*hashBlock; off += hashBlock {
		if _, err := f.Write(data[off : off+hashBlock]); err != nil {
			t.Fatal(err)
		}
		if err := feed.Add(hashBlock); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Write(data[3*hashBlock:]); err != nil {
		t.Fatal(err)
	}
	got, err := feed.Sum(ctx)
	if err != nil || got != want {
		t.Fatalf("streamed hash = %q, %v; want %s", got, err, want)
	}
	feed.Close()

	// Resumed: the first two blocks are announced at once.
	if feed, err = s.HashStream(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := feed.Add(2 * hashBlock); err != nil {
		t.Fatal(err)
	}
	if got, err = feed.Sum(ctx); err != nil || got != want {
		t.Fatalf("resumed streamed hash = %q, %v; want %s", got, err, want)
	}
	if err := feed.Add(hashBlock); err == nil {
		t.Error("Add after Sum succeeded")
	}
	if err := feed.Add(hashBlock + 1); err == nil {
		t.Error("Add of a part of a block succeeded")
	}

	// A block announced while it is still a hole (written out of order, as
	// concurrent SFTP writes may land) is read as zeros: once the data
	// arrives the file's hash differs from the streamed one, which can only
	// miss, never match a file it did not read.
	holey := filepath.Join(dir, "holey")
	hf, err := os.Create(holey)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	if feed, err = s.HashStream(ctx, holey); err != nil {
		t.Fatal(err)
	}
	if _, err := hf.WriteAt(data[2*hashBlock:3*hashBlock], 2*hashBlock); err != nil {
		t.Fatal(err)
	}
	if _, err := hf.WriteAt(data[:hashBlock], 0); err != nil {
		t.Fatal(err)
	}
	if err := feed.Add(3 * hashBlock); err != nil {
		t.Fatal(err)
	}
	// Sum waits for the remote dd; only then is the hole filled.
	streamed, err := feed.Sum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hf.WriteAt(data[hashBlock:2*hashBlock], hashBlock); err != nil {
		t.Fatal(err)
	}
	if full := sum(data[:3*hashBlock]); streamed == full {
		t.Errorf("a stream that read a hole matched the filled file: %s", streamed)
	}
	if zeros := sum(append(append(append([]byte{}, data[:hashBlock]...), make([]byte, hashBlock)...), data[2*hashBlock:3*hashBlock]...)); streamed != zeros {
		t.Errorf("streamed %s, want the digest of what the file held (%s)", streamed, zeros)
	}
	feed.Close()

	// A file that does not exist: an error, not a digest.
	if feed, err = s.HashStream(ctx, filepath.Join(dir, "missing")); err == nil {
		if got, err := feed.Sum(ctx); err == nil {
			t.Errorf("hash of a missing file = %q, want an error", got)
		}
		feed.Close()
	}
}

// startOpenSSH starts an OpenSSH sshd (skipping the test without one) and
// returns how to reach it: strict host key, the test's key.
func startOpenSSH(t *testing.T) *sshEnv {
	t.Helper()
	id, signer := sshtest.GenerateKey(t)
	srv := sshtest.StartOpenSSH(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	return &sshEnv{srv: srv, user: srv.User, opts: sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), HostKeyPolicy: sshconn.PolicyStrict,
		IdentityFiles: []string{id}, ConfigFile: "none", ConnectTimeout: 10 * time.Second,
		HomeDir: t.TempDir(), Getenv: func(string) string { return "" },
	}}
}
