// Package sshtest runs real SSH servers on loopback for tests: an in-process
// server (x/crypto/ssh server side, the pkg/sftp server as the sftp
// subsystem, a native sha256sum for exec, optional direct-tcpip forwarding
// for ProxyJump) started with Start, and the system OpenSSH sshd started
// with StartOpenSSH (skips when /usr/sbin/sshd is absent).
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/netops-dev/netops/internal/sshconn"
)

// Config configures a test server.
type Config struct {
	// HostKey is the server's host key; nil -> a fresh ed25519 key.
	HostKey ssh.Signer
	// ExtraHostKeys are further host keys (other types) the server offers;
	// the client picks among them by its HostKeyAlgorithms preference.
	ExtraHostKeys []ssh.Signer
	// AuthorizedKeys may log in by public key.
	AuthorizedKeys []ssh.PublicKey
	// User, when set, is the only user name accepted (in-process). For
	// StartOpenSSH the login user is always the user running the test.
	User string
	// Password, when set, is accepted by the password method (in-process
	// only).
	Password string
	// Root is the SFTP working directory (relative SFTP paths and "~/"
	// resolve under it) and the exec working directory; "" -> the test
	// process's working directory (in-process only).
	Root string
	// NoExec rejects every exec request (an SFTP-only account).
	NoExec bool
	// NoSFTP rejects the sftp subsystem.
	NoSFTP bool
	// AllowForwarding accepts direct-tcpip channels to loopback IP
	// addresses (used as a ProxyJump host). In-process only; sshd always
	// allows it.
	AllowForwarding bool
}

// Server is a running test SSH server.
type Server struct {
	Addr       string        // "127.0.0.1:PORT"
	Host       string        // "127.0.0.1"
	Port       int           // the listening port
	HostKey    ssh.PublicKey // the host key the server presents
	HostSigner ssh.Signer    // its private half
	User       string        // Config.User, or the local user for OpenSSH

	t    testing.TB
	cfg  Config
	ln   net.Listener
	conf *ssh.ServerConfig

	conns     atomic.Int64
	execs     atomic.Int64
	authFails atomic.Int64
	authTries atomic.Int64

	mu       sync.Mutex
	commands []string
	live     map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup

	openssh *opensshProc // non-nil for StartOpenSSH
}

// Start starts an in-process SSH server on 127.0.0.1:0 and stops it when
// the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	signer := cfg.HostKey
	if signer == nil {
		_, signer = NewKey(t)
	}
	s := &Server{t: t, cfg: cfg, HostSigner: signer, HostKey: signer.PublicKey(), User: cfg.User, live: map[net.Conn]struct{}{}}
	s.conf = &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.authTries.Add(1)
			if s.cfg.User != "" && c.User() != s.cfg.User {
				s.authFails.Add(1)
				return nil, fmt.Errorf("unknown user %q", c.User())
			}
			for _, k := range s.cfg.AuthorizedKeys {
				if string(k.Marshal()) == string(key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			s.authFails.Add(1)
			return nil, errors.New("public key not authorized")
		},
	}
	if cfg.Password != "" {
		s.conf.PasswordCallback = func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			s.authTries.Add(1)
			if (s.cfg.User == "" || c.User() == s.cfg.User) && string(pw) == s.cfg.Password {
				return &ssh.Permissions{}, nil
			}
			s.authFails.Add(1)
			return nil, errors.New("wrong password")
		}
	}
	s.conf.AddHostKey(signer)
	for _, k := range cfg.ExtraHostKeys {
		s.conf.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshtest: listen: %v", err)
	}
	s.ln = ln
	s.Addr = ln.Addr().String()
	s.Host = "127.0.0.1"
	s.Port = ln.Addr().(*net.TCPAddr).Port
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.Close)
	return s
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.live[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.conns.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.live, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serveConn(c)
		}()
	}
}

// Close stops the server and closes every connection (also run by
// t.Cleanup; safe to call twice).
func (s *Server) Close() {
	if s.openssh != nil {
		s.openssh.stop()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.live {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// DropConnections abruptly closes every open connection (the server keeps
// listening): "the server went away mid-transfer". In-process only.
func (s *Server) DropConnections() {
	if s.openssh != nil {
		s.t.Helper()
		s.t.Fatal("sshtest: DropConnections is not supported for OpenSSH; use cutproxy")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.live {
		c.Close()
	}
}

// Connections returns how many TCP connections the server accepted. For
// OpenSSH it counts the "Connection from" lines in sshd's log (minus
// StartOpenSSH's own readiness probe).
func (s *Server) Connections() int64 {
	if s.openssh != nil {
		return s.openssh.count(connLog) - s.openssh.probes
	}
	return s.conns.Load()
}

// Execs returns how many exec requests ran a command (rejected ones and
// NoExec do not count). For OpenSSH it counts "Starting session: command"
// log lines.
func (s *Server) Execs() int64 {
	if s.openssh != nil {
		return s.openssh.count("Starting session: command")
	}
	return s.execs.Load()
}

// AuthFailures returns how many authentication attempts were rejected
// (in-process only).
func (s *Server) AuthFailures() int64 { return s.authFails.Load() }

// AuthAttempts returns how many times a client offered a credential (a
// public key, signed or not, or a password), accepted or not (in-process
// only).
func (s *Server) AuthAttempts() int64 { return s.authTries.Load() }

// Commands returns the exec command lines received, in order (in-process
// only).
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Target returns the sshconn target for user on this server (user "" ->
// Server.User).
func (s *Server) Target(user string) sshconn.Target {
	if user == "" {
		user = s.User
	}
	return sshconn.Target{User: user, Host: s.Host, Port: s.Port}
}

// Fingerprint returns the SHA256 fingerprint of the host key.
func (s *Server) Fingerprint() string { return ssh.FingerprintSHA256(s.HostKey) }

// KnownHostsLine returns the known_hosts line for the server
// ("[127.0.0.1]:PORT ssh-ed25519 AAAA...").
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{s.Addr}, s.HostKey)
}

// WriteKnownHosts writes a known_hosts file (0600) naming the given servers
// into a fresh temporary directory and returns its path.
func WriteKnownHosts(t testing.TB, servers ...*Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	var data []byte
	for _, s := range servers {
		data = append(data, s.KnownHostsLine()+"\n"...)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// NewKey returns a fresh ed25519 key pair as an ssh.Signer (and its raw
// private key).
func NewKey(t testing.TB) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, signer
}

// GenerateKey creates an ed25519 client key pair in a fresh temporary
// directory: the private key in OpenSSH format (0600) at the returned
// identity path, the public key at path+".pub".
func GenerateKey(t testing.TB) (identityFile string, signer ssh.Signer) {
	t.Helper()
	priv, signer := NewKey(t)
	identityFile = filepath.Join(t.TempDir(), "id_ed25519")
	WritePrivateKey(t, identityFile, priv)
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	if err := os.WriteFile(identityFile+".pub", pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return identityFile, signer
}

// WritePrivateKey writes key in OpenSSH PEM format to path (0600).
func WritePrivateKey(t testing.TB, path string, key any) {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) serveConn(c net.Conn) {
	sconn, chans, reqs, err := ssh.NewServerConn(c, s.conf)
	if err != nil {
		return
	}
	defer sconn.Close()
	go func() {
		for r := range reqs {
			if r.WantReply {
				_ = r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}()
	var wg sync.WaitGroup
	connDone := make(chan struct{})
	defer wg.Wait()
	defer close(connDone) // runs before wg.Wait: ends forwardings of this connection
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serveSession(ch, creqs)
			}()
		case "direct-tcpip":
			if !s.cfg.AllowForwarding {
				_ = nc.Reject(ssh.Prohibited, "port forwarding is disabled")
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.forward(nc, connDone)
			}()
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
}

// forward serves a direct-tcpip channel to a loopback IP address.
func (s *Server) forward(nc ssh.NewChannel, connDone <-chan struct{}) {
	var msg struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	ip := net.ParseIP(msg.Host)
	if ip == nil || !ip.IsLoopback() {
		_ = nc.Reject(ssh.Prohibited, "sshtest forwards only to loopback IP addresses")
		return
	}
	dst, err := net.Dial("tcp", net.JoinHostPort(msg.Host, strconv.Itoa(int(msg.Port))))
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		dst.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-connDone: // the SSH connection ended: drop the forwarding
			ch.Close()
			dst.Close()
		case <-finished:
		}
	}()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(dst, ch)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(ch, dst)
		_ = ch.CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
	ch.Close()
	dst.Close()
}

func (s *Server) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		switch r.Type {
		case "exec":
			var cmd struct{ Command string }
			if s.cfg.NoExec || ssh.Unmarshal(r.Payload, &cmd) != nil {
				_ = r.Reply(false, nil)
				continue
			}
			_ = r.Reply(true, nil)
			s.execs.Add(1)
			s.mu.Lock()
			s.commands = append(s.commands, cmd.Command)
			s.mu.Unlock()
			go ssh.DiscardRequests(reqs)
			status := s.exec(cmd.Command, ch, ch, ch.Stderr())
			sendExit(ch, status)
			return
		case "subsystem":
			var sub struct{ Name string }
			if s.cfg.NoSFTP || ssh.Unmarshal(r.Payload, &sub) != nil || sub.Name != "sftp" {
				_ = r.Reply(false, nil)
				continue
			}
			_ = r.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			var opts []sftp.ServerOption
			if s.cfg.Root != "" {
				opts = append(opts, sftp.WithServerWorkingDirectory(s.cfg.Root))
			}
			// pkg/sftp may still write a response after Serve returned;
			// serialise its writes with our final CloseWrite.
			gc := &guardedChannel{ch: ch}
			srv, err := sftp.NewServer(gc, opts...)
			if err != nil {
				gc.exit(1)
				return
			}
			status := 0
			if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
				status = 1
			}
			srv.Close()
			gc.exit(status)
			return
		case "env", "pty-req", "shell":
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		default:
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}
}

func sendExit(ch ssh.Channel, status int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(status))
	_, _ = ch.SendRequest("exit-status", false, b[:])
	_ = ch.CloseWrite()
}

// guardedChannel is the sftp server's view of a session channel: writes are
// serialised with the final exit-status/CloseWrite and fail after it.
type guardedChannel struct {
	ch     ssh.Channel
	mu     sync.Mutex
	closed bool
}

func (g *guardedChannel) Read(p []byte) (int, error) { return g.ch.Read(p) }

func (g *guardedChannel) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, io.ErrClosedPipe
	}
	return g.ch.Write(p)
}

func (g *guardedChannel) Close() error { return g.ch.Close() }

func (g *guardedChannel) exit(status int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		sendExit(g.ch, status)
	}
}
