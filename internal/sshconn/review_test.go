package sshconn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
)

// routeTo returns an Options.Dialer that connects every first hop to addr
// (a loopback server) and records the addresses it was asked for, so tests
// can use host names without resolving them.
func routeTo(addr string, asked *[]string) func(context.Context, string, string) (net.Conn, error) {
	var mu sync.Mutex
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		mu.Lock()
		*asked = append(*asked, a)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// TestHostNameCaseInsensitive: known_hosts lookup is case-sensitive, so the
// host must be lower-cased (as OpenSSH does) before lookup and record.
// LocalHost must hit the [localhost]:P entry: a different key there is a
// mismatch, not a new host to append.
func TestHostNameCaseInsensitive(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	var asked []string
	o.Dialer = routeTo(srv.Addr, &asked)
	_, old := sshtest.NewKey(t)
	hostport := fmt.Sprintf("localhost:%d", srv.Port)
	content := knownhosts.Line([]string{hostport}, old.PublicKey()) + "\n"
	if err := os.WriteFile(o.KnownHostsFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	o.HostKeyPolicy = sshconn.PolicyAcceptNew
	_, err := sshconn.Dial(context.Background(), sshconn.Target{User: "u", Host: "LocalHost", Port: srv.Port}, o)
	if !errors.Is(err, sshconn.ErrHostKeyChanged) {
		t.Fatalf("LocalHost with another key under [localhost]: err = %v", err)
	}
	if after, _ := os.ReadFile(o.KnownHostsFile); string(after) != content {
		t.Fatalf("known_hosts modified:\n%s", after)
	}
	if len(asked) != 1 || asked[0] != hostport {
		t.Fatalf("dialed %q, want %q", asked, hostport)
	}

	// The right key under [localhost]:P is found for LOCALHOST (strict).
	content = knownhosts.Line([]string{hostport}, srv.HostKey) + "\n"
	if err := os.WriteFile(o.KnownHostsFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	o.HostKeyPolicy = sshconn.PolicyStrict
	dial(t, sshconn.Target{User: "u", Host: "LOCALHOST", Port: srv.Port}, o).Close()

	// accept-new records the lower-cased name.
	o.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	o.HostKeyPolicy = sshconn.PolicyAcceptNew
	dial(t, sshconn.Target{User: "u", Host: "LocalHost", Port: srv.Port}, o).Close()
	if got, _ := os.ReadFile(o.KnownHostsFile); string(got) != content {
		t.Fatalf("recorded %q, want %q", got, content)
	}
}

func TestRunRejectsNUL(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	c := dial(t, srv.Target("u"), o)
	_, err := c.Run(context.Background(), []string{"sha256sum", "--", "a\x00b"})
	if err == nil || !strings.Contains(err.Error(), "argument 2 contains a NUL byte") {
		t.Fatalf("err = %v", err)
	}
	if srv.Execs() != 0 {
		t.Fatalf("execs = %d", srv.Execs())
	}
}

// TestGlobalKnownHosts: the system-wide file is consulted read-only; a host
// it knows with another key is a mismatch with every policy.
func TestGlobalKnownHosts(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	dir := t.TempDir()
	global := filepath.Join(dir, "ssh_known_hosts")
	_, old := sshtest.NewKey(t)
	globalContent := "# system\n" + knownhosts.Line([]string{srv.Addr}, old.PublicKey()) + "\n"
	if err := os.WriteFile(global, []byte(globalContent), 0o644); err != nil {
		t.Fatal(err)
	}
	o.GlobalKnownHostsFile = global
	o.KnownHostsFile = filepath.Join(dir, "user", "known_hosts") // missing
	for _, policy := range []string{sshconn.PolicyStrict, sshconn.PolicyAcceptNew} {
		o.HostKeyPolicy = policy
		_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
		if !errors.Is(err, sshconn.ErrHostKeyChanged) || !strings.Contains(err.Error(), global+":2 has "+ssh.FingerprintSHA256(old.PublicKey())) {
			t.Fatalf("policy %s: err = %v", policy, err)
		}
		if _, err := os.Stat(o.KnownHostsFile); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("policy %s: user known_hosts written: %v", policy, err)
		}
	}
	if srv.AuthAttempts() != 0 {
		t.Fatal("credentials offered to a host with a changed key")
	}

	// Known with the right key globally only: strict accepts.
	if err := os.WriteFile(global, []byte(srv.KnownHostsLine()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o.HostKeyPolicy = sshconn.PolicyStrict
	dial(t, srv.Target("u"), o).Close()

	// "none": not consulted, so the host is unknown.
	o.GlobalKnownHostsFile = "none"
	if _, err := sshconn.Dial(context.Background(), srv.Target("u"), o); !errors.Is(err, sshconn.ErrHostKeyUnknown) {
		t.Fatalf("global none: err = %v", err)
	}
}

// TestSSHConfigKnownHostsAndAlias: ssh_config UserKnownHostsFile replaces
// the known_hosts file for the host and HostKeyAlias the name looked up
// and recorded (without port, as OpenSSH).
func TestSSHConfigKnownHostsAndAlias(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	home := t.TempDir()
	perHost := filepath.Join(home, "kh-%h")
	cfg := fmt.Sprintf("Host box\n  HostName 127.0.0.1\n  Port %d\n  UserKnownHostsFile %s ~/second\n  HostKeyAlias Box-Key\n", srv.Port, perHost)
	o.ConfigFile = filepath.Join(home, "config")
	o.HomeDir = home
	if err := os.WriteFile(o.ConfigFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	o.GlobalKnownHostsFile = "none"
	o.HostKeyPolicy = sshconn.PolicyAcceptNew
	dial(t, sshconn.Target{User: "u", Host: "box"}, o).Close()
	file := filepath.Join(home, "kh-127.0.0.1")
	got, err := os.ReadFile(file)
	want := knownhosts.Line([]string{"box-key"}, srv.HostKey) + "\n"
	if err != nil || string(got) != want {
		t.Fatalf("%s = %q, %v; want %q", file, got, err, want)
	}
	if b, err := os.ReadFile(o.KnownHostsFile); err != nil || string(b) != srv.KnownHostsLine()+"\n" {
		t.Fatalf("Options.KnownHostsFile touched: %q %v", b, err)
	}
	// Strict finds it there, under the alias.
	o.HostKeyPolicy = sshconn.PolicyStrict
	o.KnownHostsFile = filepath.Join(t.TempDir(), "empty")
	dial(t, sshconn.Target{User: "u", Host: "box"}, o).Close()

	// Another key under the alias: mismatch naming the file and alias.
	_, other := sshtest.NewKey(t)
	if err := os.WriteFile(file, []byte(knownhosts.Line([]string{"box-key"}, other.PublicKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = sshconn.Dial(context.Background(), sshconn.Target{User: "u", Host: "box"}, o)
	if !errors.Is(err, sshconn.ErrHostKeyChanged) || !strings.Contains(err.Error(), "ssh-keygen -f "+file+" -R box-key") ||
		!strings.HasPrefix(err.Error(), "ssh u@box (127.0.0.1:") {
		t.Fatalf("err = %v", err)
	}
}

// TestSSHConfigKnownHostsUnsupported: settings netops cannot honour fail
// clearly instead of being ignored.
func TestSSHConfigKnownHostsUnsupported(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	home := t.TempDir()
	o.ConfigFile = filepath.Join(home, "config")
	cfg := fmt.Sprintf("Host off\n  UserKnownHostsFile /dev/null\nHost tok\n  UserKnownHostsFile ~/kh-%%k\nHost *\n  HostName 127.0.0.1\n  Port %d\n", srv.Port)
	if err := os.WriteFile(o.ConfigFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"off": "UserKnownHostsFile /dev/null for u@off (" + srv.Addr + "), which turns host key checking off",
		"tok": "token %k is not supported",
	} {
		_, err := sshconn.Dial(context.Background(), sshconn.Target{User: "u", Host: host}, o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", host, err, want)
		}
	}
	if srv.Connections() != 0 {
		t.Fatalf("%d connections", srv.Connections())
	}
}

// TestPasswordNotOfferedToJumpHost: Options.Password is for the target; a
// jump host that would accept it must never see it.
func TestPasswordNotOfferedToJumpHost(t *testing.T) {
	jump := sshtest.Start(t, sshtest.Config{Password: "pw", AllowForwarding: true})
	target := sshtest.Start(t, sshtest.Config{Password: "pw"})
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, jump, target), GlobalKnownHostsFile: "none",
		ConfigFile: "none", HomeDir: t.TempDir(), Getenv: env(nil), Password: "pw",
		ProxyJump: "j@" + jump.Addr,
	}
	_, err := sshconn.Dial(context.Background(), target.Target("u"), o)
	if !errors.Is(err, sshconn.ErrAuth) || !strings.Contains(err.Error(), "jump host for") || !strings.Contains(err.Error(), "final target only") {
		t.Fatalf("err = %v", err)
	}
	if jump.AuthAttempts() != 0 || target.Connections() != 0 {
		t.Fatalf("jump host saw %d credentials; target %d connections", jump.AuthAttempts(), target.Connections())
	}

	// With a key for the jump host, the password reaches the target only.
	id, signer := sshtest.GenerateKey(t)
	jump2 := sshtest.Start(t, sshtest.Config{Password: "pw", AllowForwarding: true, AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	o.KnownHostsFile = sshtest.WriteKnownHosts(t, jump2, target)
	o.ProxyJump = "j@" + jump2.Addr
	o.IdentityFiles = []string{id}
	c := dial(t, target.Target("u"), o)
	c.Close()
	if jump2.AuthAttempts() != 1 || jump2.AuthFailures() != 0 {
		t.Fatalf("jump host: %d attempts, %d failures; want the key only", jump2.AuthAttempts(), jump2.AuthFailures())
	}
}

// TestKnownHostsAppendFailureTruncates: a write that fails half way (here
// RLIMIT_FSIZE: the kernel writes part of the line, then EFBIG) must not
// leave a partial line, which would make known_hosts unparsable forever.
func TestKnownHostsAppendFailureTruncates(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	other := sshtest.Start(t, sshtest.Config{})
	content := other.KnownHostsLine() + "\n"
	if err := os.WriteFile(o.KnownHostsFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	o.HostKeyPolicy = sshconn.PolicyAcceptNew
	o.GlobalKnownHostsFile = "none"

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	lim := old
	lim.Cur = uint64(len(content) + 20) // room for 20 bytes of the new line
	if lim.Cur > old.Max {
		t.Skip("RLIMIT_FSIZE too low")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatalf("restore RLIMIT_FSIZE: %v", rerr)
	}
	if !errors.Is(err, sshconn.ErrHostKeyUnknown) || !strings.Contains(err.Error(), "record host key in "+o.KnownHostsFile) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(o.KnownHostsFile); string(got) != content {
		t.Fatalf("known_hosts after a failed append = %q, want the old content", got)
	}
	// Still parsable: the next attempt records the key.
	dial(t, srv.Target("u"), o).Close()
	if got, _ := os.ReadFile(o.KnownHostsFile); string(got) != content+srv.KnownHostsLine()+"\n" {
		t.Fatalf("known_hosts = %q", got)
	}
}

// serveAgent serves an ssh-agent protocol endpoint on a fresh socket; each
// connection is handed to serve.
func serveAgent(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
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
			go serve(c)
		}
	}()
	return sock
}

// TestAgentClosedWhenDialReturns: the agent is for authentication only;
// its connection is closed when Dial returns, not held for the client's
// lifetime.
func TestAgentClosedWhenDialReturns(t *testing.T) {
	priv, signer := sshtest.NewKey(t)
	srv := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{}, 1)
	sock := serveAgent(t, func(c net.Conn) {
		defer c.Close()
		_ = agent.ServeAgent(kr, c) // returns when the client closes
		ended <- struct{}{}
	})
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), ConfigFile: "none", HomeDir: t.TempDir(),
		UseAgent: true, Getenv: env(map[string]string{"SSH_AUTH_SOCK": sock}),
	}
	c := dial(t, srv.Target("u"), o)
	select {
	case <-ended:
	case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("agent connection still open after Dial returned")
	}
	if _, err := c.Run(context.Background(), []string{"sha256sum", "--", o.KnownHostsFile}); err != nil {
		t.Fatalf("connection unusable without the agent: %v", err)
	}
}

// TestAgentHangBoundedByContext: an agent that never answers (confirm-on-use
// waiting for a user) must not hold Dial past ctx.
func TestAgentHangBoundedByContext(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	o.IdentityFiles = nil
	sock := serveAgent(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(io.Discard, c) // reads requests, never replies
	})
	o.UseAgent = true
	o.Getenv = env(map[string]string{"SSH_AUTH_SOCK": sock})
	o.ConnectTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		c, err := sshconn.Dial(ctx, srv.Target("u"), o)
		if c != nil {
			c.Close()
		}
		res <- err
	}()
	select {
	case err := <-res:
		if !errors.Is(err, context.DeadlineExceeded) || sshconn.Retryable(err) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(20 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("Dial still blocked on the agent long after ctx expired")
	}
}

// TestDialContextDeadlineInHandshake: ctx's deadline (shorter than
// ConnectTimeout) fires during the handshake: the error is ctx's, not "timed
// out after 1m0s".
func TestDialContextDeadlineInHandshake(t *testing.T) {
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
	for i := 0; i < 3; i++ { // the race between the two timers went both ways
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err = sshconn.Dial(ctx, sshconn.Target{Host: "127.0.0.1", Port: port},
			sshconn.Options{ConfigFile: "none", HomeDir: t.TempDir(), ConnectTimeout: time.Minute})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || sshconn.Retryable(err) || strings.Contains(err.Error(), "1m0s") {
			t.Fatalf("err = %v", err)
		}
	}
}

func TestPinnedFingerprintBadFormat(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	good := srv.Fingerprint()
	for _, bad := range []string{"SHA256:short", strings.TrimPrefix(good, "SHA256:"), "MD5:" + good[7:], good + "x"} {
		o.Fingerprint = bad
		_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
		if err == nil || errors.Is(err, sshconn.ErrHostKeyChanged) || !strings.Contains(err.Error(), fmt.Sprintf("pinned fingerprint %q is not a SHA256 host key fingerprint", bad)) {
			t.Fatalf("pin %q: err = %v", bad, err)
		}
	}
	o.Fingerprint = ""
	o.Fingerprints = map[string]string{srv.Addr: good, "other:22": "sha256:abc"}
	_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
	if err == nil || !strings.Contains(err.Error(), `pinned fingerprint for other:22 "sha256:abc"`) {
		t.Fatalf("err = %v", err)
	}
	if srv.Connections() != 0 {
		t.Fatalf("connected %d times with a malformed pin", srv.Connections())
	}
	// Padding as some tools print it is fine.
	o.Fingerprints = map[string]string{srv.Addr: good + "="}
	dial(t, srv.Target("u"), o).Close()
}

func TestProxyCommandRejected(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	home := t.TempDir()
	o.ConfigFile = filepath.Join(home, "config")
	cfg := fmt.Sprintf("Host pc\n  HostName 127.0.0.1\n  Port %d\n  ProxyCommand nc %%h %%p\n\nHost pj\n  HostName 127.0.0.1\n  Port %d\n  ProxyJump none\n  ProxyCommand nc %%h %%p\n", srv.Port, srv.Port)
	if err := os.WriteFile(o.ConfigFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sshconn.Dial(context.Background(), sshconn.Target{User: "u", Host: "pc"}, o)
	if err == nil || err.Error() != "ssh u@pc: ProxyCommand (from ssh_config for u@pc ("+srv.Addr+")) is not supported; use ProxyJump" {
		t.Fatalf("err = %v", err)
	}
	if srv.Connections() != 0 {
		t.Fatal("connected directly although ProxyCommand was set")
	}
	// ProxyJump first: it wins (as in OpenSSH), here "none" = direct.
	o.KnownHostsFile = filepath.Join(t.TempDir(), "kh")
	if err := os.WriteFile(o.KnownHostsFile, []byte(srv.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dial(t, sshconn.Target{User: "u", Host: "pj"}, o).Close()
}

// startAgent serves kr on a fresh socket.
func startAgent(t *testing.T, kr agent.Agent) string {
	return serveAgent(t, func(c net.Conn) {
		defer c.Close()
		_ = agent.ServeAgent(kr, c)
	})
}

// TestIdentityFilesBeforeAgent: identity files are offered before agent
// keys (OpenSSH order), so a crowded agent cannot exhaust MaxAuthTries
// before the right key; with IdentitiesOnly no other agent key is offered.
func TestIdentityFilesBeforeAgent(t *testing.T) {
	id, signer := sshtest.GenerateKey(t)
	srv := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	kr := agent.NewKeyring()
	for i := 0; i < 3; i++ {
		priv, _ := sshtest.NewKey(t)
		if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
			t.Fatal(err)
		}
	}
	home := t.TempDir()
	o := sshconn.Options{
		KnownHostsFile: sshtest.WriteKnownHosts(t, srv), ConfigFile: filepath.Join(home, "config"), HomeDir: home,
		UseAgent: true, Getenv: env(map[string]string{"SSH_AUTH_SOCK": startAgent(t, kr)}),
	}
	cfg := fmt.Sprintf("Host plain\n  HostName 127.0.0.1\n  Port %d\n  IdentityFile %s\n\nHost only\n  HostName 127.0.0.1\n  Port %d\n  IdentitiesOnly yes\n  IdentityFile %s\n",
		srv.Port, id, srv.Port, filepath.Join(home, "unauthorized"))
	if err := os.WriteFile(o.ConfigFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dial(t, sshconn.Target{User: "u", Host: "plain"}, o).Close()
	if srv.AuthAttempts() != 1 {
		t.Fatalf("%d keys offered before the identity file's (want it first)", srv.AuthAttempts()-1)
	}

	// IdentitiesOnly: the agent's keys are not offered; the named file is
	// missing, so there is nothing to offer.
	before := srv.AuthAttempts()
	_, err := sshconn.Dial(context.Background(), sshconn.Target{User: "u", Host: "only"}, o)
	if !errors.Is(err, sshconn.ErrAuth) || srv.AuthAttempts() != before {
		t.Fatalf("IdentitiesOnly: err = %v, %d keys offered", err, srv.AuthAttempts()-before)
	}

	// IdentitiesOnly with the key in the agent and only its .pub on disk
	// (as for a passphrase-protected key): that agent key is offered.
	priv, pubSigner := sshtest.NewKey(t)
	if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	srv2 := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{pubSigner.PublicKey()}})
	pubFile := filepath.Join(home, "agentkey")
	if err := os.WriteFile(pubFile+".pub", ssh.MarshalAuthorizedKey(pubSigner.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg += fmt.Sprintf("\nHost only2\n  HostName 127.0.0.1\n  Port %d\n  IdentitiesOnly yes\n  IdentityFile %s\n", srv2.Port, pubFile)
	if err := os.WriteFile(o.ConfigFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	o.KnownHostsFile = sshtest.WriteKnownHosts(t, srv2)
	dial(t, sshconn.Target{User: "u", Host: "only2"}, o).Close()
	if srv2.AuthAttempts() != 1 {
		t.Fatalf("IdentitiesOnly: %d keys offered, want only the named one", srv2.AuthAttempts())
	}
}

// TestAliasInMessages: errors name the alias the user typed and the
// address it resolved to.
func TestAliasInMessages(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	home := t.TempDir()
	o.ConfigFile = filepath.Join(home, "config")
	if err := os.WriteFile(o.ConfigFile, []byte(fmt.Sprintf("Host prod\n  HostName 127.0.0.1\n  Port %d\n  User deploy\n", srv.Port)), 0o600); err != nil {
		t.Fatal(err)
	}
	o.KnownHostsFile = filepath.Join(home, "known_hosts")
	_, err := sshconn.Dial(context.Background(), sshconn.Target{Host: "prod"}, o)
	want := fmt.Sprintf("ssh deploy@prod (%s): host key unknown", srv.Addr)
	if !errors.Is(err, sshconn.ErrHostKeyUnknown) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want prefix %q", err, want)
	}
	o.KnownHostsFile = sshtest.WriteKnownHosts(t, srv)
	o.IdentityFiles = nil
	_, err = sshconn.Dial(context.Background(), sshconn.Target{Host: "prod"}, o)
	want = fmt.Sprintf("ssh deploy@prod (%s): authentication failed", srv.Addr)
	if !errors.Is(err, sshconn.ErrAuth) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want prefix %q", err, want)
	}
}

// TestKnownHostsParseError: a broken line is named once, with the fix.
func TestKnownHostsParseError(t *testing.T) {
	srv, o := keyServer(t, sshtest.Config{})
	content := srv.KnownHostsLine() + "\n[127.0.0.1]:1 ssh-ed25519 not-base64!\n"
	if err := os.WriteFile(o.KnownHostsFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sshconn.Dial(context.Background(), srv.Target("u"), o)
	prefix := "ssh " + srv.Target("u").String() + ": known_hosts " + o.KnownHostsFile + " line 2: "
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.HasSuffix(err.Error(), "(fix or remove line 2)") ||
		strings.Count(err.Error(), o.KnownHostsFile) != 1 {
		t.Fatalf("err = %v\nwant prefix %q", err, prefix)
	}
}
