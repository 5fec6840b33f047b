package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
	"github.com/netops-dev/netops/internal/testutil/cutproxy"
)

func sftpOpts(e *sshEnv) Options {
	return Options{Verify: true, Retries: 3, Backoff: time.Millisecond, Dial: e.dialer(), MaxDelete: -1, Workers: 4}
}

func TestSFTPUploadDownloadTree(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	src := t.TempDir()
	files := makeTree(t, src)
	ctx := context.Background()

	res, err := Run(ctx, loc(t, src), loc(t, e.url(remote+"/up")), sftpOpts(e))
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != len(files) {
		t.Errorf("uploaded %d files, want %d", res.Files, len(files))
	}
	for p, want := range files {
		got := readFile(t, filepath.Join(remote, "up", p))
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs after upload", p)
		}
		fi, _ := os.Stat(filepath.Join(remote, "up", p))
		if !fi.ModTime().Equal(mtime0) {
			t.Errorf("%s: remote mtime %v, want %v", p, fi.ModTime(), mtime0)
		}
	}
	fi, _ := os.Stat(filepath.Join(remote, "up", "sub/b.conf"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode not preserved: %v", fi.Mode().Perm())
	}
	// Large files are hashed on the server, small ones read back.
	for _, r := range res.Receipts {
		want := VerifiedReadBack
		if r.Size >= remoteHashMin {
			want = VerifiedRemote
		}
		if r.Op == OpCopy && r.Verified != want {
			t.Errorf("%s (%d bytes) verified by %q, want %q", r.Path, r.Size, r.Verified, want)
		}
	}
	// One sha256sum (big.bin), after its openssl-or-sha256sum script,
	// which this server (no sh) refuses; the small files' batch first tries
	// its sync+sha256sum script, refused too, and then goes the single-file
	// way.
	sums, sumScripts, scripts := 0, 0, 0
	for _, c := range e.srv.Commands() {
		switch {
		case strings.HasPrefix(c, "sha256sum "):
			sums++
		case strings.HasPrefix(c, "sh -c "+sshconn.Quote(sumScript)+" "):
			sumScripts++
		case strings.HasPrefix(c, "sh -c "):
			scripts++
		default:
			t.Errorf("unexpected command %q", c)
		}
	}
	if sums != 1 || sumScripts != 1 || scripts > 1 {
		t.Errorf("server ran %d sha256sum, %d sum scripts and %d batch scripts, want 1 sha256sum (big.bin) after 1 sum script and at most one batch script: %q", sums, sumScripts, scripts, e.srv.Commands())
	}
	noTemps(t, remote)

	// Download it back, through the ~/ form relative to the login dir.
	back := t.TempDir()
	res, err = Run(ctx, loc(t, e.url("/~/up")), loc(t, back+"/down"), sftpOpts(e))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		if !bytes.Equal(readFile(t, filepath.Join(back, "down", p)), want) {
			t.Errorf("%s differs after download", p)
		}
	}
	if res.Files != len(files) {
		t.Errorf("downloaded %d files", res.Files)
	}
	// Large files: the source is hashed on the server (sha256sum, this
	// server has no sh) while they download; small ones are read back.
	for _, r := range res.Receipts {
		want := VerifiedReadBack
		if r.Size >= remoteHashMin {
			want = VerifiedSource
		}
		if r.Op == OpCopy && r.Verified != want {
			t.Errorf("download %s (%d bytes) verified by %q, want %q", r.Path, r.Size, r.Verified, want)
		}
	}
	noTemps(t, back)
}

// lyingHasher is an SFTP source whose server reports a wrong SHA-256.
type lyingHasher struct{ *SFTP }

func (lyingHasher) SHA256(context.Context, string) (string, error) {
	return strings.Repeat("0", 64), nil
}

// TestSFTPDownloadSourceMismatch: a download whose source hashes (on the
// server) to something else than what landed fails with ErrChecksum, is not
// retried, and leaves nothing under the final name or as a temporary file.
func TestSFTPDownloadSourceMismatch(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	writeFile(t, filepath.Join(remote, "big"), randBytes(17, remoteHashMin+5), 0o644, mtime0)
	o := sftpOpts(e)
	o.Dial = func(ctx context.Context, ep config.Endpoint) (FS, error) {
		f, err := e.dialer()(ctx, ep)
		if s, ok := f.(*SFTP); ok {
			return lyingHasher{s}, err
		}
		return f, err
	}
	dst := t.TempDir()
	res, err := Run(context.Background(), loc(t, e.url(remote+"/big")), loc(t, filepath.Join(dst, "big")), o)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if len(res.Receipts) != 1 || res.Receipts[0].Attempts != 1 || !strings.Contains(res.Receipts[0].Error, "the source hashes to 0000") {
		t.Fatalf("receipts %+v: want one failed attempt naming the source's hash", res.Receipts)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Fatalf("left in the destination: %v", ents)
	}
}

func TestSFTPScpStyleAndSingleFile(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	src := t.TempDir()
	data := randBytes(3, 1<<20)
	writeFile(t, filepath.Join(src, "one.bin"), data, 0o644, mtime0)
	o := sftpOpts(e)
	// user@host:path with the port coming from the options (scp style has no port).
	o.Dial = func(ctx context.Context, ep config.Endpoint) (FS, error) {
		if ep.Kind == config.EndpointSFTP {
			ep.Port = e.srv.Port
		}
		return e.dialer()(ctx, ep)
	}
	if _, err := Run(context.Background(), loc(t, filepath.Join(src, "one.bin")), loc(t, "backup@127.0.0.1:one-copy.bin"), o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, filepath.Join(remote, "one-copy.bin")), data) {
		t.Error("scp-style upload relative to the login dir differs")
	}
}

func TestSFTPNoExecReadsBack(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote, NoExec: true})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), randBytes(4, remoteHashMin+1), 0o644, mtime0)
	res, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote)), sftpOpts(e))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Receipts) != 1 || res.Receipts[0].Verified != VerifiedReadBack {
		t.Fatalf("receipts %+v, want one verified by read-back", res.Receipts)
	}
	// A download cannot have its source hashed either: read back.
	back := t.TempDir()
	res, err = Run(context.Background(), loc(t, e.url(remote+"/f")), loc(t, filepath.Join(back, "f")), sftpOpts(e))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Receipts) != 1 || res.Receipts[0].Verified != VerifiedReadBack {
		t.Fatalf("download receipts %+v, want one verified by read-back", res.Receipts)
	}
}

func TestSFTPPacketSize(t *testing.T) {
	for _, c := range []struct {
		l    *sshconn.SFTPLimits
		want int
	}{
		{nil, SFTPMaxPacket},
		{&sshconn.SFTPLimits{}, SFTPMaxPacket},
		{&sshconn.SFTPLimits{MaxPacket: 262144, MaxRead: 261120, MaxWrite: 261120}, 261120}, // OpenSSH
		{&sshconn.SFTPLimits{MaxPacket: 1 << 20, MaxRead: 1 << 20, MaxWrite: 1 << 20}, SFTPLargePacket},
		{&sshconn.SFTPLimits{MaxPacket: 65536, MaxRead: 1 << 20, MaxWrite: 1 << 20}, 65536 - 1024},
		{&sshconn.SFTPLimits{MaxRead: 100000, MaxWrite: 80000}, 80000},
		{&sshconn.SFTPLimits{MaxPacket: 34000, MaxRead: 16384, MaxWrite: 16384}, 16384}, // below 32 KiB: honoured
		{&sshconn.SFTPLimits{MaxPacket: 1000, MaxRead: 1 << 20, MaxWrite: 1 << 20}, SFTPMaxPacket},
		{&sshconn.SFTPLimits{MaxRead: 100, MaxWrite: 100}, SFTPMaxPacket},
		{&sshconn.SFTPLimits{MaxRead: 1 << 20}, SFTPMaxPacket}, // write limit unknown
	} {
		if got := sftpPacketSize(c.l); got != c.want {
			t.Errorf("sftpPacketSize(%+v) = %d, want %d", c.l, got, c.want)
		}
	}
	if SFTPTune(nil) != nil || SFTPTune(&sshconn.SFTPLimits{MaxRead: 1 << 20}) != nil {
		t.Error("SFTPTune changed the defaults without limits")
	}
	if n := len(SFTPTune(&sshconn.SFTPLimits{MaxPacket: 262144, MaxRead: 261120, MaxWrite: 261120})); n != 2 {
		t.Errorf("SFTPTune for OpenSSH's limits gave %d options, want packet size and requests per file", n)
	}
	// Memory per file stays the same: requests x packet size.
	if SFTPLargeConcurrency*SFTPLargePacket > SFTPConcurrency*SFTPMaxPacket {
		t.Errorf("large packets: %d bytes in flight per file, more than %d", SFTPLargeConcurrency*SFTPLargePacket, SFTPConcurrency*SFTPMaxPacket)
	}
}

func TestSFTPAuthAndHostKeyFailuresAreNotRetried(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote, Password: "right"})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644, time.Time{})

	// Wrong password, no key.
	o := sftpOpts(e)
	o.Retries = 5
	bad := e.opts
	bad.IdentityFiles = nil
	bad.HomeDir = t.TempDir() // no default keys there
	o.Dial = NewDialer(bad, nil, "t")
	before := e.srv.Connections()
	_, err := Run(context.Background(), loc(t, filepath.Join(src, "f")), loc(t, fmt.Sprintf("sftp://backup:wrong@127.0.0.1:%d%s/f", e.srv.Port, remote)), o)
	if !errors.Is(err, sshconn.ErrAuth) {
		t.Fatalf("wrong password: err = %v, want ErrAuth", err)
	}
	if n := e.srv.Connections() - before; n != 1 {
		t.Errorf("wrong password: %d connections, want 1 (never retried)", n)
	}
	// Unknown host key under strict.
	o = sftpOpts(e)
	strict := e.opts
	strict.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	o.Dial = NewDialer(strict, nil, "t")
	_, err = Run(context.Background(), loc(t, filepath.Join(src, "f")), loc(t, e.url(remote+"/f")), o)
	if !errors.Is(err, sshconn.ErrHostKeyUnknown) {
		t.Fatalf("unknown host: err = %v, want ErrHostKeyUnknown", err)
	}
	if _, err := os.Stat(filepath.Join(remote, "f")); err == nil {
		t.Error("file landed despite the failure")
	}
}

// TestSFTPUploadResumesAfterCut cuts the connection in the middle of a
// 32 MiB upload: the retry continues from what reached the server, and the
// landed file has the right hash.
func TestSFTPUploadResumesAfterCut(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	p := cutproxy.Start(t, e.srv.Addr)
	e.opts.Fingerprint = e.srv.Fingerprint() // the proxy's port is not in known_hosts
	src := t.TempDir()
	size := 32 << 20
	data := randBytes(5, size)
	writeFile(t, filepath.Join(src, "big"), data, 0o644, mtime0)
	p.CutUpstreamAfter(int64(size / 2))
	o := sftpOpts(e)
	res, err := Run(context.Background(), loc(t, filepath.Join(src, "big")), loc(t, e.urlVia(p.Port(), remote+"/big")), o)
	if err != nil {
		t.Fatal(err)
	}
	if p.Cuts() != 1 {
		t.Fatalf("proxy cut %d connections, want 1", p.Cuts())
	}
	if got := readFile(t, filepath.Join(remote, "big")); sum(got) != sum(data) {
		t.Fatal("landed file has the wrong hash")
	}
	r := res.Receipts[0]
	t.Logf("receipt: %+v", r)
	if r.Attempts != 2 || r.ResumedFrom <= 0 {
		t.Fatalf("receipt %+v: want 2 attempts and a resume offset", r)
	}
	// Writes in flight when the connection died (at most one pipeline
	// window) are sent again; everything before is kept.
	window := int64(SFTPConcurrency * SFTPMaxPacket)
	if r.ResumedFrom < int64(size/2)-2*window {
		t.Errorf("resumed from %d after a cut at %d: lost more than the in-flight window (%d)", r.ResumedFrom, size/2, window)
	}
	if extra := r.BytesSent - int64(size); extra > 4*window {
		t.Errorf("read %d bytes for a %d-byte file: %d more than once through", r.BytesSent, size, extra)
	}
	noTemps(t, remote)
}

// TestSFTPDownloadResumesAfterCut cuts a download half way.
func TestSFTPDownloadResumesAfterCut(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	p := cutproxy.Start(t, e.srv.Addr)
	e.opts.Fingerprint = e.srv.Fingerprint() // the proxy's port is not in known_hosts
	size := 12 << 20
	data := randBytes(6, size)
	writeFile(t, filepath.Join(remote, "big"), data, 0o644, mtime0)
	p.CutAfter(int64(size / 2))
	dst := t.TempDir()
	res, err := Run(context.Background(), loc(t, e.urlVia(p.Port(), remote+"/big")), loc(t, dst), sftpOpts(e))
	if err != nil {
		t.Fatal(err)
	}
	if p.Cuts() != 1 {
		t.Fatalf("proxy cut %d connections, want 1", p.Cuts())
	}
	if got := readFile(t, filepath.Join(dst, "big")); sum(got) != sum(data) {
		t.Fatal("landed file has the wrong hash")
	}
	r := res.Receipts[0]
	t.Logf("receipt: %+v", r)
	if r.Attempts != 2 || r.ResumedFrom <= 0 {
		t.Fatalf("receipt %+v: want 2 attempts and a resume offset", r)
	}
	if r.BytesSent > int64(size)*110/100 {
		t.Errorf("moved %d bytes for a %d-byte file", r.BytesSent, size)
	}
	noTemps(t, dst)
}

// TestSFTPResumeAcrossRuns: a run whose retries are exhausted keeps the
// temporary file and its journal; the next run continues from it.
func TestSFTPResumeAcrossRuns(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	p := cutproxy.Start(t, e.srv.Addr)
	e.opts.Fingerprint = e.srv.Fingerprint() // the proxy's port is not in known_hosts
	src := t.TempDir()
	size := 40 << 20
	data := randBytes(7, size)
	writeFile(t, filepath.Join(src, "big"), data, 0o644, mtime0)
	state := t.TempDir()
	o := sftpOpts(e)
	o.Retries = 0
	o.StateDir = state
	p.CutUpstreamAfter(int64(size * 6 / 10))
	to := loc(t, e.urlVia(p.Port(), remote+"/big"))
	_, err := Run(context.Background(), loc(t, filepath.Join(src, "big")), to, o)
	if err == nil {
		t.Fatal("the cut run succeeded")
	}
	if _, err := os.Stat(filepath.Join(remote, "big")); err == nil {
		t.Fatal("a partial file landed under the final name")
	}
	if tmp := tempsIn(remote); len(tmp) != 1 {
		t.Fatalf("temporary files after the cut: %v, want one kept for resume", tmp)
	}
	ents, _ := os.ReadDir(filepath.Join(state, "transfer", "journal"))
	if len(ents) != 1 {
		t.Fatalf("journal has %d entries, want 1", len(ents))
	}
	if fi, _ := ents[0].Info(); fi.Mode().Perm() != 0o600 {
		t.Errorf("journal entry mode %v, want 0600", fi.Mode().Perm())
	}
	res, err := Run(context.Background(), loc(t, filepath.Join(src, "big")), to, o)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Receipts[0]
	t.Logf("receipt: %+v", r)
	// The failed run journaled what reached the server (up to the writes in
	// flight when the connection died).
	if cut, window := int64(size*6/10), int64(SFTPConcurrency*SFTPMaxPacket); r.ResumedFrom < cut-2*window {
		t.Errorf("second run resumed from %d after a cut at %d", r.ResumedFrom, cut)
	}
	if r.BytesSent+r.ResumedFrom != int64(size) {
		t.Errorf("resumed from %d and sent %d: does not add up to %d", r.ResumedFrom, r.BytesSent, size)
	}
	if got := readFile(t, filepath.Join(remote, "big")); sum(got) != sum(data) {
		t.Fatal("landed file has the wrong hash")
	}
	noTemps(t, remote)
	if ents, _ := os.ReadDir(filepath.Join(state, "transfer", "journal")); len(ents) != 0 {
		t.Errorf("journal entry left after success")
	}
}

func TestSFTPDestinationDirectoryMissing(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644, time.Time{})
	_, err := Run(context.Background(), loc(t, filepath.Join(src, "f")), loc(t, e.url(remote+"/nope/f")), sftpOpts(e))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestSFTPSyncSecondRunCopiesNothing(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	src := t.TempDir()
	makeTree(t, src)
	o := sftpOpts(e)
	o.Mode = config.ModeSync
	o.Delete = true
	if _, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote+"/m")), o); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "a.txt"))
	res, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote+"/m")), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 0 || res.Deleted != 1 {
		t.Errorf("second sync: files %d deleted %d, want 0 and 1", res.Files, res.Deleted)
	}
	if _, err := os.Stat(filepath.Join(remote, "m/a.txt")); err == nil {
		t.Error("extraneous remote file not deleted")
	}
}

// TestSFTPUploadCheckpoints: while an upload runs, the journal's offset
// never claims more than the server holds, and what it claims is the
// source's prefix (so a killed run resumes on good data).
func TestSFTPUploadCheckpoints(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	src := t.TempDir()
	size := 16 << 20
	data := randBytes(16, size)
	writeFile(t, filepath.Join(src, "big"), data, 0o644, mtime0)
	o := sftpOpts(e)
	o.StateDir = t.TempDir()
	o.segment = 1 << 20
	jdir := filepath.Join(o.StateDir, "transfer", "journal")
	checked := 0
	o.Progress = func(ev Event) {
		if ev.Kind != EventFileProgress || ev.Done < int64(size/2) || checked > 0 {
			return
		}
		all, _ := os.ReadDir(jdir)
		var ents []os.DirEntry
		for _, de := range all {
			if !strings.HasPrefix(de.Name(), ".") { // not a checkpoint being written
				ents = append(ents, de)
			}
		}
		if len(ents) != 1 {
			t.Errorf("journal has %d entries mid-upload, want 1", len(ents))
			checked++
			return
		}
		j := &journal{dir: jdir}
		je, ok := j.load(strings.TrimSuffix(ents[0].Name(), ".json"))
		if !ok || je.Offset <= 0 || je.Offset%o.segment != 0 {
			t.Errorf("journal entry %+v: want an offset at a checkpoint", je)
		}
		got, err := os.ReadFile(je.Temp)
		if err != nil || int64(len(got)) < je.Offset || !bytes.Equal(got[:je.Offset], data[:je.Offset]) {
			t.Errorf("the server's temporary file does not hold the journaled prefix (%d bytes, err %v)", len(got), err)
		}
		checked++
	}
	res, err := Run(context.Background(), loc(t, filepath.Join(src, "big")), loc(t, e.url(remote+"/big")), o)
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no progress event past half way")
	}
	if sum(readFile(t, filepath.Join(remote, "big"))) != sum(data) {
		t.Fatal("wrong hash")
	}
	// The test server has no sh: the streamed hash is refused and the
	// whole-file sha256sum decides.
	if v := res.Receipts[0].Verified; v != VerifiedRemote {
		t.Errorf("verified by %q, want %q", v, VerifiedRemote)
	}
}

// TestSFTPToSFTP copies between two servers (data passes through netops).
func TestSFTPToSFTP(t *testing.T) {
	r1, r2 := t.TempDir(), t.TempDir()
	e1 := startSSH(t, sshtest.Config{Root: r1})
	e2 := startSSH(t, sshtest.Config{Root: r2})
	files := makeTree(t, filepath.Join(r1, "tree"))
	// One dialer for both: each server's key and known_hosts.
	kh := filepath.Join(t.TempDir(), "known_hosts")
	a, _ := os.ReadFile(e1.opts.KnownHostsFile)
	b, _ := os.ReadFile(e2.opts.KnownHostsFile)
	if err := os.WriteFile(kh, append(a, b...), 0o600); err != nil {
		t.Fatal(err)
	}
	so := e1.opts
	so.KnownHostsFile = kh
	so.IdentityFiles = append(so.IdentityFiles, e2.opts.IdentityFiles...)
	o := sftpOpts(e1)
	o.Dial = NewDialer(so, nil, "t")
	res, err := Run(context.Background(), loc(t, e1.url(r1+"/tree")), loc(t, e2.url(r2+"/copy")), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != len(files) {
		t.Errorf("copied %d files, want %d", res.Files, len(files))
	}
	for p, want := range files {
		if !bytes.Equal(readFile(t, filepath.Join(r2, "copy", p)), want) {
			t.Errorf("%s differs", p)
		}
	}
}

// TestSFTPDownloadResumesAfterKill: a killed run cannot clean up or save
// its offset; the journal entry written when the file started (offset 0)
// and the local temporary file (written in order) are enough to resume.
func TestSFTPDownloadResumesAfterKill(t *testing.T) {
	remote := t.TempDir()
	e := startSSH(t, sshtest.Config{Root: remote})
	size := journalMin + 4<<20
	data := randBytes(19, size)
	writeFile(t, filepath.Join(remote, "big"), data, 0o644, mtime0)
	dst := t.TempDir()
	o := sftpOpts(e)
	o.StateDir = t.TempDir()
	o.BWLimit = 32 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var journalAtStart []byte
	jdir := filepath.Join(o.StateDir, "transfer", "journal")
	o.Progress = func(ev Event) {
		if ev.Kind == EventFileStart {
			ents, _ := os.ReadDir(jdir)
			if len(ents) == 1 {
				journalAtStart, _ = os.ReadFile(filepath.Join(jdir, ents[0].Name()))
			}
		}
		if ev.Kind == EventFileProgress && ev.Done >= int64(size/2) {
			cancel()
		}
	}
	if _, err := Run(ctx, loc(t, e.url(remote+"/big")), loc(t, dst), o); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if journalAtStart == nil {
		t.Fatal("no journal entry when the file started")
	}
	// Put back the entry a killed run would have left: the one from the start.
	ents, _ := os.ReadDir(jdir)
	if len(ents) != 1 {
		t.Fatalf("journal entries: %d", len(ents))
	}
	if err := os.WriteFile(filepath.Join(jdir, ents[0].Name()), journalAtStart, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := tempsIn(dst)
	if len(tmp) != 1 {
		t.Fatalf("temporary files %v", tmp)
	}
	fi, _ := os.Stat(tmp[0])
	o.Progress, o.BWLimit = nil, 0
	res, err := Run(context.Background(), loc(t, e.url(remote+"/big")), loc(t, dst), o)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Receipts[0]; r.ResumedFrom != fi.Size() || r.ResumedFrom < int64(size/2) {
		t.Errorf("resumed from %d, want the temporary file's %d bytes", r.ResumedFrom, fi.Size())
	}
	if sum(readFile(t, filepath.Join(dst, "big"))) != sum(data) {
		t.Fatal("wrong hash")
	}
	noTemps(t, dst)
}

// wrapSFTP makes o's dialer hand out every SFTP connection wrapped by wrap
// (a test FS that changes one behaviour).
func wrapSFTP(o *Options, wrap func(*SFTP) FS) {
	dial := o.Dial
	o.Dial = func(ctx context.Context, ep config.Endpoint) (FS, error) {
		f, err := dial(ctx, ep)
		if s, ok := f.(*SFTP); ok {
			return wrap(s), err
		}
		return f, err
	}
}

// wrongStreamFS is an SFTP destination whose streamed hash always reports a
// wrong digest (as a server whose openssl failed half way would).
type wrongStreamFS struct{ *SFTP }

func (wrongStreamFS) HashStream(context.Context, string) (HashFeed, error) {
	return wrongFeed{}, nil
}

type wrongFeed struct{}

func (wrongFeed) Add(int64) error                     { return nil }
func (wrongFeed) Sum(context.Context) (string, error) { return strings.Repeat("0", 64), nil }
func (wrongFeed) Close()                              {}

// A streamed hash that does not match is only a missed shortcut: the
// landed file is hashed as a whole, and that decides (here: it is right).
func TestStreamHashMismatchFallsBack(t *testing.T) {
	e := startSSH(t, sshtest.Config{})
	src, remote := t.TempDir(), t.TempDir()
	data := randBytes(9, 3<<20+5)
	writeFile(t, filepath.Join(src, "big"), data, 0o644, mtime0)
	o := sftpOpts(e)
	o.segment = 1 << 20
	wrapSFTP(&o, func(s *SFTP) FS { return wrongStreamFS{s} })
	res, err := Run(context.Background(), loc(t, filepath.Join(src, "big")), loc(t, e.url(remote+"/big")), o)
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Receipts[0].Verified; v == VerifiedStream || v == VerifiedNone {
		t.Errorf("verified by %q after a wrong streamed hash, want the whole-file check", v)
	}
	if sum(readFile(t, filepath.Join(remote, "big"))) != sum(data) {
		t.Fatal("wrong data landed")
	}
}

// An SFTP-to-SFTP copy cut half way resumes from what the destination
// holds: the source's prefix is read again to rebuild the hash, not sent
// again, and the landed file is right.
func TestSFTPToSFTPResumesAfterCut(t *testing.T) {
	r1, r2 := t.TempDir(), t.TempDir()
	e1 := startSSH(t, sshtest.Config{Root: r1})
	e2 := startSSH(t, sshtest.Config{Root: r2})
	p := cutproxy.Start(t, e2.srv.Addr)
	size := 32 << 20
	data := randBytes(23, size)
	writeFile(t, filepath.Join(r1, "big"), data, 0o644, mtime0)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	a, _ := os.ReadFile(e1.opts.KnownHostsFile)
	if err := os.WriteFile(kh, a, 0o600); err != nil {
		t.Fatal(err)
	}
	// The destination is reached through the proxy: pin its key.
	so := e1.opts
	so.KnownHostsFile = kh
	so.IdentityFiles = append(so.IdentityFiles, e2.opts.IdentityFiles...)
	so.Fingerprints = map[string]string{fmt.Sprintf("127.0.0.1:%d", p.Port()): e2.srv.Fingerprint()}
	p.CutUpstreamAfter(int64(size / 2))
	o := sftpOpts(e1)
	o.Dial = NewDialer(so, nil, "t")
	res, err := Run(context.Background(), loc(t, e1.url(r1+"/big")), loc(t, e2.urlVia(p.Port(), r2+"/big")), o)
	if err != nil {
		t.Fatal(err)
	}
	if p.Cuts() != 1 {
		t.Fatalf("proxy cut %d connections, want 1", p.Cuts())
	}
	if got := readFile(t, filepath.Join(r2, "big")); sum(got) != sum(data) {
		t.Fatal("landed file has the wrong hash")
	}
	r := res.Receipts[0]
	if r.Attempts != 2 || r.ResumedFrom <= 0 {
		t.Fatalf("receipt %+v: want 2 attempts and a resume offset", r)
	}
	if r.BytesSent >= int64(size)+r.ResumedFrom {
		t.Errorf("sent %d bytes for a %d-byte file resumed from %d: the prefix went again", r.BytesSent, size, r.ResumedFrom)
	}
	noTemps(t, r2)
}

// noChmodFS is an SFTP destination where this user may not change the
// attributes of existing files (another owner's, in a directory it may
// write): only its own temporary files.
type noChmodFS struct{ *SFTP }

func (f noChmodFS) SetAttrs(ctx context.Context, p string, perm fs.FileMode, mtime time.Time) error {
	if !IsTemp(path.Base(p)) {
		return &fs.PathError{Op: "chmod", Path: p, Err: fs.ErrPermission}
	}
	return f.SFTP.SetAttrs(ctx, p, perm, mtime)
}

// A file whose mode alone changed, on a destination that refuses to
// change it in place, is copied instead, and a directory there is left as
// it is: the run succeeds and the file's mode follows.
func TestSyncModeChangeNotPermittedCopies(t *testing.T) {
	e := startSSH(t, sshtest.Config{})
	src, remote := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("data\n"), 0o644, mtime0)
	writeFile(t, filepath.Join(src, "d/g"), []byte("more\n"), 0o644, mtime0)
	o := sftpOpts(e)
	o.Mode = config.ModeSync
	if _, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote)), o); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "f"), 0o600); err != nil {
		t.Fatal(err)
	}
	// And a directory whose mtime changed: left as it is, noted.
	if err := os.Chtimes(filepath.Join(src, "d"), mtime0, mtime0); err != nil {
		t.Fatal(err)
	}
	wrapSFTP(&o, func(s *SFTP) FS { return noChmodFS{s} })
	res, err := Run(context.Background(), loc(t, src), loc(t, e.url(remote)), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Receipts) != 2 || res.Receipts[0].Path != "d" || res.Receipts[0].Op != OpAttrs ||
		!strings.Contains(res.Receipts[0].Reason, "left as it is") || res.Receipts[0].Error != "" ||
		res.Receipts[1].Path != "f" || res.Receipts[1].Op != OpCopy || !strings.Contains(res.Receipts[1].Reason, "not permitted") {
		t.Fatalf("receipts %+v: want d's attributes left as they are, and a copy of f", res.Receipts)
	}
	fi, err := os.Stat(filepath.Join(remote, "f"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("landed mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}
