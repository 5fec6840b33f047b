package config

import (
	"fmt"
	"strconv"
	"strings"
)

// scalar is one setting that can be overridden from the environment or a
// flag.
type scalar struct {
	key string
	set func(c *Config, val string) error
}

func scalars() []scalar {
	str := func(key string, field func(*Config) *string, check func(string) error) scalar {
		return scalar{key, func(c *Config, val string) error {
			if check != nil && val != "" {
				if err := check(val); err != nil {
					return err
				}
			}
			*field(c) = val
			return nil
		}}
	}
	enum := func(what string, allowed func() []string) func(string) error {
		return func(val string) error {
			for _, a := range allowed() {
				if val == a {
					return nil
				}
			}
			if s := suggest(val, allowed()); s != "" {
				return fmt.Errorf("unknown %s %q (did you mean %q?)", what, val, s)
			}
			return fmt.Errorf("unknown %s %q; use %s", what, val, oneOf(allowed()))
		}
	}
	dur := func(key string, field func(*Config) *Duration) scalar {
		return scalar{key, func(c *Config, val string) error {
			if val == "" {
				*field(c) = 0
				return nil
			}
			d, err := ParseDuration(val)
			if err != nil {
				return err
			}
			*field(c) = d
			return nil
		}}
	}
	return []scalar{
		str("state_dir", func(c *Config) *string { return &c.StateDir }, nil),
		str("backend.kind", func(c *Config) *string { return &c.Backend.Kind }, enum("backend kind", BackendKinds)),
		str("backend.url", func(c *Config) *string { return &c.Backend.URL }, checkNATSURLs),
		str("backend.creds", func(c *Config) *string { return &c.Backend.Creds }, nil),
		str("backend.user", func(c *Config) *string { return &c.Backend.User }, nil),
		str("backend.password", func(c *Config) *string { return &c.Backend.Password }, nil),
		str("backend.token", func(c *Config) *string { return &c.Backend.Token }, nil),
		str("backend.tls.ca", func(c *Config) *string { return &c.Backend.TLS.CA }, nil),
		str("backend.tls.cert", func(c *Config) *string { return &c.Backend.TLS.Cert }, nil),
		str("backend.tls.key", func(c *Config) *string { return &c.Backend.TLS.Key }, nil),
		{"backend.replicas", func(c *Config, val string) error {
			if val == "" {
				c.Backend.Replicas = 0
				return nil
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > MaxReplicas {
				return fmt.Errorf("replicas %q: want a number from 1 to %d", val, MaxReplicas)
			}
			c.Backend.Replicas = n
			return nil
		}},
		str("ssh.known_hosts", func(c *Config) *string { return &c.SSH.KnownHosts }, nil),
		str("ssh.host_key_policy", func(c *Config) *string { return &c.SSH.HostKeyPolicy }, enum("host key policy", HostKeyPolicies)),
		{"ssh.agent", func(c *Config, val string) error {
			if val == "" {
				c.SSH.Agent = nil
				return nil
			}
			b, err := parseBool(val)
			if err != nil {
				return err
			}
			c.SSH.Agent = &b
			return nil
		}},
		str("ssh.config", func(c *Config) *string { return &c.SSH.Config }, nil),
		dur("ssh.connect_timeout", func(c *Config) *Duration { return &c.SSH.ConnectTimeout }),
		dur("ssh.keepalive", func(c *Config) *Duration { return &c.SSH.Keepalive }),
	}
}

// ScalarKeys lists the keys Set accepts, in schema order. The conventional
// environment variable of a key is EnvName(key), e.g. NETOPS_BACKEND_KIND.
func ScalarKeys() []string {
	ss := scalars()
	keys := make([]string, len(ss))
	for i, s := range ss {
		keys[i] = s.key
	}
	return keys
}

// EnvName returns the environment variable for a scalar key:
// "backend.tls.ca" -> "NETOPS_BACKEND_TLS_CA".
func EnvName(key string) string {
	return "NETOPS_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// Set parses value for the scalar key and stores it, remembering source
// (e.g. "NETOPS_BACKEND_KIND" or "--backend-kind") so that later issues
// about key name it instead of a file line. An empty value unsets the key.
// Set checks the value alone; call Validate after the last Set to check how
// settings fit together (e.g. kind nats needs a url). On failure c is
// unchanged and the error is an *Error with one Issue.
func (c *Config) Set(key, value, source string) error {
	fail := func(msg string) error {
		return &Error{Issues: []Issue{{Source: source, Key: key, Msg: msg}}}
	}
	for _, s := range scalars() {
		if s.key != key {
			continue
		}
		if strings.ContainsAny(value, "\x00\r\n") {
			return fail("value contains a line break or NUL; give it on one line")
		}
		if err := s.set(c, value); err != nil {
			return fail(err.Error())
		}
		if source != "" {
			if c.overrides == nil {
				c.overrides = map[string]string{}
			}
			c.overrides[key] = source
		}
		return nil
	}
	keys := ScalarKeys()
	if s := suggest(key, keys); s != "" {
		return fail(fmt.Sprintf("unknown setting %q (did you mean %q?)", key, s))
	}
	return fail(fmt.Sprintf("unknown setting %q; settable keys are %s", key, strings.Join(keys, ", ")))
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "yes", "y", "on":
		return true, nil
	case "0", "f", "false", "no", "n", "off":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q; use true or false", s)
}
