// Package sshconn sets up SSH client connections the way OpenSSH users expect:
// keys from identity files and ssh-agent, ~/.ssh/config Host aliases (HostName,
// Port, User, IdentityFile, ProxyJump), keepalives, and host keys verified
// against known_hosts (strict by default, accept-new and a pinned SHA256
// fingerprint opt-in; a changed host key is always fatal).
//
// On top of a connection it offers a tuned SFTP client (Client.SFTP) and
// remote command execution with safely quoted argv (Client.Run).
//
// Errors read well to a user and can be tested with errors.Is against
// ErrHostKeyUnknown, ErrHostKeyChanged, ErrAuth and ErrUnreachable;
// Retryable tells a retry loop which failures are worth another attempt.
package sshconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/netops-dev/netops/internal/config"
)

// Host key policies (Options.HostKeyPolicy).
const (
	// PolicyStrict accepts only host keys already in known_hosts.
	PolicyStrict = "strict"
	// PolicyAcceptNew records the key of an unknown host in known_hosts and
	// accepts it; a known host must still present a known key.
	PolicyAcceptNew = "accept-new"
	// PolicyFingerprint accepts only the pinned Options.Fingerprint (or the
	// entry of Options.Fingerprints for the host:port) and ignores known_hosts.
	PolicyFingerprint = "fingerprint"
)

// DefaultPort is the SSH port used when neither the target nor ssh_config
// gives one.
const DefaultPort = 22

// Sentinel errors; test with errors.Is. Errors returned by this package carry
// a full message (see Error) and wrap one of these when it applies.
var (
	// ErrHostKeyUnknown: the server's host key is not in known_hosts (policy
	// strict) or no fingerprint is pinned (policy fingerprint).
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrHostKeyChanged: known_hosts (or the pin) holds a different key for
	// the host. Always fatal; never retried.
	ErrHostKeyChanged = errors.New("host key mismatch")
	// ErrAuth: the server rejected every authentication method we offered, or
	// we had none to offer.
	ErrAuth = errors.New("authentication failed")
	// ErrUnreachable: the TCP connection (or the jump host's forwarding)
	// could not be established: refused, timed out, no route, unknown name.
	ErrUnreachable = errors.New("host unreachable")
	// ErrExecRejected: the server refused the exec request (e.g. an
	// SFTP-only account). See ExecUnavailable.
	ErrExecRejected = errors.New("remote command execution not allowed")
)

// Target is an SSH destination as the user wrote it. Host may be an
// ssh_config Host alias; Port 0 means "from ssh_config, else 22"; User ""
// means "from ssh_config, else the local user".
type Target struct {
	User string
	Host string
	Port int
}

// String returns "user@host:port" with the parts that are set ("host",
// "user@host", "host:port", "[::1]:2222").
func (t Target) String() string {
	h := t.Host
	if t.Port != 0 {
		h = net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	} else if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if t.User != "" {
		return t.User + "@" + h
	}
	return h
}

// ParseTarget parses "host", "user@host", "host:port", "user@host:port",
// "[::1]:2222", "[::1]", a bare IPv6 address ("::1", no port) and
// "ssh://user@host:port".
func ParseTarget(s string) (Target, error) {
	orig := s
	s = strings.TrimPrefix(s, "ssh://")
	s = strings.TrimSuffix(s, "/")
	var t Target
	if s == "" {
		return t, fmt.Errorf("empty SSH target; write host, user@host or user@host:port")
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		t.User, s = s[:i], s[i+1:]
		if t.User == "" {
			return Target{}, fmt.Errorf("SSH target %q: empty user before @", orig)
		}
	}
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return Target{}, fmt.Errorf("SSH target %q: missing ] after IPv6 address", orig)
		}
		t.Host, s = s[1:end], s[end+1:]
		if s != "" {
			p, ok := strings.CutPrefix(s, ":")
			if !ok {
				return Target{}, fmt.Errorf("SSH target %q: unexpected %q after ]", orig, s)
			}
			port, err := parsePort(p)
			if err != nil {
				return Target{}, fmt.Errorf("SSH target %q: %w", orig, err)
			}
			t.Port = port
		}
	case strings.Count(s, ":") > 1:
		t.Host = s // bare IPv6 address, no port
	default:
		host, p, found := strings.Cut(s, ":")
		t.Host = host
		if found {
			port, err := parsePort(p)
			if err != nil {
				return Target{}, fmt.Errorf("SSH target %q: %w", orig, err)
			}
			t.Port = port
		}
	}
	if t.Host == "" {
		return Target{}, fmt.Errorf("SSH target %q: empty host", orig)
	}
	if strings.ContainsAny(t.Host, " \t\r\n/\\'\"") {
		return Target{}, fmt.Errorf("SSH target %q: invalid host name %q", orig, t.Host)
	}
	return t, nil
}

func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid port %q: want a number from 1 to 65535", p)
	}
	return n, nil
}

// Options configure Dial. The zero value is usable: strict host key checking
// against ~/.ssh/known_hosts, ~/.ssh/config read if present, default
// identity files (~/.ssh/id_ed25519, id_ecdsa, id_rsa) when none is given.
type Options struct {
	// KnownHostsFile is the known_hosts file; "" -> ~/.ssh/known_hosts. A
	// missing file means "no host known" (accept-new creates it, 0600 in a
	// 0700 directory). An ssh_config UserKnownHostsFile for the host (its
	// first file) takes its place for that host.
	KnownHostsFile string
	// GlobalKnownHostsFile is the system-wide known_hosts file, consulted
	// read-only with every policy but fingerprint: a host it knows with
	// another key is ErrHostKeyChanged, never recorded anew. "" ->
	// /etc/ssh/ssh_known_hosts (missing is fine), "none" -> not consulted.
	GlobalKnownHostsFile string
	// HostKeyPolicy is PolicyStrict (default), PolicyAcceptNew or
	// PolicyFingerprint.
	HostKeyPolicy string
	// Fingerprint pins the final target's host key ("SHA256:..." as printed
	// by ssh-keygen -lf). When set it decides alone, whatever the policy.
	Fingerprint string
	// Fingerprints pins host keys by "host:port" (the resolved HostName and
	// port, as in config ssh.fingerprints); used for the target when
	// Fingerprint is empty, and for jump hosts.
	Fingerprints map[string]string
	// IdentityFiles are private key files tried before those from ssh_config.
	// A leading ~/ is expanded with HomeDir. When neither these nor
	// ssh_config name any, the OpenSSH defaults that exist are used.
	IdentityFiles []string
	// Password is offered with the "password" and "keyboard-interactive"
	// methods when set, to the final target only (never to jump hosts).
	Password string
	// UseAgent offers the keys of the ssh-agent at Getenv("SSH_AUTH_SOCK"),
	// after the identity files. The agent is used during Dial only (its
	// connection is closed when Dial returns).
	UseAgent bool
	// ConfigFile is the ssh_config file: "" -> ~/.ssh/config (missing is
	// fine), "none" -> read no file.
	ConfigFile string
	// ProxyJump overrides ssh_config ProxyJump for the target: a comma
	// separated chain of [user@]host[:port]; "none" disables jumping.
	ProxyJump string
	// ConnectTimeout bounds the TCP connect plus the SSH handshake of each
	// hop; 0 -> 10s.
	ConnectTimeout time.Duration
	// KeepAlive sends keepalive@openssh.com requests at this interval; when
	// three intervals pass without a reply the connection is closed and
	// pending operations fail. 0 disables keepalives.
	KeepAlive time.Duration
	// Getenv reads SSH_AUTH_SOCK, HOME, USER and LOGNAME; nil -> an empty
	// environment (the CLI passes os.Getenv).
	Getenv func(string) string
	// HomeDir expands ~ in paths and locates ~/.ssh; "" -> Getenv("HOME"),
	// else the home directory of the OS user. The local user name (default
	// remote user) is Getenv("USER"), Getenv("LOGNAME"), else the OS user.
	HomeDir string
	// Dialer makes the TCP connection to the first hop; nil -> a
	// net.Dialer. Later hops are reached through the previous one.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// OptionsFromConfig turns the ssh section of the netops config into Options.
// Paths starting with ~/ are expanded with home. The config's fingerprints
// (keyed by host:port) become Options.Fingerprints.
func OptionsFromConfig(c config.SSH, getenv func(string) string, home string) Options {
	o := Options{
		KnownHostsFile: expandHome(c.KnownHosts, home),
		HostKeyPolicy:  c.HostKeyPolicy,
		UseAgent:       c.Agent == nil || *c.Agent,
		ConfigFile:     c.Config,
		ConnectTimeout: c.ConnectTimeout.D(),
		KeepAlive:      c.Keepalive.D(),
		Getenv:         getenv,
		HomeDir:        home,
	}
	if o.ConfigFile != "none" {
		o.ConfigFile = expandHome(o.ConfigFile, home)
	}
	for _, f := range c.IdentityFiles {
		o.IdentityFiles = append(o.IdentityFiles, expandHome(f, home))
	}
	if len(c.Fingerprints) > 0 {
		o.Fingerprints = make(map[string]string, len(c.Fingerprints))
		for k, v := range c.Fingerprints {
			o.Fingerprints[k] = v
		}
	}
	return o
}

// Client is an established SSH connection to a target, possibly through jump
// hosts. It is safe for concurrent use (several SFTP sessions and commands on
// one connection). Close releases everything, jump connections included.
type Client struct {
	client *ssh.Client
	jumps  []*ssh.Client // in dial order; closed in reverse after client
	closer []func() error
	name   string // "user@host:port" for messages
	addr   string // "host:port"

	stopKeepAlive chan struct{}
	keepAliveDone chan struct{}
	closeOnce     sync.Once
	closeErr      error

	mu     sync.Mutex
	deadBy error // set when keepalive declared the peer dead
}

// SSH returns the underlying *ssh.Client (for sessions and port forwarding).
func (c *Client) SSH() *ssh.Client { return c.client }

// Addr returns the resolved "host:port" the client is connected to.
func (c *Client) Addr() string { return c.addr }

// sftpDefaults are the options of every SFTP session before the caller's.
func sftpDefaults() []sftp.ClientOption {
	return []sftp.ClientOption{
		sftp.MaxPacket(32768),
		sftp.UseConcurrentReads(true),
		sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(64),
	}
}

// String returns "user@host:port" as used in error messages, or
// "user@alias (host:port)" when an ssh_config alias was resolved.
func (c *Client) String() string { return c.name }

// SFTP opens an SFTP session tuned for throughput: 32 KiB packets, concurrent
// reads and writes (requests pipelined by ReadFrom/WriteTo), 64 requests in
// flight per file. opts are applied after these defaults and may override
// them.
func (c *Client) SFTP(opts ...sftp.ClientOption) (*sftp.Client, error) {
	sc, err := sftp.NewClient(c.client, append(sftpDefaults(), opts...)...)
	if err != nil {
		return nil, c.wrapErr("open SFTP session", err)
	}
	return sc, nil
}

// ExitError is a remote command that ran and exited non-zero (or was killed
// by a signal).
type ExitError struct {
	Target string   // "user@host:port" (see Client.String)
	Argv   []string // the command as given to Run
	Status int      // exit status; -1 when killed by a signal
	Signal string   // signal name without "SIG" when killed, else ""
	Stderr []byte   // up to 64 KiB of the command's standard error
}

func (e *ExitError) Error() string {
	name := "command"
	if len(e.Argv) > 0 {
		name = e.Argv[0]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ssh %s: %s", e.Target, name)
	if e.Signal != "" {
		fmt.Fprintf(&b, " killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, " exited with status %d", e.Status)
		if e.Status == 127 {
			b.WriteString(" (command not found)")
		}
	}
	if msg := strings.TrimSpace(string(e.Stderr)); msg != "" {
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i] + " ..."
		}
		fmt.Fprintf(&b, ": %s", msg)
	}
	return b.String()
}

// ExecUnavailable reports whether err means the remote side cannot run the
// command at all: exec refused by the server (ErrExecRejected) or the
// command is not found / not executable (exit status 127 or 126). Callers
// use it to fall back to another method (e.g. read back instead of a remote
// sha256sum).
func ExecUnavailable(err error) bool {
	if errors.Is(err, ErrExecRejected) {
		return true
	}
	var ee *ExitError
	return errors.As(err, &ee) && (ee.Status == 127 || ee.Status == 126)
}

// SessionRefused reports whether err is the server refusing to open one
// more session on the connection (OpenSSH: more than MaxSessions, 10 by
// default, at once): a limit of the moment, not a lack of exec.
func SessionRefused(err error) bool {
	var oce *ssh.OpenChannelError
	return errors.As(err, &oce) && (oce.Reason == ssh.Prohibited || oce.Reason == ssh.ResourceShortage)
}

const maxStderr = 64 << 10

// Run runs argv on the server and returns its standard output. Each argument
// is quoted with Quote, so the remote login shell (assumed POSIX: sh, bash,
// dash, zsh, ksh) sees exactly argv. A non-zero exit returns the output read
// so far and an *ExitError carrying the start of stderr; a refused exec
// returns an error wrapping ErrExecRejected. Cancelling ctx returns at once
// with ctx's error; the command is sent SIGKILL and its session closed, but
// a server that ignores the signal (OpenSSH often does) lets it run to its
// end.
func (c *Client) Run(ctx context.Context, argv []string) ([]byte, error) {
	p, err := c.start(ctx, argv, false)
	if err != nil {
		return nil, err
	}
	return p.Wait(ctx)
}

// Process is a command started on the server by Start.
type Process struct {
	c      *Client
	argv   []string
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout bytes.Buffer
	stderr *limitedBuffer
	done   chan error
}

// Start starts argv on the server (quoted as by Run) with its standard
// input open: write to Stdin, close it, then Wait for the output. Errors
// are those of Run; Kill abandons the command.
func (c *Client) Start(ctx context.Context, argv []string) (*Process, error) {
	return c.start(ctx, argv, true)
}

func (c *Client) start(ctx context.Context, argv []string, withStdin bool) (*Process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("ssh %s: run: empty command", c.name)
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("ssh %s: run %s: argument %d contains a NUL byte, which cannot be passed to a remote command", c.name, Quote(argv[0]), i)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sess, err := c.client.NewSession()
	if err != nil {
		return nil, c.wrapErr("open session for "+argv[0], err)
	}
	p := &Process{c: c, argv: argv, sess: sess, stderr: &limitedBuffer{max: maxStderr}, done: make(chan error, 1)}
	sess.Stdout = &p.stdout
	sess.Stderr = p.stderr
	if withStdin {
		if p.stdin, err = sess.StdinPipe(); err != nil {
			sess.Close()
			return nil, c.wrapErr("run "+argv[0], err)
		}
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = Quote(a)
	}
	if err := sess.Start(strings.Join(quoted, " ")); err != nil {
		sess.Close()
		if strings.Contains(err.Error(), "ssh: command") && strings.HasSuffix(err.Error(), "failed") {
			return nil, &Error{Target: c.name, Msg: "run " + argv[0] + ": the server refused to execute commands", Kind: ErrExecRejected}
		}
		return nil, c.wrapErr("run "+argv[0], err)
	}
	go func() { p.done <- sess.Wait() }()
	return p, nil
}

// Stdin is the command's standard input (Start only). Close it to send EOF.
func (p *Process) Stdin() io.WriteCloser { return p.stdin }

// Wait waits for the command to exit and returns its standard output, with
// the errors of Run. Cancelling ctx kills the command (see Run).
func (p *Process) Wait(ctx context.Context) ([]byte, error) {
	defer p.sess.Close()
	var err error
	select {
	case err = <-p.done:
	case <-ctx.Done():
		select {
		case err = <-p.done: // finished as ctx ended: report the result
		default:
			// Best effort: OpenSSH may refuse signal requests ("session
			// signalling requires privilege separation") and keeps the
			// channel until the command exits, so do not wait for it; the
			// session is released when the command ends or the client is
			// closed.
			p.Kill()
			return nil, fmt.Errorf("ssh %s: run %s: %w", p.c.name, p.argv[0], ctx.Err())
		}
	}
	if err != nil {
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			x := &ExitError{Target: p.c.name, Argv: p.argv, Status: ee.ExitStatus(), Stderr: p.stderr.Bytes()}
			if ee.Signal() != "" {
				x.Status, x.Signal = -1, ee.Signal()
			}
			return p.stdout.Bytes(), x
		}
		return p.stdout.Bytes(), p.c.wrapErr("run "+p.argv[0], err)
	}
	return p.stdout.Bytes(), nil
}

// Kill sends the command SIGKILL and closes its session without waiting
// (best effort, see Run).
func (p *Process) Kill() {
	_ = p.sess.Signal(ssh.SIGKILL)
	_ = p.sess.Close()
}

type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

// Quote quotes arg for a POSIX shell. Arguments made only of characters
// that are never special (letters, digits and @%+:,./_-) are returned as
// is (= is quoted: a first word A=b would be an assignment, and zsh expands
// =word; { } ! ~ # * ? [ and the like are quoted too); anything else is wrapped in single quotes, a single quote inside being
// written as quote, backslash, quote, quote:
//
//	Quote("a b")  == `'a b'`
//	Quote("it's") == `'it'\''s'`
//	Quote("")     == `''`
func Quote(arg string) string {
	if arg == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("@%+:,./_-", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return arg
	}
	return "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
}

// Wait blocks until the connection ends and returns why (nil after Close).
// A connection declared dead by keepalive returns that error.
func (c *Client) Wait() error {
	err := c.client.Wait()
	if dead := c.deadErr(); dead != nil {
		return dead
	}
	select {
	case <-c.stopKeepAlive:
		return nil // closed by us
	default:
	}
	if err == nil {
		return &Error{Target: c.name, Msg: "connection closed by the server", Kind: ErrUnreachable}
	}
	return c.wrapErr("connection lost", err)
}

// Close closes the connection and the jump host connections behind it.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.stopKeepAlive)
		err := c.client.Close()
		for i := len(c.jumps) - 1; i >= 0; i-- {
			_ = c.jumps[i].Close()
		}
		for _, f := range c.closer {
			_ = f()
		}
		if c.keepAliveDone != nil {
			<-c.keepAliveDone
		}
		if err != nil && !errors.Is(err, net.ErrClosed) && c.deadErr() == nil {
			c.closeErr = fmt.Errorf("ssh %s: close: %w", c.name, err)
		}
	})
	return c.closeErr
}

func (c *Client) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadBy
}

// wrapErr wraps an error from an operation on the established connection,
// preferring the keepalive verdict when the peer was declared dead.
func (c *Client) wrapErr(op string, err error) error {
	if dead := c.deadErr(); dead != nil {
		return fmt.Errorf("%s: %w", op, dead)
	}
	return &Error{Target: c.name, Msg: op + ": " + err.Error(), Err: err}
}

// Error is an error from this package: "ssh TARGET: MSG". It unwraps to Kind
// (one of the sentinel errors, when one applies) and to the underlying error.
type Error struct {
	Target string // "host:port", "user@host:port" or "user@alias (host:port)"
	Msg    string
	Kind   error
	Err    error
}

func (e *Error) Error() string { return "ssh " + e.Target + ": " + e.Msg }

// Unwrap returns the sentinel kind and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Retryable reports whether another attempt may succeed: true for network
// failures (refused, reset, timeouts, connection lost, dead peer), false for
// authentication and host key failures, a refused exec, remote commands that
// exited non-zero, forwarding refused by a jump host, cancellation, and
// anything unrecognised.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, ErrAuth), errors.Is(err, ErrHostKeyChanged), errors.Is(err, ErrHostKeyUnknown),
		errors.Is(err, ErrExecRejected), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return false
	}
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) && (oce.Reason == ssh.Prohibited || oce.Reason == ssh.UnknownChannelType) {
		return false // a jump host that refuses forwarding will keep refusing
	}
	return isNetworkError(err)
}
