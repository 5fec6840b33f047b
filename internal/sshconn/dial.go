package sshconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// DefaultConnectTimeout applies when Options.ConnectTimeout is 0.
const DefaultConnectTimeout = 10 * time.Second

// keepAliveMissed is how many keepalive intervals may pass without a reply
// before the peer is declared dead (OpenSSH ServerAliveCountMax default).
const keepAliveMissed = 3

// hop is one resolved SSH connection to make.
type hop struct {
	user  string
	host  string // HostName to connect to, lower case
	port  int
	alias string // the name the user wrote (for messages), "" if same as host
	ids   []string

	identitiesOnly bool   // ssh_config IdentitiesOnly yes: no agent keys but those of ids
	proxyCommand   string // ssh_config ProxyCommand (unsupported), "" if none
	knownHosts     string // ssh_config UserKnownHostsFile (first), "" -> Options
	keyAlias       string // ssh_config HostKeyAlias, lower case, "" if none
	cfgErr         error  // an ssh_config setting for this host netops cannot honour
}

func (h hop) addr() string { return net.JoinHostPort(h.host, strconv.Itoa(h.port)) }

func (h hop) name() string { return h.user + "@" + h.addr() }

// label names the hop in messages: "user@host:port", or, when an ssh_config
// alias was resolved, "user@alias (host:port)".
func (h hop) label() string {
	if h.alias != "" {
		return h.user + "@" + h.alias + " (" + h.addr() + ")"
	}
	return h.name()
}

// where names the hop in host key and network messages: "host:port", or
// the label when an ssh_config alias was resolved.
func (h hop) where() string {
	if h.alias != "" {
		return h.label()
	}
	return h.addr()
}

// Dial connects to t: it resolves t through ssh_config, connects through the
// ProxyJump chain if any (each hop dialed through the previous one),
// verifies every host key with the policy, authenticates and starts
// keepalives. ctx bounds the whole dial; ConnectTimeout bounds each hop.
//
// Jump hosts take HostName, Port, User and IdentityFile from ssh_config too
// (their own ProxyJump is not followed); their host keys are checked like
// the target's (Options.Fingerprints applies, Options.Fingerprint does not).
// Authentication offers, in OpenSSH's order, Options.IdentityFiles, then
// ssh_config IdentityFile (or the OpenSSH default key files), then the
// agent's other keys (with ssh_config IdentitiesOnly yes only those whose
// IdentityFile.pub is present), then, on the final target only, the
// password.
//
// Host names are lower-cased, as OpenSSH does, before ssh_config and
// known_hosts see them. ssh_config ProxyCommand is not supported (Dial
// fails unless Options.ProxyJump is set); UserKnownHostsFile (its first
// file; not none or /dev/null) and HostKeyAlias are honoured;
// StrictHostKeyChecking is ignored: the host key policy comes from Options
// (the netops config) only. /etc/ssh/ssh_known_hosts (see
// Options.GlobalKnownHostsFile) is consulted read-only.
//
// Returned errors are *Error values wrapping ErrHostKeyUnknown,
// ErrHostKeyChanged, ErrAuth or ErrUnreachable when one applies; a ctx that
// ends first gives ctx's error.
func Dial(ctx context.Context, t Target, o Options) (*Client, error) {
	env := o.Getenv
	if env == nil {
		env = func(string) string { return "" }
	}
	home := o.HomeDir
	if home == "" {
		home = env("HOME")
	}
	if home == "" {
		if u, err := user.Current(); err == nil {
			home = u.HomeDir
		}
	}
	if t.Host == "" {
		return nil, fmt.Errorf("ssh: empty host")
	}
	switch o.HostKeyPolicy {
	case "", PolicyStrict, PolicyAcceptNew, PolicyFingerprint:
	default:
		return nil, fmt.Errorf("ssh %s: unknown host key policy %q; use %s, %s or %s", t, o.HostKeyPolicy, PolicyStrict, PolicyAcceptNew, PolicyFingerprint)
	}
	if err := validatePins(o); err != nil {
		return nil, fmt.Errorf("ssh %s: %w", t, err)
	}

	cfg, err := loadSSHConfig(o.ConfigFile, home)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", t, err)
	}
	localUser := env("USER")
	if localUser == "" {
		localUser = env("LOGNAME")
	}
	if localUser == "" {
		if u, err := user.Current(); err == nil {
			localUser = u.Username
		}
	}

	final, jumpSpec := resolveHop(cfg, t, localUser, home)
	if o.ProxyJump != "" {
		jumpSpec = o.ProxyJump
	}
	var hops []hop
	if jumpSpec != "" && !strings.EqualFold(jumpSpec, "none") {
		for _, js := range strings.Split(jumpSpec, ",") {
			jt, err := ParseTarget(strings.TrimSpace(js))
			if err != nil {
				return nil, fmt.Errorf("ssh %s: ProxyJump: %w", t, err)
			}
			h, _ := resolveHop(cfg, jt, localUser, home)
			if h.proxyCommand != "" {
				return nil, fmt.Errorf("ssh %s: jump host %s: ProxyCommand (from ssh_config) is not supported; use ProxyJump", t, h.label())
			}
			hops = append(hops, h)
		}
	}
	if final.proxyCommand != "" && o.ProxyJump == "" {
		return nil, fmt.Errorf("ssh %s: ProxyCommand (from ssh_config for %s) is not supported; use ProxyJump", t, final.label())
	}
	hops = append(hops, final)

	hk := &hostKeys{
		file:     expandHome(o.KnownHostsFile, home),
		global:   o.GlobalKnownHostsFile,
		policy:   o.HostKeyPolicy,
		pins:     o.Fingerprints,
		finalPin: o.Fingerprint,
	}
	switch hk.global {
	case "":
		hk.global = DefaultGlobalKnownHostsFile
	case "none":
		hk.global = ""
	default:
		hk.global = expandHome(hk.global, home)
	}
	if hk.file == "" {
		if home == "" {
			return nil, fmt.Errorf("ssh %s: no home directory to find ~/.ssh/known_hosts; set the known_hosts file", t)
		}
		hk.file = filepath.Join(home, ".ssh", "known_hosts")
	}
	if hk.policy == "" {
		hk.policy = PolicyStrict
	}
	for _, h := range hops {
		if h.cfgErr != nil {
			return nil, fmt.Errorf("ssh %s: %w", t, h.cfgErr)
		}
		if err := hk.load(hk.fileFor(h)); err != nil {
			return nil, fmt.Errorf("ssh %s: %w", t, err)
		}
	}

	auth, err := newAuthenticator(ctx, o, env, home)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", t, err)
	}
	// The agent is needed during authentication only: close it when Dial
	// returns, or as soon as ctx ends (a confirm-on-use agent waiting for
	// the user must not hold Dial past ctx).
	defer auth.close()
	stopAgent := context.AfterFunc(ctx, auth.close)
	defer stopAgent()

	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	c := &Client{
		name:          final.label(),
		addr:          final.addr(),
		stopKeepAlive: make(chan struct{}),
	}
	dialer := o.Dialer
	if dialer == nil {
		var d net.Dialer
		dialer = d.DialContext
	}
	fail := func(err error) (*Client, error) {
		for i := len(c.jumps) - 1; i >= 0; i-- {
			_ = c.jumps[i].Close()
		}
		for _, f := range c.closer {
			_ = f()
		}
		return nil, err
	}

	var prev *ssh.Client
	for i, h := range hops {
		isFinal := i == len(hops)-1
		cl, err := dialHop(ctx, dialer, prev, h, hk, auth, isFinal, timeout)
		if err != nil {
			if !isFinal {
				var e *Error
				if errors.As(err, &e) {
					e.Target += " (jump host for " + final.label() + ")"
				} else {
					err = fmt.Errorf("jump host for %s: %w", final.label(), err)
				}
			}
			return fail(err)
		}
		if isFinal {
			c.client = cl
		} else {
			c.jumps = append(c.jumps, cl)
		}
		prev = cl
	}
	if o.KeepAlive > 0 {
		c.keepAliveDone = make(chan struct{})
		go c.keepAlive(o.KeepAlive)
	}
	return c, nil
}

// resolveHop applies ssh_config to a target. It returns the hop and the
// ProxyJump value found for it.
//
// Host names are lower-cased (OpenSSH does the same) so that known_hosts,
// whose lookup is case-sensitive, and ssh_config see one spelling.
func resolveHop(cfg *SSHConfig, t Target, localUser, home string) (hop, string) {
	host := strings.ToLower(t.Host)
	hc := cfg.Resolve(host, t.User)
	h := hop{user: t.User, host: host, port: t.Port}
	if hc.HostName != "" {
		h.host = strings.ToLower(hc.HostName)
	}
	if h.host != host {
		h.alias = t.Host
	}
	if h.port == 0 {
		h.port = hc.Port
	}
	if h.port == 0 {
		h.port = DefaultPort
	}
	if h.user == "" {
		h.user = hc.User
	}
	if h.user == "" {
		h.user = localUser
	}
	for _, f := range hc.IdentityFiles {
		h.ids = append(h.ids, expandTokens(f, home, h, localUser))
	}
	h.identitiesOnly = hc.IdentitiesOnly
	if hc.ProxyCommand != "" && !strings.EqualFold(hc.ProxyCommand, "none") {
		h.proxyCommand = hc.ProxyCommand
	}
	if f := hc.UserKnownHostsFile; f != "" {
		switch {
		case strings.EqualFold(f, "none") || f == os.DevNull:
			h.cfgErr = fmt.Errorf("ssh_config sets UserKnownHostsFile %s for %s, which turns host key checking off; netops always checks host keys (policy from its own config): remove the setting for this host", f, h.label())
		case unsupportedToken(f) != "":
			h.cfgErr = fmt.Errorf("ssh_config UserKnownHostsFile %s for %s: token %s is not supported (use %%d %%h %%p %%r %%u or a plain path)", f, h.label(), unsupportedToken(f))
		default:
			h.knownHosts = expandTokens(f, home, h, localUser)
		}
	}
	h.keyAlias = strings.ToLower(hc.HostKeyAlias)
	return h, hc.ProxyJump
}

// unsupportedToken returns the first %-token expandTokens does not know
// ("%k"), or "".
func unsupportedToken(s string) string {
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		i++
		if !strings.ContainsRune("dhpru%", rune(s[i])) {
			return "%" + string(s[i])
		}
	}
	return ""
}

// expandTokens expands ~ and the ssh_config tokens %d %h %p %r %u %% in an
// IdentityFile value.
func expandTokens(s, home string, h hop, localUser string) string {
	s = expandHome(s, home)
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'd':
			b.WriteString(home)
		case 'h':
			b.WriteString(h.host)
		case 'p':
			b.WriteString(strconv.Itoa(h.port))
		case 'r':
			b.WriteString(h.user)
		case 'u':
			b.WriteString(localUser)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func expandHome(p, home string) string {
	if home == "" {
		return p
	}
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}

// dialHop makes the TCP (or forwarded) connection to h and runs the SSH
// handshake over it.
func dialHop(ctx context.Context, dialer func(context.Context, string, string) (net.Conn, error), via *ssh.Client, h hop, hk *hostKeys, auth *authenticator, isFinal bool, timeout time.Duration) (*ssh.Client, error) {
	addr := h.addr()
	where := h.where()
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var conn net.Conn
	var err error
	if via == nil {
		conn, err = dialer(hctx, "tcp", addr)
	} else {
		conn, err = dialVia(hctx, via, addr)
	}
	if err != nil {
		if cerr := ctxErr(ctx); cerr != nil {
			return nil, fmt.Errorf("ssh %s: %w", where, cerr)
		}
		return nil, unreachable(where, err, timeout)
	}
	// Bound the handshake: a deadline for the timeout, and closing the
	// connection when ctx is cancelled.
	deadline, _ := hctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(hctx, func() { _ = conn.Close() })
	// A hung agent (confirm-on-use) blocks the handshake; closing it when
	// the hop's time is up lets the handshake fail.
	stopAgent := context.AfterFunc(hctx, auth.close)
	defer stopAgent()

	check := hk.callback(h, isFinal)
	rec := &authRecord{}
	cc := &ssh.ClientConfig{
		User:              h.user,
		Auth:              auth.methods(h, rec, isFinal),
		HostKeyCallback:   check.verify,
		HostKeyAlgorithms: check.algorithms(),
		Timeout:           timeout,
	}
	sconn, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	stopped := stop()
	if err != nil {
		_ = conn.Close()
		switch {
		case check.err != nil:
			return nil, check.err
		case ctxErr(ctx) != nil:
			// ctx ended (its deadline may have fired as the connection's
			// deadline before ctx's own timer): report ctx's error.
			return nil, fmt.Errorf("ssh %s: %w", where, ctxErr(ctx))
		case strings.Contains(err.Error(), "unable to authenticate"),
			strings.Contains(err.Error(), "Too many authentication failures"):
			return nil, auth.failure(h, rec, isFinal)
		case strings.Contains(err.Error(), "no common algorithm for host key") && len(check.known) > 0:
			return nil, check.noCommonAlgorithm()
		case !stopped || isTimeout(err):
			return nil, &Error{Target: where, Msg: fmt.Sprintf("SSH handshake timed out after %s", timeout), Kind: ErrUnreachable, Err: err}
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
			return nil, &Error{Target: where, Msg: "connection closed by the server during the SSH handshake", Kind: ErrUnreachable, Err: err}
		}
		return nil, &Error{Target: where, Msg: "SSH handshake failed: " + strings.TrimPrefix(strings.TrimPrefix(err.Error(), "ssh: handshake failed: "), "ssh: "), Err: err}
	}
	if !stopped {
		// ctx ended right after the handshake: the connection is closed.
		_ = sconn.Close()
		if cerr := ctxErr(ctx); cerr != nil {
			return nil, fmt.Errorf("ssh %s: %w", where, cerr)
		}
		return nil, &Error{Target: where, Msg: fmt.Sprintf("SSH handshake timed out after %s", timeout), Kind: ErrUnreachable}
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sconn, chans, reqs), nil
}

// ctxErr returns ctx's error, or context.DeadlineExceeded when ctx's
// deadline has passed but its timer has not fired yet (the connection's
// deadline, set from the same instant, may fire first).
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// dialVia opens a direct-tcpip channel to addr through a jump client.
func dialVia(ctx context.Context, via *ssh.Client, addr string) (net.Conn, error) {
	return via.DialContext(ctx, "tcp", addr)
}

// unreachable turns a connect error into a short message wrapping
// ErrUnreachable: "connection refused", "connection timed out after 10s",
// "cannot resolve host.invalid".
func unreachable(addr string, err error, timeout time.Duration) error {
	msg := err.Error()
	var dnsErr *net.DNSError
	var openErr *ssh.OpenChannelError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		msg = "connection refused"
	case errors.As(err, &dnsErr):
		msg = "cannot resolve " + dnsErr.Name
		if dnsErr.IsNotFound {
			msg += ": no such host"
		}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		msg = fmt.Sprintf("connection timed out after %s", timeout)
	case errors.Is(err, syscall.EHOSTUNREACH):
		msg = "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		msg = "network is unreachable"
	case errors.As(err, &openErr):
		msg = "jump host could not connect: " + openErr.Message
		if openErr.Message == "" {
			msg = "jump host could not connect: " + openErr.Reason.String()
		}
	}
	return &Error{Target: addr, Msg: msg, Kind: ErrUnreachable, Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isNetworkError recognises failures of the transport that a new attempt
// (new connection) may overcome.
func isNetworkError(err error) bool {
	if errors.Is(err, ErrUnreachable) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, sftp.ErrSSHFxNoConnection) {
		return true
	}
	if isTimeout(err) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		return oce.Reason == ssh.ResourceShortage || oce.Reason == ssh.ConnectionFailed
	}
	return false
}

// keepAlive sends keepalive@openssh.com every interval; when no reply
// arrives within keepAliveMissed intervals it records the verdict and closes
// the connection so that every pending and later operation fails.
func (c *Client) keepAlive(interval time.Duration) {
	defer close(c.keepAliveDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.stopKeepAlive:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		wait := time.NewTimer(interval * keepAliveMissed)
		select {
		case <-c.stopKeepAlive:
			wait.Stop()
			return
		case err := <-reply:
			wait.Stop()
			if err != nil {
				// The connection is gone; Wait reports why.
				return
			}
		case <-wait.C:
			c.mu.Lock()
			c.deadBy = &Error{Target: c.name,
				Msg:  fmt.Sprintf("connection lost: no keepalive reply from the server in %s", interval*keepAliveMissed),
				Kind: ErrUnreachable, Err: os.ErrDeadlineExceeded}
			c.mu.Unlock()
			_ = c.client.Close()
			for i := len(c.jumps) - 1; i >= 0; i-- {
				_ = c.jumps[i].Close()
			}
			return
		}
	}
}
