package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHDPath is where Debian's openssh-server installs the daemon.
const SSHDPath = "/usr/sbin/sshd"

// startupWait bounds how long StartOpenSSH waits for sshd to listen (a
// readiness wait, not an assertion about speed).
const startupWait = 30 * time.Second

type opensshProc struct {
	cmd        *exec.Cmd
	logFile    string
	stderrFile string
	probes     int64 // "Connection from" lines caused by the readiness probe
	done       chan struct{}
	once       sync.Once
}

func (p *opensshProc) stop() {
	p.once.Do(func() {
		// Let the per-connection sshd processes of closed connections exit
		// and be reaped by the listener first: killed early they would be
		// reparented to init and may linger as zombies.
		pid := p.cmd.Process.Pid
		children := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			b, err := os.ReadFile(children)
			if err != nil || len(strings.TrimSpace(string(b))) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

func (p *opensshProc) log() string {
	b, _ := os.ReadFile(p.logFile)
	return string(b)
}

func (p *opensshProc) stderr() string {
	b, _ := os.ReadFile(p.stderrFile)
	return string(b)
}

func (p *opensshProc) count(substr string) int64 {
	return int64(strings.Count(p.log(), substr))
}

// StartOpenSSH runs the system OpenSSH daemon (/usr/sbin/sshd -D) on a free
// 127.0.0.1 port with a fresh ed25519 host key, cfg.AuthorizedKeys as its
// AuthorizedKeysFile, public key authentication only, and the sftp subsystem
// internal-sftp. The login user is the user running the test (root logs in
// with PermitRootLogin prohibit-password). It skips the test when sshd is not
// installed. Password, Root, NoExec, NoSFTP and HostKey are not supported
// and fail the test; Connections and Execs count sshd log lines.
func StartOpenSSH(t testing.TB, cfg Config) *Server {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Skipf("OpenSSH server not installed (%s missing; apt-get install openssh-server)", SSHDPath)
	}
	switch {
	case cfg.Password != "":
		t.Fatal("sshtest: StartOpenSSH does not support Config.Password")
	case cfg.Root != "":
		t.Fatal("sshtest: StartOpenSSH does not support Config.Root (sessions start in the user's home directory)")
	case cfg.NoExec || cfg.NoSFTP:
		t.Fatal("sshtest: StartOpenSSH does not support NoExec or NoSFTP")
	case cfg.HostKey != nil || len(cfg.ExtraHostKeys) > 0:
		t.Fatal("sshtest: StartOpenSSH generates its own host key; Config.HostKey is not supported")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: current user: %v", err)
	}
	if cfg.User != "" && cfg.User != u.Username {
		t.Fatalf("sshtest: StartOpenSSH logs in as the current user %q, not %q", u.Username, cfg.User)
	}
	if os.Geteuid() == 0 {
		// Privilege separation directory, required when sshd runs as root.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Skipf("sshd needs /run/sshd as root: %v", err)
		}
	}

	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	WritePrivateKey(t, hostKeyFile, priv)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	var ak []byte
	for _, k := range cfg.AuthorizedKeys {
		ak = append(ak, ssh.MarshalAuthorizedKey(k)...)
	}
	akFile := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(akFile, ak, 0o600); err != nil {
		t.Fatal(err)
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("sshtest: %v", err)
		}
		p, err := launchSSHD(dir, port, hostKeyFile, akFile)
		if err != nil {
			lastErr = err
			if errors.Is(err, errAddrInUse) {
				continue
			}
			t.Fatalf("sshtest: %v", err)
		}
		s := &Server{
			t:          t,
			Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Host:       "127.0.0.1",
			Port:       port,
			HostKey:    signer.PublicKey(),
			HostSigner: signer,
			User:       u.Username,
			cfg:        cfg,
			openssh:    p,
		}
		t.Cleanup(func() {
			p.stop()
			if t.Failed() {
				t.Logf("sshd log (%s):\n%s%s", p.logFile, p.log(), p.stderr())
			}
		})
		return s
	}
	t.Fatalf("sshtest: %v", lastErr)
	return nil
}

// connLog starts the line sshd (LogLevel VERBOSE) logs per TCP connection.
const connLog = "Connection from "

var errAddrInUse = errors.New("address already in use")

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func launchSSHD(dir string, port int, hostKey, authKeys string) (*opensshProc, error) {
	conf := fmt.Sprintf(`# sshtest
Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
PidFile none
Subsystem sftp internal-sftp
LogLevel VERBOSE
UseDNS no
MaxStartups 100:30:200
MaxSessions 64
MaxAuthTries 10
AllowTcpForwarding yes
PrintMotd no
PrintLastLog no
`, port, hostKey, authKeys)
	confFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	logFile := filepath.Join(dir, fmt.Sprintf("sshd-%d.log", port))
	cmd := exec.Command(SSHDPath, "-D", "-f", confFile, "-E", logFile)
	// sshd's own stdout/stderr (config errors) go to a file: no copying
	// goroutine, so reading it while sshd runs is race-free.
	stderr, err := os.Create(filepath.Join(dir, fmt.Sprintf("sshd-%d.stderr", port)))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", SSHDPath, err)
	}
	p := &opensshProc{cmd: cmd, logFile: logFile, stderrFile: stderr.Name(), done: make(chan struct{})}
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(p.done)
	}()
	ready := fmt.Sprintf("Server listening on 127.0.0.1 port %d", port)
	deadline := time.Now().Add(startupWait)
	for {
		select {
		case <-p.done:
			out := p.log() + p.stderr()
			if strings.Contains(out, "Address already in use") {
				return nil, fmt.Errorf("sshd on port %d: %w", port, errAddrInUse)
			}
			return nil, fmt.Errorf("sshd exited (%v) before listening:\n%s", waitErr, out)
		default:
		}
		if strings.Contains(p.log(), ready) {
			if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				// Wait for sshd to log the probe so Connections can discount it.
				for p.count(connLog) == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				c.Close()
				p.probes = p.count(connLog)
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("sshd did not listen on port %d within %s:\n%s%s", port, startupWait, p.log(), p.stderr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
