package sshconn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
	"github.com/netops-dev/netops/internal/testutil/cutproxy"
)

// env returns a Getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// keyServer starts an in-process server that authorizes a fresh client key
// and returns options that trust it (strict, known_hosts written, no
// ssh_config, an empty home).
func keyServer(t *testing.T, cfg sshtest.Config) (*sshtest.Server, sshconn.Options) {
	t.Helper()
	id, signer := sshtest.GenerateKey(t)
	cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, signer.PublicKey())
	srv := sshtest.Start(t, cfg)
	return srv, sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv),
		IdentityFiles:  []string{id},
		ConfigFile:     "none",
		HomeDir:        t.TempDir(),
		Getenv:         env(nil),
	}
}

func dial(t *testing.T, target sshconn.Target, o sshconn.Options) *sshconn.Client {
	t.Helper()
	c, err := sshconn.Dial(context.Background(), target, o)
	if err != nil {
		t.Fatalf("Dial(%v): %v", target, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestDialKeyAuthAndRun(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{User: "alice"})
	c := dial(t, srv.Target("alice"), o)
	if c.String() != "alice@"+srv.Addr {
		t.Errorf("String() = %q", c.String())
	}
	dir := t.TempDir()
	name := filepath.Join(dir, "it's a $file\nwith newline")
	if err := os.WriteFile(name, []byte("hello world\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.txt")
	if err := os.WriteFile(plain, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := c.Run(context.Background(), []string{"sha256sum", "--", plain, name})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	esc := strings.NewReplacer("\\", "\\\\", "\n", "\\n").Replace(name)
	want := sha256File(t, plain) + "  " + plain + "\n\\" + sha256File(t, name) + "  " + esc + "\n"
	if string(out) != want {
		t.Fatalf("sha256sum output\n%q\nwant\n%q", out, want)
	}
	if srv.Execs() != 1 || srv.Connections() != 1 {
		t.Fatalf("execs %d connections %d, want 1 and 1", srv.Execs(), srv.Connections())
	}
	if cmds := srv.Commands(); len(cmds) != 1 || !strings.Contains(cmds[0], `/it'\''s a $file`) {
		t.Fatalf("commands = %q", cmds)
	}

	// Missing file: exit 1 with the coreutils message, output for the others.
	missing := filepath.Join(dir, "missing")
	out, err = c.Run(context.Background(), []string{"sha256sum", "--", plain, missing})
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) || ee.Status != 1 || !strings.Contains(string(ee.Stderr), "sha256sum: "+missing+": No such file or directory") {
		t.Fatalf("missing file: err = %v", err)
	}
	if !strings.HasPrefix(string(out), sha256File(t, plain)) || sshconn.Retryable(err) || sshconn.ExecUnavailable(err) {
		t.Fatalf("missing file: out %q retryable %v", out, sshconn.Retryable(err))
	}

	// Unknown command: 127, ExecUnavailable.
	_, err = c.Run(context.Background(), []string{"b2sum", plain})
	if !errors.As(err, &ee) || ee.Status != 127 || !sshconn.ExecUnavailable(err) {
		t.Fatalf("unknown command: %v", err)
	}
	if !strings.Contains(err.Error(), "b2sum exited with status 127 (command not found)") {
		t.Fatalf("message: %v", err)
	}
}

func TestRunExecRejected(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{NoExec: true})
	c := dial(t, srv.Target("bob"), o)
	_, err := c.Run(context.Background(), []string{"sha256sum", "--", "/etc/hostname"})
	if !errors.Is(err, sshconn.ErrExecRejected) || !sshconn.ExecUnavailable(err) || sshconn.Retryable(err) {
		t.Fatalf("err = %v", err)
	}
	if srv.Execs() != 0 {
		t.Fatalf("execs = %d", srv.Execs())
	}
	// SFTP still works on the same connection.
	sc, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, err := sc.Getwd(); err != nil {
		t.Fatal(err)
	}
}

func TestSFTPRoundTripInProcess(t *testing.T) {
	root := t.TempDir()
	srv, o := keyServer(t, sshtest.Config{Root: root})
	c := dial(t, srv.Target("u"), o)
	sc, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	wd, err := sc.Getwd()
	if err != nil || wd != root {
		t.Fatalf("Getwd = %q, %v; want %q", wd, err, root)
	}
	data := make([]byte, 3<<20+17)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create("rel.bin") // relative to Root
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(root, "rel.bin"))
	if err != nil || string(onDisk) != string(data) {
		t.Fatalf("file on disk: %d bytes, %v", len(onDisk), err)
	}
	r, err := sc.Open(filepath.Join(root, "rel.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var back strings.Builder
	if _, err := r.WriteTo(&back); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if back.String() != string(data) {
		t.Fatal("read back differs")
	}
	// Relative path in exec resolves under Root too.
	out, err := c.Run(context.Background(), []string{"sha256sum", "rel.bin"})
	if err != nil || string(out) != sha256File(t, filepath.Join(root, "rel.bin"))+"  rel.bin\n" {
		t.Fatalf("sha256sum rel.bin = %q, %v", out, err)
	}
}

func TestDialWrongKey(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	other, _ := sshtest.GenerateKey(t)
	o.IdentityFiles = []string{other}
	_, err := sshconn.Dial(context.Background(), srv.Target("alice"), o)
	if !errors.Is(err, sshconn.ErrAuth) || sshconn.Retryable(err) {
		t.Fatalf("err = %v (retryable %v)", err, sshconn.Retryable(err))
	}
	want := fmt.Sprintf("ssh alice@%s: authentication failed (tried publickey)", srv.Addr)
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("message %q\nwant prefix %q", err, want)
	}
}

func TestDialPassword(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Config{User: "alice", Password: "s3cret"})
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv),
		ConfigFile:     "none",
		HomeDir:        t.TempDir(),
		Getenv:         env(nil),
		Password:       "s3cret",
	}
	c := dial(t, srv.Target("alice"), o)
	c.Close()

	o.Password = "wrong"
	_, err := sshconn.Dial(context.Background(), srv.Target("alice"), o)
	if !errors.Is(err, sshconn.ErrAuth) || sshconn.Retryable(err) {
		t.Fatalf("wrong password: %v", err)
	}
	if !strings.Contains(err.Error(), "authentication failed (tried password)") {
		t.Fatalf("message: %v", err)
	}

	// Nothing to offer at all.
	o.Password = ""
	_, err = sshconn.Dial(context.Background(), srv.Target("alice"), o)
	if !errors.Is(err, sshconn.ErrAuth) || !strings.Contains(err.Error(), "no key or password to offer") {
		t.Fatalf("no methods: %v", err)
	}
}

func TestDialKeyAndPasswordTriedInOrder(t *testing.T) {
	srv := sshtest.Start(t, sshtest.Config{Password: "pw"})
	other, _ := sshtest.GenerateKey(t)
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), ConfigFile: "none", HomeDir: t.TempDir(),
		IdentityFiles: []string{other}, Password: "bad",
	}
	_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
	if !errors.Is(err, sshconn.ErrAuth) || !strings.Contains(err.Error(), "(tried publickey, password") {
		t.Fatalf("err = %v", err)
	}
	o.Password = "pw"
	dial(t, srv.Target("u"), o)
}

func TestHostKeyUnknownStrict(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	o.KnownHostsFile = filepath.Join(t.TempDir(), "sub", "known_hosts")
	_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
	if !errors.Is(err, sshconn.ErrHostKeyUnknown) || sshconn.Retryable(err) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"ssh " + srv.Addr + ": host key unknown", srv.Fingerprint(), "accept-new"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if _, statErr := os.Stat(o.KnownHostsFile); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("strict must not create known_hosts: %v", statErr)
	}
	if srv.AuthAttempts() != 0 {
		t.Fatal("credentials must not be offered to an unverified host")
	}
}

func TestHostKeyAcceptNew(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	dir := filepath.Join(t.TempDir(), "home", ".ssh")
	o.KnownHostsFile = filepath.Join(dir, "known_hosts")
	o.HostKeyPolicy = sshconn.PolicyAcceptNew
	dial(t, srv.Target("u"), o).Close()

	st, err := os.Stat(o.KnownHostsFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts: %v mode %v", err, st.Mode())
	}
	dst, err := os.Stat(dir)
	if err != nil || dst.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v mode %v", err, dst.Mode())
	}
	data, _ := os.ReadFile(o.KnownHostsFile)
	if string(data) != srv.KnownHostsLine()+"\n" {
		t.Fatalf("known_hosts = %q, want %q", data, srv.KnownHostsLine())
	}
	// Now known: strict works, and accept-new does not append again.
	o.HostKeyPolicy = sshconn.PolicyStrict
	dial(t, srv.Target("u"), o).Close()
	o.HostKeyPolicy = sshconn.PolicyAcceptNew
	dial(t, srv.Target("u"), o).Close()
	again, _ := os.ReadFile(o.KnownHostsFile)
	if string(again) != string(data) {
		t.Fatalf("known_hosts changed on a known host: %q", again)
	}

	// A second unknown server is appended, even after a line without newline.
	if err := os.WriteFile(o.KnownHostsFile, []byte(strings.TrimSuffix(string(data), "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	srv2 := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{mustPub(t, o.IdentityFiles[0])}})
	dial(t, srv2.Target("u"), o).Close()
	got, _ := os.ReadFile(o.KnownHostsFile)
	if string(got) != srv.KnownHostsLine()+"\n"+srv2.KnownHostsLine()+"\n" {
		t.Fatalf("known_hosts = %q", got)
	}
}

func mustPub(t *testing.T, identity string) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(identity + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHostKeyChanged(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	_, oldKey := sshtest.NewKey(t)
	// known_hosts line 2 holds another key for the server's address.
	content := "# comment\n" + knownhosts.Line([]string{srv.Addr}, oldKey.PublicKey()) + "\n"
	if err := os.WriteFile(o.KnownHostsFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, policy := range []string{sshconn.PolicyStrict, sshconn.PolicyAcceptNew, ""} {
		o.HostKeyPolicy = policy
		_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
		if !errors.Is(err, sshconn.ErrHostKeyChanged) || sshconn.Retryable(err) {
			t.Fatalf("policy %q: err = %v", policy, err)
		}
		want := fmt.Sprintf("ssh %s: host key mismatch: %s:2 has %s (ssh-ed25519), server offered %s (ssh-ed25519) (possible man-in-the-middle;",
			srv.Addr, o.KnownHostsFile, ssh.FingerprintSHA256(oldKey.PublicKey()), srv.Fingerprint())
		if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "ssh-keygen") {
			t.Fatalf("policy %q: message\n%s\nwant prefix\n%s", policy, err, want)
		}
		after, _ := os.ReadFile(o.KnownHostsFile)
		if string(after) != content {
			t.Fatalf("policy %q modified known_hosts", policy)
		}
	}
	if srv.AuthAttempts() != 0 {
		t.Fatal("credentials offered to a host with a changed key")
	}
}

// TestHostKeyAlgorithmsFromKnownHosts: the server has an ECDSA and an
// Ed25519 key; x/crypto prefers ECDSA, but known_hosts only has the Ed25519
// key, so the client must ask for Ed25519.
func TestHostKeyAlgorithmsFromKnownHosts(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	srv, o := keyServer(t, sshtest.Config{ExtraHostKeys: []ssh.Signer{ec}})
	dial(t, srv.Target("u"), o).Close()

	// With only the ECDSA key known, ECDSA is negotiated.
	ecLine := knownhosts.Line([]string{srv.Addr}, ec.PublicKey())
	if err := os.WriteFile(o.KnownHostsFile, []byte(ecLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dial(t, srv.Target("u"), o).Close()
}

func TestPinnedFingerprint(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	o.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts") // empty: the pin decides
	o.Fingerprint = srv.Fingerprint()
	dial(t, srv.Target("u"), o).Close()

	o.HostKeyPolicy = sshconn.PolicyFingerprint
	dial(t, srv.Target("u"), o).Close()

	_, other := sshtest.NewKey(t)
	o.Fingerprint = ssh.FingerprintSHA256(other.PublicKey())
	_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
	if !errors.Is(err, sshconn.ErrHostKeyChanged) || sshconn.Retryable(err) ||
		!strings.Contains(err.Error(), "pinned fingerprint is "+o.Fingerprint+", server offered "+srv.Fingerprint()) {
		t.Fatalf("mismatch: %v", err)
	}

	// Fingerprints keyed by host:port (the config form).
	o.Fingerprint = ""
	o.Fingerprints = map[string]string{srv.Addr: srv.Fingerprint()}
	dial(t, srv.Target("u"), o).Close()

	// Policy fingerprint without a pin: unknown.
	o.Fingerprints = nil
	_, err = sshconn.Dial(context.Background(), srv.Target("u"), o)
	if !errors.Is(err, sshconn.ErrHostKeyUnknown) || !strings.Contains(err.Error(), "no fingerprint is pinned") {
		t.Fatalf("no pin: %v", err)
	}
}

func TestAgentAuth(t *testing.T) {
	priv, signer := sshtest.NewKey(t)
	srv := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = agent.ServeAgent(kr, c)
			}()
		}
	}()
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), ConfigFile: "none", HomeDir: t.TempDir(),
		UseAgent: true, Getenv: env(map[string]string{"SSH_AUTH_SOCK": sock}),
	}
	c := dial(t, srv.Target("u"), o)
	if _, err := c.Run(context.Background(), []string{"sha256sum", "--", sock}); err == nil {
		t.Fatal("hashing a socket should fail")
	}
	c.Close()

	// Agent disabled or socket unset: no key, and the message says why.
	o.Getenv = env(nil)
	_, err = sshconn.Dial(context.Background(), srv.Target("u"), o)
	if !errors.Is(err, sshconn.ErrAuth) || !strings.Contains(err.Error(), "SSH_AUTH_SOCK is not set") {
		t.Fatalf("no agent: %v", err)
	}
}

func TestDefaultIdentityFromHome(t *testing.T) {
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	priv, signer := sshtest.NewKey(t)
	sshtest.WritePrivateKey(t, filepath.Join(home, ".ssh", "id_ed25519"), priv)
	srv := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	kh := filepath.Join(home, ".ssh", "known_hosts")
	if err := os.WriteFile(kh, []byte(srv.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Defaults: ~/.ssh/known_hosts, ~/.ssh/config (absent), ~/.ssh/id_ed25519.
	c := dial(t, srv.Target("u"), sshconn.Options{Getenv: env(map[string]string{"HOME": home})})
	c.Close()
}

func TestSSHConfigAliasAndProxyJump(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	keys := []ssh.PublicKey{signer.PublicKey()}
	jump := sshtest.Start(t, sshtest.Config{User: "hop", AuthorizedKeys: keys, AllowForwarding: true})
	target := sshtest.Start(t, sshtest.Config{User: "alice", AuthorizedKeys: keys})
	home := t.TempDir()
	cfgFile := filepath.Join(home, "ssh_config")
	cfg := fmt.Sprintf(`Host inner
  HostName 127.0.0.1
  Port %d
  User alice
  ProxyJump hop@127.0.0.1:%d

Host inner-direct
  HostName 127.0.0.1
  Port %d
  User alice

Host *
  IdentityFile %s
`, target.Port, jump.Port, target.Port, id)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, jump, target), ConfigFile: cfgFile, HomeDir: home,
		Getenv: env(nil),
	}
	c := dial(t, sshconn.Target{Host: "inner-direct"}, o)
	if c.String() != "alice@inner-direct ("+target.Addr+")" {
		t.Fatalf("alias resolved to %s", c)
	}
	c.Close()
	if jump.Connections() != 0 || target.Connections() != 1 {
		t.Fatalf("direct: jump %d target %d connections", jump.Connections(), target.Connections())
	}

	c = dial(t, sshconn.Target{Host: "inner"}, o)
	out, err := c.Run(context.Background(), []string{"sha256sum", "--", cfgFile})
	if err != nil || !strings.HasPrefix(string(out), sha256File(t, cfgFile)) {
		t.Fatalf("Run through jump: %q %v", out, err)
	}
	c.Close()
	if jump.Connections() != 1 || target.Connections() != 2 || jump.Execs() != 0 || target.Execs() != 1 {
		t.Fatalf("jump: jump %d/%d target %d/%d (connections/execs)", jump.Connections(), jump.Execs(), target.Connections(), target.Execs())
	}

	// Options.ProxyJump overrides ssh_config; "none" disables it.
	o.ProxyJump = "none"
	dial(t, sshconn.Target{Host: "inner"}, o).Close()
	if jump.Connections() != 1 {
		t.Fatal("ProxyJump none still used the jump host")
	}

	// Jump host with an unknown host key: fails naming the jump host.
	o.ProxyJump = ""
	o.KnownHostsFile = sshtest.WriteKnownHosts(t, target)
	_, err = sshconn.Dial(context.Background(), sshconn.Target{Host: "inner"}, o)
	if !errors.Is(err, sshconn.ErrHostKeyUnknown) || !strings.HasPrefix(err.Error(), "ssh "+jump.Addr+" (jump host for alice@inner ("+target.Addr+")): host key unknown") {
		t.Fatalf("unknown jump host: %v", err)
	}

	// A jump host that refuses forwarding.
	noFwd := sshtest.Start(t, sshtest.Config{AuthorizedKeys: keys})
	o.KnownHostsFile = sshtest.WriteKnownHosts(t, noFwd, target)
	o.ProxyJump = fmt.Sprintf("u@127.0.0.1:%d", noFwd.Port)
	_, err = sshconn.Dial(context.Background(), sshconn.Target{Host: "inner"}, o)
	if !errors.Is(err, sshconn.ErrUnreachable) || sshconn.Retryable(err) || !strings.Contains(err.Error(), "port forwarding is disabled") {
		t.Fatalf("forwarding refused: %v (retryable %v)", err, sshconn.Retryable(err))
	}
}

func TestProxyJumpChain(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	keys := []ssh.PublicKey{signer.PublicKey()}
	j1 := sshtest.Start(t, sshtest.Config{AuthorizedKeys: keys, AllowForwarding: true})
	j2 := sshtest.Start(t, sshtest.Config{AuthorizedKeys: keys, AllowForwarding: true})
	target := sshtest.Start(t, sshtest.Config{AuthorizedKeys: keys})
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, j1, j2, target), ConfigFile: "none", HomeDir: t.TempDir(),
		IdentityFiles: []string{id},
		ProxyJump:     fmt.Sprintf("a@127.0.0.1:%d,b@127.0.0.1:%d", j1.Port, j2.Port),
	}
	c := dial(t, target.Target("c"), o)
	if _, err := c.Run(context.Background(), []string{"sha256sum", "--", id}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if j1.Connections() != 1 || j2.Connections() != 1 || target.Connections() != 1 {
		t.Fatalf("connections j1 %d j2 %d target %d", j1.Connections(), j2.Connections(), target.Connections())
	}
}

func TestDialConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	_, err = sshconn.Dial(context.Background(), sshconn.Target{User: "u", Host: "127.0.0.1", Port: addr.Port},
		sshconn.Options{ConfigFile: "none", HomeDir: t.TempDir()})
	want := fmt.Sprintf("ssh 127.0.0.1:%d: connection refused", addr.Port)
	if !errors.Is(err, sshconn.ErrUnreachable) || !sshconn.Retryable(err) || err.Error() != want {
		t.Fatalf("err = %v, want %q (retryable)", err, want)
	}
}

// TestDialUnresolvable: a name that does not resolve. The resolver is
// stubbed through Options.Dialer (Go does not short-circuit .invalid, and
// tests resolve no name but localhost).
func TestDialUnresolvable(t *testing.T) {
	var asked []string
	stub := func(_ context.Context, network, addr string) (net.Conn, error) {
		asked = append(asked, network+" "+addr)
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "nohost.invalid", IsNotFound: true}}
	}
	_, err := sshconn.Dial(context.Background(), sshconn.Target{Host: "NoHost.invalid"},
		sshconn.Options{ConfigFile: "none", HomeDir: t.TempDir(), ConnectTimeout: 5 * time.Second, Dialer: stub})
	if !errors.Is(err, sshconn.ErrUnreachable) || !sshconn.Retryable(err) ||
		err.Error() != "ssh nohost.invalid:22: cannot resolve nohost.invalid: no such host" {
		t.Fatalf("err = %v", err)
	}
	if len(asked) != 1 || asked[0] != "tcp nohost.invalid:22" {
		t.Fatalf("dialer asked for %q", asked)
	}
}

// TestDialHandshakeTimeout: a peer that accepts TCP but never speaks SSH.
func TestDialHandshakeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = sshconn.Dial(context.Background(), sshconn.Target{Host: "127.0.0.1", Port: port},
		sshconn.Options{ConfigFile: "none", HomeDir: t.TempDir(), ConnectTimeout: 200 * time.Millisecond})
	if !errors.Is(err, sshconn.ErrUnreachable) || !sshconn.Retryable(err) || !strings.Contains(err.Error(), "handshake timed out after 200ms") {
		t.Fatalf("err = %v", err)
	}

	// A cancelled context is not retryable.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = sshconn.Dial(ctx, sshconn.Target{Host: "127.0.0.1", Port: port},
		sshconn.Options{ConfigFile: "none", HomeDir: t.TempDir(), ConnectTimeout: time.Minute})
	if !errors.Is(err, context.Canceled) || sshconn.Retryable(err) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestKeepAliveDetectsDeadPeer: the path to the server stalls (packets
// vanish, TCP stays up); keepalives must close the connection, fail pending
// operations and report why.
func TestKeepAliveDetectsDeadPeer(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	p := cutproxy.Start(t, srv.Addr)
	o.KeepAlive = 250 * time.Millisecond
	// Trust the server under the proxy's address.
	line := knownhosts.Line([]string{p.Addr}, srv.HostKey)
	if err := os.WriteFile(o.KnownHostsFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dial(t, sshconn.Target{User: "u", Host: "127.0.0.1", Port: p.Port()}, o)
	if _, err := c.Run(context.Background(), []string{"sha256sum", "--", o.KnownHostsFile}); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	runErr := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), []string{"sha256sum", "--", o.KnownHostsFile})
		runErr <- err
	}()
	err := c.Wait()
	if !errors.Is(err, sshconn.ErrUnreachable) || !sshconn.Retryable(err) || !strings.Contains(err.Error(), "no keepalive reply") {
		t.Fatalf("Wait = %v", err)
	}
	if err := <-runErr; err == nil || !sshconn.Retryable(err) {
		t.Fatalf("pending Run = %v, want a retryable error", err)
	}
}

// TestConnectionDroppedMidSession: the server vanishes; Wait and later
// operations fail with retryable errors.
func TestConnectionDropped(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	c := dial(t, srv.Target("u"), o)
	srv.DropConnections()
	if err := c.Wait(); err == nil || !sshconn.Retryable(err) {
		t.Fatalf("Wait = %v", err)
	}
	if _, err := c.Run(context.Background(), []string{"sha256sum"}); err == nil || !sshconn.Retryable(err) {
		t.Fatalf("Run after drop = %v", err)
	}
	if _, err := c.SFTP(); err == nil || !sshconn.Retryable(err) {
		t.Fatalf("SFTP after drop = %v", err)
	}
}

func TestDialBadOptions(t *testing.T) {
	_, err := sshconn.Dial(context.Background(), sshconn.Target{Host: "127.0.0.1", Port: 1},
		sshconn.Options{HostKeyPolicy: "yolo", ConfigFile: "none"})
	if err == nil || !strings.Contains(err.Error(), `unknown host key policy "yolo"`) {
		t.Fatalf("err = %v", err)
	}
	_, err = sshconn.Dial(context.Background(), sshconn.Target{Host: "127.0.0.1", Port: 1},
		sshconn.Options{IdentityFiles: []string{filepath.Join(t.TempDir(), "nope")}, ConfigFile: "none"})
	if err == nil || !strings.Contains(err.Error(), "identity file") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("missing identity file: %v", err)
	}
}

func TestHashedKnownHosts(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	hashed := knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(srv.Addr))}, srv.HostKey)
	if !strings.HasPrefix(hashed, "|1|") {
		t.Fatalf("not hashed: %q", hashed)
	}
	if err := os.WriteFile(o.KnownHostsFile, []byte(hashed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dial(t, srv.Target("u"), o).Close()
}

// TestCutDuringHandshake: the server side goes away in the middle of the
// key exchange; the error is retryable and a new attempt succeeds.
func TestCutDuringHandshake(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	p := cutproxy.Start(t, srv.Addr)
	line := knownhosts.Line([]string{p.Addr}, srv.HostKey)
	if err := os.WriteFile(o.KnownHostsFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := sshconn.Target{User: "u", Host: "127.0.0.1", Port: p.Port()}
	p.CutAfter(100) // inside the server's version string + KEXINIT
	_, err := sshconn.Dial(context.Background(), target, o)
	if err == nil || !sshconn.Retryable(err) || !strings.HasPrefix(err.Error(), "ssh "+p.Addr+": ") {
		t.Fatalf("cut handshake: %v (retryable %v)", err, sshconn.Retryable(err))
	}
	t.Logf("cut handshake: %v", err)
	dial(t, target, o).Close()
	if p.Conns() != 2 || p.Cuts() != 1 {
		t.Fatalf("conns %d cuts %d", p.Conns(), p.Cuts())
	}
}

// TestCutMidSFTPDownload: the connection dies after ~1 MiB of a 4 MiB
// download; the read fails with a retryable error.
func TestCutMidSFTPDownload(t *testing.T) {
	root := t.TempDir()
	srv, o := keyServer(t, sshtest.Config{Root: root})
	data := make([]byte, 4<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "big"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := cutproxy.Start(t, srv.Addr)
	line := knownhosts.Line([]string{p.Addr}, srv.HostKey)
	if err := os.WriteFile(o.KnownHostsFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.CutAfter(1 << 20)
	c := dial(t, sshconn.Target{User: "u", Host: "127.0.0.1", Port: p.Port()}, o)
	sc, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := sc.Open("big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.WriteTo(io.Discard)
	f.Close()
	if err == nil || !sshconn.Retryable(err) {
		t.Fatalf("download of %d bytes ended with %v (retryable %v), want a retryable error", n, err, sshconn.Retryable(err))
	}
	t.Logf("download error after %d bytes: %v", n, err)
	if n >= int64(len(data)) {
		t.Fatalf("read %d bytes through a cut connection", n)
	}
}

// TestCutMidSFTPUpload: the connection dies after ~1 MiB of an upload; the
// write fails with a retryable error and the server holds a prefix only.
func TestCutMidSFTPUpload(t *testing.T) {
	root := t.TempDir()
	srv, o := keyServer(t, sshtest.Config{Root: root})
	p := cutproxy.Start(t, srv.Addr)
	line := knownhosts.Line([]string{p.Addr}, srv.HostKey)
	if err := os.WriteFile(o.KnownHostsFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.CutUpstreamAfter(1 << 20)
	c := dial(t, sshconn.Target{User: "u", Host: "127.0.0.1", Port: p.Port()}, o)
	sc, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	data := make([]byte, 4<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	f, err := sc.Create("up")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadFrom(in)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil || !sshconn.Retryable(err) {
		t.Fatalf("upload through a cut connection: %v (retryable %v)", err, sshconn.Retryable(err))
	}
	if got, _ := os.ReadFile(filepath.Join(root, "up")); len(got) >= len(data) {
		t.Fatalf("server holds %d bytes after the cut", len(got))
	}
}

// Start: the command reads what is written to its stdin until it is closed;
// Wait returns its output. A command killed before its input ends gives no
// output and a prompt return.
func TestStartStdinWaitKill(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{User: "alice"})
	c := dial(t, srv.Target("alice"), o)
	ctx := context.Background()
	p, err := c.Start(ctx, []string{"sha256sum"})
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"hello ", "world\n"} {
		if _, err := io.WriteString(p.Stdin(), part); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Stdin().Close(); err != nil {
		t.Fatal(err)
	}
	out, err := p.Wait(ctx)
	want := fmt.Sprintf("%x  -\n", sha256.Sum256([]byte("hello world\n")))
	if err != nil || string(out) != want {
		t.Fatalf("Wait = %q, %v; want %q", out, err, want)
	}

	p, err = c.Start(ctx, []string{"sha256sum"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(p.Stdin(), "partial"); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	// The connection still works after a killed command.
	if out, err := c.Run(ctx, []string{"sha256sum", "--", "/dev/null"}); err != nil || !strings.HasPrefix(string(out), "e3b0c442") {
		t.Fatalf("Run after Kill = %q, %v", out, err)
	}
	if _, err := c.Start(ctx, []string{"sha256sum", "bad\x00arg"}); err == nil {
		t.Error("Start with a NUL in an argument succeeded")
	}
}
