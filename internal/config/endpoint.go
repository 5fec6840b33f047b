package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// Endpoint kinds returned by ParseEndpoint.
const (
	EndpointLocal = "local"
	EndpointSFTP  = "sftp"
	EndpointHTTP  = "http"
)

// Endpoint is a parsed transfer source or destination.
type Endpoint struct {
	Kind     string // EndpointLocal, EndpointSFTP or EndpointHTTP
	User     string // sftp and http userinfo
	Password string // from URL userinfo; a secret
	Host     string // without brackets for IPv6
	Port     int    // 0 when not given (sftp: 22 or ssh config; http: scheme default)
	// Path is the local path, the remote path (may be relative to the remote
	// home for user@host:path, "" meaning the home itself), or for http the
	// URL path.
	Path string
	// URL is the full URL for http endpoints (as written).
	URL string
}

// Remote reports whether e is not a local path.
func (e Endpoint) Remote() bool { return e.Kind != EndpointLocal }

// ParseEndpoint parses a transfer source or destination: a local path,
// sftp://[user@]host[:port]/path, scp-style user@host:path, or an http(s)://
// URL.
func ParseEndpoint(s string) (Endpoint, error) {
	if strings.TrimSpace(s) == "" {
		return Endpoint{}, errors.New("empty location; write a local path, sftp://host/path, user@host:path or an http(s):// URL")
	}
	if strings.ContainsAny(s, "\x00\r\n") {
		return Endpoint{}, errors.New("location contains control characters; remove them")
	}
	if scheme, _, ok := strings.Cut(s, "://"); ok && isScheme(scheme) {
		u, err := url.Parse(s)
		if err != nil {
			return Endpoint{}, fmt.Errorf("invalid URL %q: %s", redactURL(s), urlErrText(err))
		}
		e := Endpoint{Host: u.Hostname()}
		switch strings.ToLower(u.Scheme) {
		case "sftp":
			e.Kind = EndpointSFTP
			e.Path = u.Path
			if e.Path == "" {
				return Endpoint{}, fmt.Errorf("invalid sftp URL %q: no path; write sftp://host/path", redactURL(s))
			}
		case "http", "https":
			e.Kind = EndpointHTTP
			e.Path = u.Path
			e.URL = s
		default:
			return Endpoint{}, fmt.Errorf("unsupported scheme %q in %q; use sftp://, http://, https:// or a local path", u.Scheme, redactURL(s))
		}
		if e.Host == "" {
			return Endpoint{}, fmt.Errorf("invalid URL %q: no host; write %s://host/path", redactURL(s), u.Scheme)
		}
		if err := CheckHost(e.Host); err != nil {
			return Endpoint{}, fmt.Errorf("invalid URL %q: %w", redactURL(s), err)
		}
		if p := u.Port(); p != "" {
			n, err := parsePort(p)
			if err != nil {
				return Endpoint{}, fmt.Errorf("invalid URL %q: %w", redactURL(s), err)
			}
			e.Port = n
		}
		if u.User != nil {
			e.User = u.User.Username()
			e.Password, _ = u.User.Password()
		}
		return e, nil
	}
	if user, host, path, ok := splitSCP(s); ok {
		if err := CheckHost(host); err != nil {
			return Endpoint{}, fmt.Errorf("invalid location %q: %w", s, err)
		}
		return Endpoint{Kind: EndpointSFTP, User: user, Host: host, Path: path}, nil
	}
	return Endpoint{Kind: EndpointLocal, Path: s}, nil
}

// splitSCP recognises user@host:path and user@[v6]:path.
func splitSCP(s string) (user, host, path string, ok bool) {
	at := strings.Index(s, "@")
	if at <= 0 || strings.ContainsAny(s[:at], "/: ") {
		return "", "", "", false
	}
	user, rest := s[:at], s[at+1:]
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return "", "", "", false
		}
		return user, rest[1:end], rest[end+2:], true
	}
	colon := strings.Index(rest, ":")
	if colon <= 0 || strings.ContainsAny(rest[:colon], "/ ") {
		return "", "", "", false
	}
	return user, rest[:colon], rest[colon+1:], true
}

func isScheme(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// CheckHost accepts an IP literal (IPv6 may carry a zone) or a valid DNS
// hostname.
func CheckHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if strings.Contains(h, ":") {
		return fmt.Errorf("invalid IP address %q", h)
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("invalid hostname %q: must be 1 to 253 characters", h)
	}
	labels := strings.Split(name, ".")
	allDigits := func(s string) bool {
		for _, r := range s {
			if r < '0' || r > '9' {
				return false
			}
		}
		return true
	}
	if allDigits(labels[len(labels)-1]) {
		return fmt.Errorf("invalid IP address %q; write four numbers 0-255 like 192.0.2.1", h)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("invalid hostname %q: each dot-separated part must be 1 to 63 characters", h)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("invalid hostname %q: a part cannot start or end with '-'", h)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("invalid hostname %q: %q is not allowed; use letters, digits, '-' and '.'", h, r)
			}
		}
	}
	return nil
}

// checkHostPort accepts host:port or [v6]:port; the port is required when
// needPort is set, else "host" alone is fine.
func checkHostPort(s string, needPort bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if needPort {
			return fmt.Errorf("invalid address %q; write host:port like 127.0.0.1:22 or [::1]:22", s)
		}
		return CheckHost(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	}
	if err := CheckHost(host); err != nil {
		return err
	}
	if _, err := parsePort(port); err != nil {
		return fmt.Errorf("invalid port %q in %q: must be a number between 1 and 65535", port, s)
	}
	return nil
}

// checkServiceAddress validates a service target address: a URL with scheme
// http, https, tcp, tls or nats and a host, or host:port.
func checkServiceAddress(s string) error {
	if scheme, _, ok := strings.Cut(s, "://"); ok && isScheme(scheme) {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("invalid URL %q: %s", redactURL(s), urlErrText(err))
		}
		switch strings.ToLower(u.Scheme) {
		case "http", "https", "tcp", "tls", "nats":
		default:
			return fmt.Errorf("unsupported scheme %q in %q; use http, https, tcp, tls or nats, or write host:port", u.Scheme, redactURL(s))
		}
		if u.Hostname() == "" {
			return fmt.Errorf("invalid URL %q: no host; write e.g. %s://127.0.0.1:8080", redactURL(s), u.Scheme)
		}
		if err := CheckHost(u.Hostname()); err != nil {
			return err
		}
		if p := u.Port(); p != "" {
			if _, err := parsePort(p); err != nil {
				return fmt.Errorf("invalid port %q in %q: must be a number between 1 and 65535", p, redactURL(s))
			}
		}
		return nil
	}
	if err := checkHostPort(s, true); err != nil {
		return fmt.Errorf("invalid service address %q; write a URL (https://host/path, tcp://host:port) or host:port", s)
	}
	return nil
}

// checkNATSURLs validates a comma-separated list of nats:// or tls:// URLs.
func checkNATSURLs(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty url; write nats://host:4222 (several separated by commas)")
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return fmt.Errorf("empty URL in list %q; remove the extra comma", redactURL(s))
		}
		u, err := url.Parse(item)
		if err != nil || !strings.Contains(item, "://") {
			return fmt.Errorf("invalid NATS URL %q; write nats://host:4222 or tls://host:4222", redactURL(item))
		}
		switch strings.ToLower(u.Scheme) {
		case "nats", "tls":
		default:
			return fmt.Errorf("unsupported scheme %q in %q; use nats:// or tls://", u.Scheme, redactURL(item))
		}
		if u.Hostname() == "" {
			return fmt.Errorf("invalid NATS URL %q: no host; write nats://host:4222", redactURL(item))
		}
		if err := CheckHost(u.Hostname()); err != nil {
			return err
		}
		if p := u.Port(); p != "" {
			if _, err := parsePort(p); err != nil {
				return fmt.Errorf("invalid port %q in %q: must be a number between 1 and 65535", p, redactURL(item))
			}
		}
	}
	return nil
}

func urlErrText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
