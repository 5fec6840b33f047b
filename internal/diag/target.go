package diag

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/netops-dev/netops/internal/config"
)

// TargetError is a target argument that is neither a configured target nor a
// usable address. The CLI maps it to a usage error.
type TargetError struct {
	Arg    string
	Reason string
}

func (e *TargetError) Error() string {
	if e.Arg == "" {
		return e.Reason
	}
	return fmt.Sprintf("unknown target %q: %s", e.Arg, e.Reason)
}

// Selection says which targets to check.
type Selection struct {
	Args []string // target names from the config or ad-hoc addresses
	Tags []string // every configured target with one of these tags
	All  bool     // every configured target
}

// SelectTargets resolves a selection against the config. With no arguments,
// tags or --all, every configured target is selected.
func SelectTargets(cfg *config.Config, sel Selection) ([]config.Target, error) {
	var out []config.Target
	seen := map[string]bool{}
	add := func(t config.Target) {
		if !seen[t.Name] {
			seen[t.Name] = true
			out = append(out, t)
		}
	}
	if sel.All || (len(sel.Args) == 0 && len(sel.Tags) == 0) {
		for _, t := range cfg.Targets {
			add(t)
		}
	}
	for _, tag := range sel.Tags {
		found := false
		for _, t := range cfg.Targets {
			if slices.Contains(t.Tags, tag) {
				add(t)
				found = true
			}
		}
		if !found {
			return nil, &TargetError{Reason: fmt.Sprintf("no configured target has the tag %q", tag)}
		}
	}
	for _, arg := range sel.Args {
		if t, ok := cfg.Target(arg); ok {
			add(t)
			continue
		}
		t, err := AdHocTarget(arg)
		if err != nil {
			return nil, err
		}
		add(t)
	}
	if len(out) == 0 {
		return nil, &TargetError{Arg: "", Reason: "no targets: name one (an IP, hostname, CIDR or URL) or add targets to the config"}
	}
	return out, nil
}

// AdHocTarget infers a target from an address typed on the command line:
// a CIDR is a network, a URL or host:port is a service, an IP or hostname is a host.
// The string is only ever parsed, never passed to a shell.
func AdHocTarget(arg string) (config.Target, error) {
	t := config.Target{Name: arg, Address: arg}
	switch {
	case arg == "":
		return t, &TargetError{Arg: arg, Reason: "empty target"}
	case strings.Contains(arg, "://"):
		u, err := url.Parse(arg)
		if err != nil || u.Hostname() == "" {
			return t, &TargetError{Arg: arg, Reason: "not a valid URL (write e.g. https://host/path or tcp://host:port)"}
		}
		switch u.Scheme {
		case "http", "https", "tcp", "tls", "nats":
		default:
			return t, &TargetError{Arg: arg, Reason: "unsupported URL scheme " + strconv.Quote(u.Scheme) + " (use http, https, tcp, tls or nats)"}
		}
		if !validHost(u.Hostname()) {
			return t, &TargetError{Arg: arg, Reason: "the URL's host is not a valid IP address or hostname"}
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return t, &TargetError{Arg: arg, Reason: "port must be a number from 1 to 65535"}
			}
		}
		t.Type = config.TargetService
	case strings.Contains(arg, "/") && isIP(arg[:strings.Index(arg, "/")]):
		p, err := netip.ParsePrefix(arg)
		if err != nil {
			return t, &TargetError{Arg: arg, Reason: "not a valid CIDR (write e.g. 192.0.2.0/24)"}
		}
		t.Type = config.TargetNetwork
		t.Address = p.Masked().String()
	default:
		if host, port, err := net.SplitHostPort(arg); err == nil {
			n, perr := strconv.Atoi(port)
			if perr != nil || n < 1 || n > 65535 {
				return t, &TargetError{Arg: arg, Reason: "port must be a number from 1 to 65535"}
			}
			if !validHost(host) {
				return t, &TargetError{Arg: arg, Reason: "not a valid IP address or hostname"}
			}
			t.Type = config.TargetService
			t.Address = "tcp://" + net.JoinHostPort(host, port)
			return t, nil
		}
		if !validHost(arg) {
			return t, &TargetError{Arg: arg, Reason: "not a configured target, and not an IP address, hostname, CIDR or URL"}
		}
		t.Type = config.TargetHost
		t.Address = strings.Trim(arg, "[]")
	}
	return t, nil
}

// validHost accepts IP literals and hostnames, by the config's own rule.
func validHost(h string) bool {
	return config.CheckHost(strings.Trim(h, "[]")) == nil
}

// isIP reports whether the host of a target address is an IP literal.
func isIP(host string) bool {
	_, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil
}
