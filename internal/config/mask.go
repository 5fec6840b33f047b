package config

import (
	"strings"
)

// Mask replaces secret values in Masked output.
const Mask = "********"

// Masked returns a copy of c with secrets replaced by Mask: backend.password,
// backend.token, passwords in URL userinfo (backend.url, transfer source and
// destination, service addresses), secret-looking URL query parameters,
// values of credential-bearing HTTP headers (Authorization, Cookie,
// X-Api-Key, ...) and "--password=..."-style exec arguments.
func (c *Config) Masked() *Config {
	m := c.clone()
	if m.Backend.Password != "" {
		m.Backend.Password = Mask
	}
	if m.Backend.Token != "" {
		m.Backend.Token = Mask
	}
	if m.Backend.URL != "" {
		parts := strings.Split(m.Backend.URL, ",")
		for i, p := range parts {
			parts[i] = redactURL(p)
		}
		m.Backend.URL = strings.Join(parts, ",")
	}
	for i := range m.Targets {
		m.Targets[i].Address = redactURL(m.Targets[i].Address)
	}
	for i := range m.Transfers {
		m.Transfers[i].Source = redactURL(m.Transfers[i].Source)
		m.Transfers[i].Destination = redactURL(m.Transfers[i].Destination)
	}
	for i := range m.Rules {
		r := &m.Rules[i]
		for k := range r.Headers {
			if secretName(k) {
				r.Headers[k] = Mask
			}
		}
		if r.Path != "" {
			r.Path = redactQuery(r.Path)
		}
		for j, a := range r.Command {
			if name, _, ok := strings.Cut(a, "="); ok && strings.HasPrefix(name, "-") && secretName(name) {
				r.Command[j] = name + "=" + Mask
			}
		}
	}
	return m
}

// secretName reports whether a header, parameter or flag name looks like it
// carries a credential.
func secretName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"auth", "cookie", "token", "secret", "key", "passw", "pwd", "session", "credential", "signature"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// redactURL masks the password in the userinfo of a URL-looking string and
// secret-looking query parameters, keeping the rest exactly as written.
// Strings that are not URLs are returned unchanged.
func redactURL(s string) string {
	i := strings.Index(s, "://")
	if i <= 0 || !isScheme(s[:i]) {
		return s
	}
	start := i + 3
	end := len(s)
	if j := strings.IndexAny(s[start:], "/?#"); j >= 0 {
		end = start + j
	}
	authority := s[start:end]
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo := authority[:at]
		if c := strings.Index(userinfo, ":"); c >= 0 {
			authority = userinfo[:c+1] + Mask + authority[at:]
		}
	}
	return s[:start] + authority + redactQuery(s[end:])
}

// redactQuery masks the values of secret-looking parameters in the query
// part of s (everything after the first '?', up to '#').
func redactQuery(s string) string {
	q := strings.Index(s, "?")
	if q < 0 {
		return s
	}
	query, frag := s[q+1:], ""
	if h := strings.Index(query, "#"); h >= 0 {
		query, frag = query[:h], query[h:]
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		if name, _, ok := strings.Cut(p, "="); ok && secretName(name) {
			params[i] = name + "=" + Mask
		}
	}
	return s[:q+1] + strings.Join(params, "&") + frag
}
