package sshconn_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
)

// sftpRoundTrip writes data to name with pipelined writes and reads it back
// with pipelined reads.
func sftpRoundTrip(t *testing.T, sc *sftp.Client, name string, data []byte) {
	t.Helper()
	f, err := sc.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.ReadFromWithConcurrency(bytes.NewReader(data), 0); err != nil || n != int64(len(data)) {
		t.Fatalf("upload: %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(name); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("uploaded file differs (%v)", err)
	}
	r, err := sc.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var back bytes.Buffer
	if _, err := r.WriteTo(&back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Bytes(), data) {
		t.Fatal("downloaded data differs")
	}
}

// TestOpenSSHSFTPLimits: the real sftp-server states its limits
// (limits@openssh.com), and a client using the largest packets it allows
// moves data both ways on the same session that answered the query.
func TestOpenSSHSFTPLimits(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	srv := sshtest.StartOpenSSH(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	c := dial(t, srv.Target(""), sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), ConfigFile: "none", HomeDir: t.TempDir(),
		IdentityFiles: []string{id}, Getenv: env(nil),
	})
	var seen *sshconn.SFTPLimits
	sc, limits, err := c.SFTPWithLimits(func(l *sshconn.SFTPLimits) []sftp.ClientOption {
		seen = l
		if l == nil {
			return nil
		}
		return []sftp.ClientOption{sftp.MaxPacketUnchecked(int(min(l.MaxRead, l.MaxWrite)))}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if limits == nil || seen != limits {
		t.Fatalf("limits %+v (tune saw %+v): OpenSSH states them", limits, seen)
	}
	t.Logf("limits: %+v", *limits)
	if limits.MaxRead < 32768 || limits.MaxWrite < 32768 || limits.MaxPacket < limits.MaxWrite {
		t.Fatalf("implausible limits %+v", *limits)
	}
	if _, ok := sc.HasExtension("posix-rename@openssh.com"); !ok {
		t.Error("the replayed VERSION lost the server's extensions")
	}
	data := make([]byte, 3<<20+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sftpRoundTrip(t, sc, filepath.Join(t.TempDir(), "big packets"), data)
	if err := sc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// The connection is still good for other sessions.
	if out, err := c.Run(t.Context(), []string{"echo", "ok"}); err != nil || string(out) != "ok\n" {
		t.Fatalf("Run after the SFTP session: %q, %v", out, err)
	}
}

// TestSFTPLimitsNotOffered: a server without limits@openssh.com (pkg/sftp's,
// in process) gives nil limits and a working client with the defaults.
func TestSFTPLimitsNotOffered(t *testing.T) {
	root := t.TempDir()
	srv, o := keyServer(t, sshtest.Config{Root: root})
	c := dial(t, srv.Target("x"), o)
	called := false
	sc, limits, err := c.SFTPWithLimits(func(l *sshconn.SFTPLimits) []sftp.ClientOption {
		called = true
		if l != nil {
			t.Errorf("tune got limits %+v from a server that does not state them", *l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if limits != nil || !called {
		t.Fatalf("limits %+v, tune called %v", limits, called)
	}
	data := make([]byte, 1<<20+7)
	if _, err := io.ReadFull(rand.Reader, data); err != nil {
		t.Fatal(err)
	}
	sftpRoundTrip(t, sc, filepath.Join(root, "f"), data)
}

// TestSFTPWithLimitsNoSubsystem: a server that refuses the sftp subsystem
// is an error naming the session, not a hang.
func TestSFTPWithLimitsNoSubsystem(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{NoSFTP: true})
	c := dial(t, srv.Target("x"), o)
	sc, _, err := c.SFTPWithLimits(nil)
	if err == nil {
		sc.Close()
		t.Fatal("SFTPWithLimits succeeded without an sftp subsystem")
	}
	if !strings.Contains(err.Error(), "open SFTP session") {
		t.Fatalf("err = %v, want it to name the SFTP session", err)
	}
}
