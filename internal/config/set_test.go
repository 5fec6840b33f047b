package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestScalarKeys(t *testing.T) {
	want := []string{"state_dir", "backend.kind", "backend.url", "backend.creds", "backend.user", "backend.password",
		"backend.token", "backend.tls.ca", "backend.tls.cert", "backend.tls.key", "backend.replicas", "ssh.known_hosts", "ssh.host_key_policy",
		"ssh.agent", "ssh.config", "ssh.connect_timeout", "ssh.keepalive"}
	if got := ScalarKeys(); !reflect.DeepEqual(got, want) {
		t.Errorf("ScalarKeys() = %v", got)
	}
	if got := EnvName("backend.tls.ca"); got != "NETOPS_BACKEND_TLS_CA" {
		t.Errorf("EnvName = %q", got)
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		key, value string
		check      func(c *Config) bool
	}{
		{"state_dir", "/tmp/state", func(c *Config) bool { return c.StateDir == "/tmp/state" }},
		{"backend.kind", "nats", func(c *Config) bool { return c.Backend.Kind == BackendNATS }},
		{"backend.url", "nats://127.0.0.1:4222,tls://[::1]:4223", func(c *Config) bool { return len(c.Backend.URLs()) == 2 }},
		{"backend.creds", "/etc/netops/x.creds", func(c *Config) bool { return c.Backend.Creds == "/etc/netops/x.creds" }},
		{"backend.user", "netops", func(c *Config) bool { return c.Backend.User == "netops" }},
		{"backend.password", " p a s s ", func(c *Config) bool { return c.Backend.Password == " p a s s " }},
		{"backend.token", "tok", func(c *Config) bool { return c.Backend.Token == "tok" }},
		{"backend.tls.ca", "/ca.pem", func(c *Config) bool { return c.Backend.TLS.CA == "/ca.pem" }},
		{"backend.tls.cert", "/c.pem", func(c *Config) bool { return c.Backend.TLS.Cert == "/c.pem" }},
		{"backend.tls.key", "/k.pem", func(c *Config) bool { return c.Backend.TLS.Key == "/k.pem" }},
		{"backend.replicas", "3", func(c *Config) bool { return c.Backend.Replicas == 3 }},
		{"ssh.known_hosts", "/kh", func(c *Config) bool { return c.SSH.KnownHosts == "/kh" }},
		{"ssh.host_key_policy", "accept-new", func(c *Config) bool { return c.SSH.HostKeyPolicy == HostKeyAcceptNew }},
		{"ssh.agent", "false", func(c *Config) bool { return c.SSH.Agent != nil && !*c.SSH.Agent }},
		{"ssh.agent", "YES", func(c *Config) bool { return c.SSH.Agent != nil && *c.SSH.Agent }},
		{"ssh.agent", "", func(c *Config) bool { return c.SSH.Agent == nil }},
		{"ssh.config", "/sshcfg", func(c *Config) bool { return c.SSH.Config == "/sshcfg" }},
		{"ssh.connect_timeout", "1m30s", func(c *Config) bool { return c.SSH.ConnectTimeout.D() == 90*time.Second }},
		{"ssh.keepalive", "500ms", func(c *Config) bool { return c.SSH.Keepalive.D() == 500*time.Millisecond }},
		{"ssh.keepalive", "", func(c *Config) bool { return c.SSH.Keepalive == 0 }},
		{"backend.kind", "", func(c *Config) bool { return c.Backend.Kind == "" }},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			c := &Config{SSH: SSH{Keepalive: DefaultKeepalive, Agent: ptr(true)}, Backend: Backend{Kind: BackendLocal}}
			if err := c.Set(tt.key, tt.value, EnvName(tt.key)); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if !tt.check(c) {
				t.Errorf("value not applied: %+v", exported(c))
			}
		})
	}
}

func TestSetRejectsBadValues(t *testing.T) {
	tests := []struct {
		key, value, msg string
	}{
		{"backend.kind", "redis", `unknown backend kind "redis"; use local or nats`},
		{"backend.kind", "NATS", `(did you mean "nats"?)`},
		{"backend.url", "http://127.0.0.1", `unsupported scheme "http"`},
		{"backend.url", "nats://", "no host"},
		{"backend.url", "nats://127.0.0.1:0", `invalid port "0"`},
		{"backend.replicas", "0", `replicas "0": want a number from 1 to 5`},
		{"backend.replicas", "three", `replicas "three": want a number from 1 to 5`},
		{"ssh.host_key_policy", "off", "use strict or accept-new"},
		{"ssh.agent", "maybe", `invalid boolean "maybe"; use true or false`},
		{"ssh.connect_timeout", "10", `missing unit; write e.g. "10s"`},
		{"ssh.connect_timeout", "0s", "must be greater than 0"},
		{"ssh.keepalive", "-5s", "must be greater than 0"},
		{"ssh.keepalive", "often", `invalid duration "often"`},
		{"state_dir", "/tmp/x\n", "line break"},
		{"backend.urls", "x", `unknown setting "backend.urls" (did you mean "backend.url"?)`},
		{"targets", "x", `unknown setting "targets"; settable keys are state_dir, backend.kind`},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			c := Default()
			before := exported(c.clone())
			err := c.Set(tt.key, tt.value, "NETOPS_X")
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Issues) != 1 {
				t.Fatalf("want *Error with one issue, got %v", err)
			}
			is := ce.Issues[0]
			if is.Source != "NETOPS_X" || is.Key != tt.key || !strings.Contains(is.Msg, tt.msg) {
				t.Errorf("got %+v, want message containing %q", is, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "NETOPS_X: "+tt.key+": ") {
				t.Errorf("Error() = %q", err.Error())
			}
			if !reflect.DeepEqual(exported(c), before) {
				t.Error("failed Set changed the config")
			}
		})
	}
}

func TestSetThenValidateNamesTheSource(t *testing.T) {
	c, err := Parse("netops.yaml", []byte("backend:\n  kind: local\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set("backend.kind", "nats", "NETOPS_BACKEND_KIND"); err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil || err.Error() != "NETOPS_BACKEND_KIND: backend.kind: backend kind nats needs backend.url; set it to nats://host:4222 (several separated by commas)" {
		t.Fatalf("Validate = %v", err)
	}
	if err := c.Set("backend.url", "nats://127.0.0.1:4222", "--backend-url"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after fixing = %v", err)
	}
	// a cross-field problem on a key from the file still points at the file
	if err := c.Set("backend.password", "pw", "NETOPS_BACKEND_PASSWORD"); err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "NETOPS_BACKEND_PASSWORD: backend.password: password is set without backend.user") {
		t.Errorf("Validate = %v", err)
	}
	// issues about keys that are only in the file keep the file position
	c2, _ := Parse("netops.yaml", []byte("backend:\n  kind: nats\n  url: nats://127.0.0.1\n"))
	if err := c2.Set("backend.kind", "local", ""); err != nil {
		t.Fatal(err)
	}
	err = c2.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "netops.yaml:3:3: backend.url: url is only used by backend kind nats") {
		t.Errorf("Validate = %v", err)
	}
}

func TestSetOnDefaultWithoutFile(t *testing.T) {
	c := Default()
	for _, kv := range [][2]string{{"backend.kind", "nats"}, {"backend.url", "nats://127.0.0.1:4222"}, {"backend.token", "t"}} {
		if err := c.Set(kv[0], kv[1], EnvName(kv[0])); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if m := c.Masked(); m.Backend.Token != Mask {
		t.Errorf("token not masked: %q", m.Backend.Token)
	}
}
