package sshconn_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    sshconn.Target
		wantErr string
	}{
		{in: "host", want: sshconn.Target{Host: "host"}},
		{in: "user@host", want: sshconn.Target{User: "user", Host: "host"}},
		{in: "host:2222", want: sshconn.Target{Host: "host", Port: 2222}},
		{in: "user@127.0.0.1:2222", want: sshconn.Target{User: "user", Host: "127.0.0.1", Port: 2222}},
		{in: "[::1]:22", want: sshconn.Target{Host: "::1", Port: 22}},
		{in: "[::1]", want: sshconn.Target{Host: "::1"}},
		{in: "u@[fe80::1]:2200", want: sshconn.Target{User: "u", Host: "fe80::1", Port: 2200}},
		{in: "::1", want: sshconn.Target{Host: "::1"}},
		{in: "ssh://backup@nas:2022", want: sshconn.Target{User: "backup", Host: "nas", Port: 2022}},
		{in: "a@b@host", want: sshconn.Target{User: "a@b", Host: "host"}},
		{in: "", wantErr: "empty SSH target"},
		{in: "@host", wantErr: "empty user"},
		{in: "user@", wantErr: "empty host"},
		{in: "host:", wantErr: "invalid port"},
		{in: "host:0", wantErr: "invalid port"},
		{in: "host:65536", wantErr: "invalid port"},
		{in: "host:ssh", wantErr: "invalid port"},
		{in: "[::1", wantErr: "missing ]"},
		{in: "[::1]x", wantErr: "unexpected"},
		{in: "ho st", wantErr: "invalid host name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := sshconn.ParseTarget(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTarget(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseTarget(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			// String round-trips.
			back, err := sshconn.ParseTarget(got.String())
			if err != nil || back != got {
				t.Fatalf("ParseTarget(%q.String()=%q) = %+v, %v", tt.in, got.String(), back, err)
			}
		})
	}
}

var quoteCases = []string{
	"plain", "", "with space", "it's", "''", `"double"`, "$HOME", "`id`", "$(id)",
	"new\nline", "tab\tchar", "-leading-dash", "--", "back\\slash", "semi;colon", "a|b&c",
	"*glob?[x]", "~user", "#hash", "ünïcödé", "trailing\\", "'", "!bang", "{a,b}", "a=b", "=x",
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, arg := range quoteCases {
		q := sshconn.Quote(arg)
		got, err := sshtest.SplitShell(q)
		if err != nil {
			t.Errorf("SplitShell(Quote(%q) = %q): %v", arg, q, err)
			continue
		}
		if len(got) != 1 || got[0] != arg {
			t.Errorf("SplitShell(Quote(%q) = %q) = %q, want one word", arg, q, got)
		}
	}
	// Several arguments joined as Run does.
	var parts []string
	for _, a := range quoteCases {
		parts = append(parts, sshconn.Quote(a))
	}
	got, err := sshtest.SplitShell(strings.Join(parts, " "))
	if err != nil || !reflect.DeepEqual(got, quoteCases) {
		t.Fatalf("joined round trip = %q, %v", got, err)
	}
}

// TestQuoteRealShell checks Quote against the system's /bin/sh: the shell
// must see exactly the original arguments.
func TestQuoteRealShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	var parts []string
	for _, a := range quoteCases {
		parts = append(parts, sshconn.Quote(a))
	}
	script := `for a in ` + strings.Join(parts, " ") + `; do printf '%s\0' "$a"; done`
	out, err := exec.Command(sh, "-c", script).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !reflect.DeepEqual(got, quoteCases) {
		t.Fatalf("sh saw %q\nwant        %q", got, quoteCases)
	}

	// As the first word (the command name), as Run sends it: sh -c "$cmd".
	// Unquoted, A=b would be an assignment and =x a zsh expansion.
	dir := t.TempDir()
	for _, name := range []string{"A=b", "=x", "{a,b}", "!bang"} {
		script := "#!/bin/sh\nprintf '%s\\0' \"" + name + "\" \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		argv := []string{name, "arg=1", "=y"}
		var q []string
		for _, a := range argv {
			q = append(q, sshconn.Quote(a))
		}
		cmd := exec.Command(sh, "-c", strings.Join(q, " "))
		cmd.Env = append(os.Environ(), "PATH="+dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sh -c %q: %v", strings.Join(q, " "), err)
		}
		if got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"); !reflect.DeepEqual(got, argv) {
			t.Fatalf("sh -c %q ran %q, want %q", strings.Join(q, " "), got, argv)
		}
	}
}

func TestParseSSHConfig(t *testing.T) {
	const cfg = `# netops test config
Host web1 web2
    HostName 10.0.0.%h
    User deploy
    IdentityFile ~/.ssh/web_key

Host *.lab !bad.lab
  Port 2200
  ProxyJump jump@bastion:2222
  User labuser

Host alias
  HostName=127.0.0.1
  Port = 2022
  IdentityFile "/keys/with space"
  IdentityFile /keys/second

Host direct
  ProxyJump none

Match host 127.0.0.1
  User matched

Match exec "true"
  User never

Host *
  User fallback
  Port 22
  IdentityFile ~/.ssh/default_key
  ProxyJump default-jump
`
	c, err := sshconn.ParseSSHConfig("config", []byte(cfg), "/home/u")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host string
		want sshconn.HostConfig
	}{
		{"web1", sshconn.HostConfig{HostName: "10.0.0.web1", User: "deploy", Port: 22,
			IdentityFiles: []string{"~/.ssh/web_key", "~/.ssh/default_key"}, ProxyJump: "default-jump"}},
		{"a.lab", sshconn.HostConfig{Port: 2200, User: "labuser", ProxyJump: "jump@bastion:2222",
			IdentityFiles: []string{"~/.ssh/default_key"}}},
		// Negated pattern: bad.lab does not get the *.lab block.
		{"bad.lab", sshconn.HostConfig{Port: 22, User: "fallback", ProxyJump: "default-jump",
			IdentityFiles: []string{"~/.ssh/default_key"}}},
		// First obtained value wins; Match host sees the HostName.
		{"alias", sshconn.HostConfig{HostName: "127.0.0.1", Port: 2022, User: "matched", ProxyJump: "default-jump",
			IdentityFiles: []string{"/keys/with space", "/keys/second", "~/.ssh/default_key"}}},
		{"direct", sshconn.HostConfig{Port: 22, User: "fallback", ProxyJump: "none",
			IdentityFiles: []string{"~/.ssh/default_key"}}},
		{"WEB2", sshconn.HostConfig{HostName: "10.0.0.WEB2", User: "deploy", Port: 22,
			IdentityFiles: []string{"~/.ssh/web_key", "~/.ssh/default_key"}, ProxyJump: "default-jump"}},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got := c.Resolve(tt.host, "")
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Resolve(%q) =\n %+v\nwant\n %+v", tt.host, got, tt.want)
			}
		})
	}
}

// TestSSHConfigProxyAndKnownHostsKeywords: ProxyJump and ProxyCommand,
// the first obtained wins (as OpenSSH); IdentitiesOnly, UserKnownHostsFile
// (first file) and HostKeyAlias; Match final holds on the single pass.
func TestSSHConfigProxyAndKnownHostsKeywords(t *testing.T) {
	cfg := `Host jumpfirst
  ProxyJump j1
Host cmdfirst
  ProxyCommand nc -X connect %h %p
Host *
  ProxyJump j2
  ProxyCommand ssh -W %h:%p other
Host only
  IdentitiesOnly yes
  UserKnownHostsFile ~/.ssh/kh_only /etc/second
  HostKeyAlias OnlyAlias
Match final host only
  User finaluser
Match canonical host only
  Port 2222
`
	c, err := sshconn.ParseSSHConfig("config", []byte(cfg), "/home/u")
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]sshconn.HostConfig{
		"jumpfirst": {ProxyJump: "j1"},
		"cmdfirst":  {ProxyCommand: "nc -X connect %h %p"},
		"only": {ProxyJump: "j2", IdentitiesOnly: true, UserKnownHostsFile: "~/.ssh/kh_only",
			HostKeyAlias: "OnlyAlias", User: "finaluser"},
	} {
		if got := c.Resolve(host, ""); !reflect.DeepEqual(got, want) {
			t.Errorf("Resolve(%q) =\n %+v\nwant\n %+v", host, got, want)
		}
	}
}

func TestParseSSHConfigErrors(t *testing.T) {
	for _, tt := range []struct{ cfg, want string }{
		{"Host\n", "cfg:1: Host needs at least one pattern"},
		{"Host x\n  Port abc\n", "cfg:2: Port: invalid port \"abc\""},
		{"Host x\n  User \"unterminated\n", "cfg:2: unterminated quote"},
		{"Host x\n  HostName\n", "cfg:2: hostname needs a value"},
		{"Match host\n", "cfg:1: Match host needs an argument"},
	} {
		_, err := sshconn.ParseSSHConfig("cfg", []byte(tt.cfg), "/home/u")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSSHConfig(%q) error = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestSSHConfigInclude(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("conf.d/a.conf", "Host inc\n  HostName 127.0.0.9\n")
	write("config", "Include conf.d/*.conf\nHost *\n  User everyone\n")
	c, err := sshconn.LoadSSHConfig("", home)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Resolve("inc", "")
	if got.HostName != "127.0.0.9" || got.User != "everyone" {
		t.Fatalf("Resolve(inc) = %+v", got)
	}
	// A missing file is an empty config; "none" reads nothing.
	for _, f := range []string{filepath.Join(home, "missing"), "none"} {
		c, err := sshconn.LoadSSHConfig(f, home)
		if err != nil || !reflect.DeepEqual(c.Resolve("inc", ""), sshconn.HostConfig{}) {
			t.Fatalf("LoadSSHConfig(%q) = %+v, %v", f, c.Resolve("inc", ""), err)
		}
	}
}

func TestOptionsFromConfig(t *testing.T) {
	c := config.Default().SSH
	c.IdentityFiles = []string{"~/.ssh/id_x", "/abs/key"}
	c.Fingerprints = map[string]string{"h:22": "SHA256:abc"}
	o := sshconn.OptionsFromConfig(c, func(string) string { return "" }, "/home/u")
	if o.KnownHostsFile != "/home/u/.ssh/known_hosts" || o.ConfigFile != "/home/u/.ssh/config" ||
		o.HostKeyPolicy != "strict" || !o.UseAgent || o.ConnectTimeout.String() != "10s" || o.KeepAlive.String() != "15s" ||
		!reflect.DeepEqual(o.IdentityFiles, []string{"/home/u/.ssh/id_x", "/abs/key"}) || o.Fingerprints["h:22"] != "SHA256:abc" {
		t.Fatalf("OptionsFromConfig = %+v", o)
	}
	f := false
	c.Agent = &f
	c.Config = "none"
	if o := sshconn.OptionsFromConfig(c, nil, "/home/u"); o.UseAgent || o.ConfigFile != "none" {
		t.Fatalf("agent false / config none: %+v", o)
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"auth", &sshconn.Error{Target: "h:22", Msg: "authentication failed", Kind: sshconn.ErrAuth}, false},
		{"host key changed", &sshconn.Error{Target: "h:22", Kind: sshconn.ErrHostKeyChanged}, false},
		{"host key unknown", fmt.Errorf("x: %w", sshconn.ErrHostKeyUnknown), false},
		{"exec rejected", sshconn.ErrExecRejected, false},
		{"exit status", &sshconn.ExitError{Status: 1}, false},
		{"canceled", fmt.Errorf("dial: %w", context.Canceled), false},
		{"deadline", context.DeadlineExceeded, false},
		{"unreachable", &sshconn.Error{Kind: sshconn.ErrUnreachable, Err: syscall.ECONNREFUSED}, true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"eof", fmt.Errorf("read packet: %w", io.EOF), true},
		{"unexpected eof", io.ErrUnexpectedEOF, true},
		{"sftp connection lost", fmt.Errorf("write: %w", sftp.ErrSSHFxConnectionLost), true},
		{"epipe", syscall.EPIPE, true},
		{"io timeout", os.ErrDeadlineExceeded, true},
		{"forwarding prohibited", &ssh.OpenChannelError{Reason: ssh.Prohibited}, false},
		{"channel connect failed", &ssh.OpenChannelError{Reason: ssh.ConnectionFailed}, true},
		{"permission denied", &sftp.StatusError{Code: 3}, false},
		{"unknown", errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := sshconn.Retryable(tt.err); got != tt.want {
			t.Errorf("Retryable(%s: %v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestExitErrorMessage(t *testing.T) {
	e := &sshconn.ExitError{Target: "u@h:22", Argv: []string{"sha256sum", "--", "/x"}, Status: 1,
		Stderr: []byte("sha256sum: /x: No such file or directory\nmore\n")}
	want := "ssh u@h:22: sha256sum exited with status 1: sha256sum: /x: No such file or directory ..."
	if e.Error() != want {
		t.Fatalf("got  %q\nwant %q", e.Error(), want)
	}
	if !sshconn.ExecUnavailable(&sshconn.ExitError{Status: 127}) || sshconn.ExecUnavailable(e) ||
		!sshconn.ExecUnavailable(fmt.Errorf("x: %w", sshconn.ErrExecRejected)) {
		t.Fatal("ExecUnavailable")
	}
}
