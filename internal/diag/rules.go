package diag

import (
	"os"
	"slices"
	"strings"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/probe"
)

// DefaultAppliesTo is which target types a check kind applies to when a rule
// does not say (applies_to), following the reference chapter: connectivity and
// DNS for hosts and services, port scans for hosts and networks, discovery for
// networks, latency and bandwidth for hosts.
func DefaultAppliesTo(check string) []string {
	switch check {
	case config.CheckICMP, config.CheckDNS, config.CheckTCP, config.CheckTraceroute:
		return []string{config.TargetHost, config.TargetService}
	case config.CheckHTTP, config.CheckNATS:
		return []string{config.TargetService}
	case config.CheckPortscan:
		return []string{config.TargetHost, config.TargetNetwork}
	case config.CheckDiscover:
		return []string{config.TargetNetwork}
	case config.CheckLatency, config.CheckBandwidth:
		return []string{config.TargetHost}
	}
	return []string{config.TargetHost, config.TargetNetwork, config.TargetService}
}

// Applies reports whether rule r runs on target t when the target does not
// list its rules explicitly.
func Applies(r config.Rule, t config.Target) bool {
	types := r.AppliesTo
	if len(types) == 0 {
		types = DefaultAppliesTo(r.Check)
	}
	if !slices.Contains(types, t.Type) {
		return false
	}
	// Checks that need something the address does not have are skipped rather
	// than failed: HTTP needs an http(s) URL, TCP a port.
	switch r.Check {
	case config.CheckHTTP:
		if len(r.AppliesTo) == 0 && !isHTTPURL(t.Address) {
			return false
		}
	case config.CheckNATS:
		if len(r.AppliesTo) == 0 && !strings.HasPrefix(t.Address, "nats://") {
			return false
		}
	case config.CheckTCP:
		if _, ok := probe.Port(t.Address); !ok && r.Port == 0 {
			return false
		}
	}
	return true
}

func isHTTPURL(a string) bool {
	return strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://")
}

// BuiltinRules are used when the config defines no rules, so that
// `netops diag <address>` does something sensible with no config at all.
func BuiltinRules() []config.Rule {
	loss20, loss60 := config.Percent(20), config.Percent(60)
	return []config.Rule{
		{Name: "ping", Check: config.CheckICMP, Count: 3, Interval: config.Duration(200 * time.Millisecond),
			Timeout:     config.Duration(2 * time.Second),
			Warn:        config.Threshold{RTT: config.Duration(100 * time.Millisecond), Loss: &loss20},
			Crit:        config.Threshold{RTT: config.Duration(500 * time.Millisecond), Loss: &loss60},
			Remediation: "Check that the host is up and that ICMP echo is not blocked by a firewall"},
		{Name: "dns", Check: config.CheckDNS, RecordType: "A",
			Remediation: "Check the name and its DNS records, and the resolver in /etc/resolv.conf"},
		{Name: "tcp", Check: config.CheckTCP, AppliesTo: []string{config.TargetService},
			Warn: config.Threshold{RTT: config.Duration(200 * time.Millisecond)},
			Crit: config.Threshold{RTT: config.Duration(time.Second)}},
		{Name: "http", Check: config.CheckHTTP,
			Warn: config.Threshold{RTT: config.Duration(time.Second), Days: 14},
			Crit: config.Threshold{RTT: config.Duration(5 * time.Second), Days: 3}},
		{Name: "ports", Check: config.CheckPortscan, AppliesTo: []string{config.TargetHost},
			Ports: config.PortsTop100, Severity: config.SeverityInfo},
		{Name: "discover", Check: config.CheckDiscover, MinAlive: 1},
		{Name: "nats", Check: config.CheckNATS,
			Warn:        config.Threshold{RTT: config.Duration(200 * time.Millisecond)},
			Crit:        config.Threshold{RTT: config.Duration(time.Second)},
			Remediation: "Check that nats-server (or netops server) runs with JetStream enabled and that the cluster routes are up (netops server status)"},
	}
}

// RuleNames lists the rules Plan would choose from: the config's, or the
// built-in ones when the config has none.
func RuleNames(cfg *config.Config) []string {
	rules := cfg.Rules
	if len(rules) == 0 {
		rules = BuiltinRules()
	}
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = r.Name
	}
	return names
}

// Check is one rule to run on one target.
type Check struct {
	Target config.Target
	Rule   config.Rule
}

// Plan lists the checks to run: for each target, its own rules when it names
// them, else every rule that applies to its type. Rules come from the config,
// or the built-in rules when the config has none. ruleFilter, when not empty,
// runs just the named rules, on every target whose type they apply to.
// Rules get their defaults filled in.
func Plan(cfg *config.Config, targets []config.Target, ruleFilter []string) []Check {
	rules := cfg.WithDefaults().Rules
	builtin := len(rules) == 0
	if builtin {
		tmp := &config.Config{Rules: BuiltinRules()}
		rules = tmp.WithDefaults().Rules
	}
	byName := map[string]config.Rule{}
	for _, r := range rules {
		byName[r.Name] = r
	}
	var checks []Check
	for _, t := range targets {
		var selected []config.Rule
		if len(ruleFilter) > 0 {
			// Rules named with --rule run on every target they apply to, even
			// one whose own list does not name them: the user asked for them.
			for i, name := range ruleFilter {
				if slices.Contains(ruleFilter[:i], name) {
					continue // --rule x --rule x runs x once
				}
				if r, ok := byName[name]; ok && (slices.Contains(t.Rules, name) || Applies(r, t)) {
					selected = append(selected, r)
				}
			}
		} else if len(t.Rules) > 0 {
			for _, name := range t.Rules {
				if r, ok := byName[name]; ok {
					selected = append(selected, r)
				}
			}
		} else {
			for _, r := range rules {
				if !Applies(r, t) {
					continue
				}
				// The built-in DNS rule only makes sense for names, not IP literals.
				if builtin && r.Check == config.CheckDNS && isIP(probe.Host(t.Address)) {
					continue
				}
				selected = append(selected, r)
			}
		}
		for _, r := range selected {
			if len(ruleFilter) > 0 && !slices.Contains(ruleFilter, r.Name) {
				continue
			}
			if r.CAFile != "" {
				if home, err := os.UserHomeDir(); err == nil {
					r.CAFile = config.ExpandHome(r.CAFile, home)
				}
			}
			checks = append(checks, Check{Target: t, Rule: r})
		}
	}
	return checks
}

// remediationFor is the advice shown for a failed check when its rule has none.
func remediationFor(reason string, t config.Target, r config.Rule) string {
	host := probe.Host(t.Address)
	switch reason {
	case probe.ReasonRefused:
		return "Nothing accepts connections there: start the service or check the port number"
	case probe.ReasonTimeout:
		return "No answer in time: check that " + host + " is up and that no firewall drops the traffic"
	case probe.ReasonUnreachable:
		return "No route to " + host + ": check routing, interfaces and the address"
	case probe.ReasonNXDomain:
		return "The name does not exist: check its spelling and the DNS zone"
	case probe.ReasonDNS:
		return "Name resolution failed: check the resolver (/etc/resolv.conf) and the DNS server"
	case probe.ReasonTLS:
		return "The TLS handshake failed: check the certificate chain, its names, and ca_file"
	case probe.ReasonTLSExpired:
		return "Renew the certificate of " + host
	case probe.ReasonStatus:
		return "The service answered with an unexpected HTTP status: check its logs"
	case probe.ReasonMismatch:
		return "The answer did not match what the rule expects: check the service and the rule's expect/answers"
	case probe.ReasonThreshold, probe.ReasonLoss:
		return "Measured values crossed the rule's limits: check load and the network path (netops diag " + t.Name + " --explain)"
	case probe.ReasonPermission:
		return "netops lacks a permission for this check: see the message for the fix"
	case probe.ReasonResource:
		return "This machine ran out of a resource (open files, ports): raise ulimit -n or lower concurrency"
	case probe.ReasonPolicy:
		return "A port that must be closed is open: stop the service or firewall the port"
	case probe.ReasonExit:
		return "The check program reported a failure: see its output"
	}
	return ""
}
