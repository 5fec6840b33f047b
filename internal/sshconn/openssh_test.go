package sshconn_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
	"github.com/netops-dev/netops/internal/testutil/cutproxy"
)

// TestOpenSSHInterop runs against the real Debian sshd: key auth, SFTP
// write/read round trip, remote sha256sum (coreutils), exit codes, wrong
// key, unknown host.
func TestOpenSSHInterop(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	srv := sshtest.StartOpenSSH(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), ConfigFile: "none", HomeDir: t.TempDir(),
		IdentityFiles: []string{id}, Getenv: env(nil),
	}
	c := dial(t, srv.Target(""), o)
	if srv.Connections() != 1 {
		t.Fatalf("sshd logged %d connections, want 1", srv.Connections())
	}

	sc, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	dir := t.TempDir()
	name := filepath.Join(dir, "up load's $x.bin")
	data := make([]byte, 5<<20+3)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.ReadFrom(bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatalf("upload: %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := sc.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	if _, err := r.WriteTo(&back); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !bytes.Equal(back.Bytes(), data) {
		t.Fatal("SFTP read back differs from what was written")
	}

	execsBefore := srv.Execs()
	out, err := c.Run(context.Background(), []string{"sha256sum", "--", name})
	if err != nil {
		t.Fatalf("remote sha256sum: %v", err)
	}
	if want := sha256File(t, name) + "  " + name + "\n"; string(out) != want {
		t.Fatalf("remote sha256sum = %q, want %q", out, want)
	}
	if srv.Execs() != execsBefore+1 {
		t.Fatalf("sshd log shows %d exec sessions, want %d", srv.Execs(), execsBefore+1)
	}

	_, err = c.Run(context.Background(), []string{"sha256sum", "--", filepath.Join(dir, "missing")})
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) || ee.Status != 1 || !strings.Contains(string(ee.Stderr), "No such file or directory") {
		t.Fatalf("missing file: %v", err)
	}
	_, err = c.Run(context.Background(), []string{"netops-no-such-command-" + "x"})
	if !sshconn.ExecUnavailable(err) {
		t.Fatalf("unknown command: %v", err)
	}

	// Cancelling the context stops a running command.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	// (A command that notices its output is gone, so it ends with the
	// session: sshd refuses signal requests here.)
	ticker := []string{"sh", "-c", "while :; do echo tick; sleep 0.1; done"}
	if _, err := c.Run(ctx, ticker); !errors.Is(err, context.Canceled) || sshconn.Retryable(err) {
		t.Fatalf("cancelled Run = %v", err)
	}
	// The connection is still usable afterwards.
	if _, err := c.Run(context.Background(), []string{"true"}); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}

	// Wrong key and unknown host key.
	other, _ := sshtest.GenerateKey(t)
	bad := o
	bad.IdentityFiles = []string{other}
	if _, err := sshconn.Dial(context.Background(), srv.Target(""), bad); !errors.Is(err, sshconn.ErrAuth) {
		t.Fatalf("wrong key: %v", err)
	}
	bad = o
	bad.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	if _, err := sshconn.Dial(context.Background(), srv.Target(""), bad); !errors.Is(err, sshconn.ErrHostKeyUnknown) {
		t.Fatalf("unknown host: %v", err)
	}
	// accept-new against OpenSSH, then strict.
	bad.HostKeyPolicy = sshconn.PolicyAcceptNew
	dial(t, srv.Target(""), bad).Close()
	bad.HostKeyPolicy = sshconn.PolicyStrict
	dial(t, srv.Target(""), bad).Close()
}

// TestOpenSSHQuoting sends hostile arguments to a real remote shell: the
// command must receive them unchanged.
func TestOpenSSHQuoting(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	srv := sshtest.StartOpenSSH(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	c := dial(t, srv.Target(""), sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), ConfigFile: "none", HomeDir: t.TempDir(),
		IdentityFiles: []string{id},
	})
	args := append([]string{"printf", `%s\0`}, quoteCases...)
	out, err := c.Run(context.Background(), args)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if fmt.Sprint(got) != fmt.Sprint(quoteCases) || len(got) != len(quoteCases) {
		t.Fatalf("remote shell saw %q\nwant             %q", got, quoteCases)
	}
}

// TestProxyJumpThroughOpenSSH uses sshd as the jump host to reach the
// in-process server.
func TestProxyJumpThroughOpenSSH(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	keys := []ssh.PublicKey{signer.PublicKey()}
	jump := sshtest.StartOpenSSH(t, sshtest.Config{AuthorizedKeys: keys})
	target := sshtest.Start(t, sshtest.Config{AuthorizedKeys: keys})
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, jump, target), ConfigFile: "none", HomeDir: t.TempDir(),
		IdentityFiles: []string{id},
		ProxyJump:     fmt.Sprintf("%s@127.0.0.1:%d", jump.User, jump.Port),
	}
	c := dial(t, target.Target("x"), o)
	sc, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	name := filepath.Join(t.TempDir(), "via-jump")
	f, err := sc.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, "through the bastion"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, err := os.ReadFile(name); err != nil || string(b) != "through the bastion" {
		t.Fatalf("file = %q, %v", b, err)
	}
	if target.Connections() != 1 || jump.Connections() != 1 {
		t.Fatalf("target %d jump %d connections", target.Connections(), jump.Connections())
	}
}

// BenchmarkOpenSSHSFTP measures the tuned SFTP client (Client.SFTP) against
// the real sshd on loopback: upload with File.ReadFrom from a local file,
// download with File.WriteTo into a local file.
func BenchmarkOpenSSHSFTP(b *testing.B) {
	id, signer := sshtest.GenerateKey(b)
	srv := sshtest.StartOpenSSH(b, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	c, err := sshconn.Dial(context.Background(), srv.Target(""), sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(b, srv), ConfigFile: "none", HomeDir: b.TempDir(),
		IdentityFiles: []string{id},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc, err := c.SFTP()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	const size = 64 << 20
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		b.Fatal(err)
	}
	remote := filepath.Join(dir, "remote")
	b.Run("upload", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			out, err := sc.Create(remote)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := out.ReadFrom(in); err != nil {
				b.Fatal(err)
			}
			out.Close()
			in.Close()
		}
	})
	b.Run("download", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			in, err := sc.Open(remote)
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.Create(filepath.Join(dir, "down"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := in.WriteTo(out); err != nil {
				b.Fatal(err)
			}
			out.Close()
			in.Close()
		}
	})
}

// TestOpenSSHKeepAlive: sshd answers keepalive@openssh.com (with a failure
// reply, which still proves it is alive); when the path stalls, the client
// declares the peer dead.
func TestOpenSSHKeepAlive(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	srv := sshtest.StartOpenSSH(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	p := cutproxy.Start(t, srv.Addr)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{p.Addr}, srv.HostKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dial(t, sshconn.Target{User: srv.User, Host: "127.0.0.1", Port: p.Port()}, sshconn.Options{
		KnownHostsFile: kh, ConfigFile: "none", HomeDir: t.TempDir(), IdentityFiles: []string{id},
		KeepAlive: 250 * time.Millisecond,
	})
	// Keepalive rounds complete (sshd's failure reply counts as alive)
	// while the connection idles between commands.
	for i := 0; i < 3; i++ {
		if _, err := c.Run(context.Background(), []string{"true"}); err != nil {
			t.Fatalf("Run %d: %v", i, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	p.Stall()
	if err := c.Wait(); !errors.Is(err, sshconn.ErrUnreachable) || !strings.Contains(err.Error(), "no keepalive reply") {
		t.Fatalf("Wait = %v", err)
	}
}
