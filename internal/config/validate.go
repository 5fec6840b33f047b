package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"path"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
)

// Allowed values, as functions so that callers cannot change them.

// BackendKinds lists the valid backend.kind values.
func BackendKinds() []string { return []string{BackendLocal, BackendNATS} }

// HostKeyPolicies lists the valid ssh.host_key_policy values.
func HostKeyPolicies() []string { return []string{HostKeyStrict, HostKeyAcceptNew} }

// TargetTypes lists the valid target types.
func TargetTypes() []string { return []string{TargetHost, TargetNetwork, TargetService} }

// Checks lists the valid rule check kinds.
func Checks() []string {
	return []string{CheckICMP, CheckTCP, CheckHTTP, CheckDNS, CheckLatency, CheckPortscan,
		CheckDiscover, CheckBandwidth, CheckTraceroute, CheckExec, CheckNATS}
}

// Severities lists the valid rule severities.
func Severities() []string { return []string{SeverityInfo, SeverityWarning, SeverityCritical} }

// RecordTypes lists the valid DNS record types.
func RecordTypes() []string { return []string{"A", "AAAA", "CNAME", "MX", "TXT", "NS", "PTR", "SRV"} }

// Modes lists the valid transfer modes.
func Modes() []string { return []string{ModeCopy, ModeSync, ModeBisync} }

// Methods lists the valid transfer methods.
func Methods() []string { return []string{"scp", "sftp", "rsync", "wget", "curl", "local"} }

// Verifies lists the valid transfer verify values.
func Verifies() []string { return []string{VerifySHA256, VerifyNone} }

// Overflows lists the valid queue overflow policies.
func Overflows() []string { return []string{OverflowDropOldest, OverflowReject} }

// Validate re-runs whole-config validation, e.g. after Set. It returns nil or
// an *Error listing every issue.
func (c *Config) Validate() error {
	issues := c.validate(nil)
	if len(issues) == 0 {
		return nil
	}
	sortIssues(issues)
	return &Error{Issues: issues}
}

type validator struct {
	c      *Config
	failed map[string]bool
	issues []Issue
}

func (c *Config) validate(failed map[string]bool) []Issue {
	v := &validator{c: c, failed: failed}
	v.backend()
	v.ssh()
	rules := v.rules()
	v.targets(rules)
	v.transfers()
	v.ipc()
	return v.issues
}

// add records an issue about key unless decoding that key (or a parent)
// already failed, which would only repeat the same problem.
func (v *validator) add(key, msg string) {
	for k := key; k != ""; k = parentKey(k) {
		if v.failed[k] {
			return
		}
	}
	v.issues = append(v.issues, v.c.Issue(key, msg))
}

func (v *validator) addf(key, format string, args ...any) {
	v.add(key, fmt.Sprintf(format, args...))
}

// given reports whether key was written in the file (so a zero value was
// set explicitly rather than left out).
func (v *validator) given(key string) bool {
	_, ok := v.c.pos[key]
	return ok
}

func (v *validator) enum(key, what, val string, allowed []string) bool {
	for _, a := range allowed {
		if val == a {
			return true
		}
	}
	if s := suggest(val, allowed); s != "" {
		v.addf(key, "unknown %s %q (did you mean %q?)", what, val, s)
	} else {
		v.addf(key, "unknown %s %q; use %s", what, val, oneOf(allowed))
	}
	return false
}

// checkName validates the name of a target, rule, transfer, queue or
// channel.
func checkName(name string, allowDot bool) error {
	if name == "" {
		return errors.New("missing name; give it a unique name like \"web-1\"")
	}
	if len(name) > 64 {
		return fmt.Errorf("name %q is too long; use at most 64 characters", name)
	}
	first := name[0]
	if !(first >= 'a' && first <= 'z' || first >= 'A' && first <= 'Z' || first >= '0' && first <= '9') {
		return fmt.Errorf("invalid name %q: must start with a letter or digit", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || (allowDot && r == '.')
		if !ok {
			allowed := "letters, digits, '_', '-' and '.'"
			if !allowDot {
				allowed = "letters, digits, '_' and '-'"
			}
			return fmt.Errorf("invalid name %q: %q is not allowed; use %s", name, r, allowed)
		}
	}
	return nil
}

// names checks one name and reports duplicates, pointing back at the first.
func (v *validator) name(kind, base string, i int, name string, allowDot bool, seen map[string]int) {
	key := fmt.Sprintf("%s[%d].name", base, i)
	if err := checkName(name, allowDot); err != nil {
		v.add(key, err.Error())
		return
	}
	if j, dup := seen[name]; dup {
		firstKey := fmt.Sprintf("%s[%d].name", base, j)
		where := base + "[" + strconv.Itoa(j) + "]"
		if p, ok := v.c.pos[firstKey]; ok {
			where = "line " + strconv.Itoa(p.Line)
		}
		v.addf(key, "duplicate %s name %q (first defined at %s); give each %s a unique name", kind, name, where, kind)
		return
	}
	seen[name] = i
}

// MaxReplicas is the largest backend.replicas (a NATS stream limit).
const MaxReplicas = 5

func (v *validator) backend() {
	b := v.c.Backend
	if b.Replicas < 0 || b.Replicas > MaxReplicas {
		v.add("backend.replicas", fmt.Sprintf("replicas must be 1 to %d, not %d", MaxReplicas, b.Replicas))
	} else if b.Replicas > 1 && b.Kind != BackendNATS {
		v.add("backend.replicas", "replicas is only used by backend kind nats; add kind: nats or remove replicas")
	}
	if b.Kind != "" {
		v.enum("backend.kind", "backend kind", b.Kind, BackendKinds())
	}
	if b.Kind == BackendNATS && strings.TrimSpace(b.URL) == "" {
		v.add("backend.kind", "backend kind nats needs backend.url; set it to nats://host:4222 (several separated by commas)")
	}
	if b.URL != "" {
		if err := checkNATSURLs(b.URL); err != nil {
			v.add("backend.url", err.Error())
		} else if b.Kind != BackendNATS {
			v.add("backend.url", "url is only used by backend kind nats; add kind: nats or remove url")
		}
	}
	switch {
	case b.Password != "" && b.User == "":
		v.add("backend.password", "password is set without backend.user; set user too")
	case b.User != "" && b.Password == "":
		v.add("backend.user", "user is set without backend.password; set password too")
	}
	auth := 0
	for _, set := range []bool{b.Creds != "", b.User != "", b.Token != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		key := "backend.token"
		if b.Token == "" {
			key = "backend.user"
		}
		v.add(key, "choose one NATS authentication: creds, user/password or token")
	}
	if (b.TLS.Cert == "") != (b.TLS.Key == "") {
		if b.TLS.Cert == "" {
			v.add("backend.tls.key", "tls.key is set without tls.cert; set both for a client certificate")
		} else {
			v.add("backend.tls.cert", "tls.cert is set without tls.key; set both for a client certificate")
		}
	}
}

func (v *validator) ssh() {
	s := v.c.SSH
	if s.HostKeyPolicy != "" {
		v.enum("ssh.host_key_policy", "host key policy", s.HostKeyPolicy, HostKeyPolicies())
	}
	for i, f := range s.IdentityFiles {
		if strings.TrimSpace(f) == "" {
			v.addf(fmt.Sprintf("ssh.identity_files[%d]", i), "empty identity file path; remove it or give a key file like ~/.ssh/id_ed25519")
		}
	}
	for _, hp := range v.sortedKeys("ssh.fingerprints", s.Fingerprints) {
		fp := s.Fingerprints[hp]
		key := mapKey("ssh.fingerprints", hp)
		if err := checkHostPort(hp, true); err != nil {
			v.add(key, "fingerprint pins are keyed by host:port: "+err.Error())
			continue
		}
		if err := checkFingerprint(fp); err != nil {
			v.add(key, err.Error())
		}
	}
	v.duration("ssh.connect_timeout", s.ConnectTimeout)
	v.duration("ssh.keepalive", s.Keepalive)
}

// duration rejects negative values set in code (the decoder already rejects
// zero and negative values written in a file).
func (v *validator) duration(key string, d Duration) {
	if d < 0 {
		v.addf(key, "invalid duration %q: must be greater than 0", d.String())
	}
}

// sortedKeys returns the keys of m in file order (then by name), so that
// issues come out deterministically and "the second one" is the later line.
func (v *validator) sortedKeys(base string, m map[string]string) []string {
	keys := slices.Sorted(maps.Keys(m))
	line := func(k string) int { return v.c.pos[mapKey(base, k)].Line }
	slices.SortStableFunc(keys, func(a, b string) int { return line(a) - line(b) })
	return keys
}

func checkFingerprint(fp string) error {
	b64, ok := strings.CutPrefix(fp, "SHA256:")
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	if !ok || err != nil || len(raw) != 32 {
		return fmt.Errorf("invalid host key fingerprint %q; write it as shown by ssh-keygen -lf: SHA256: followed by 43 base64 characters", fp)
	}
	return nil
}

func (v *validator) targets(rules map[string]Rule) {
	seen := map[string]int{}
	for i, t := range v.c.Targets {
		base := fmt.Sprintf("targets[%d]", i)
		v.name("target", "targets", i, t.Name, true, seen)
		typeOK := false
		if t.Type == "" {
			v.add(base+".type", "missing type; use host, network or service")
		} else {
			typeOK = v.enum(base+".type", "target type", t.Type, TargetTypes())
		}
		if t.Address == "" {
			v.add(base+".address", "missing address; give an IP, hostname, CIDR or URL matching the type")
		} else if typeOK {
			if err := checkTargetAddress(t.Type, t.Address); err != nil {
				v.add(base+".address", err.Error())
			}
		}
		v.tags(base, t.Tags)
		refs := map[string]bool{}
		for j, rn := range t.Rules {
			key := fmt.Sprintf("%s.rules[%d]", base, j)
			r, ok := rules[rn]
			switch {
			case !ok:
				names := make([]string, 0, len(v.c.Rules))
				for _, r := range v.c.Rules {
					names = append(names, r.Name)
				}
				if s := suggest(rn, names); s != "" {
					v.addf(key, "unknown rule %q (did you mean %q?)", rn, s)
				} else {
					v.addf(key, "unknown rule %q; define it under rules: or remove the reference", rn)
				}
			case refs[rn]:
				v.addf(key, "rule %q is listed twice; remove one", rn)
			case typeOK && len(r.AppliesTo) > 0 && !slices.Contains(r.AppliesTo, t.Type):
				v.addf(key, "rule %q applies to %s targets only, not %s; remove it here or add %s to its applies_to", rn, oneOf(r.AppliesTo), t.Type, t.Type)
			}
			refs[rn] = true
		}
	}
}

func checkTargetAddress(typ, addr string) error {
	switch typ {
	case TargetHost:
		if strings.Contains(addr, "/") {
			return fmt.Errorf("invalid host address %q: a host is one IP or hostname; use type network for a CIDR or type service for a URL", addr)
		}
		if strings.Contains(addr, ":") {
			if _, err := netip.ParseAddr(addr); err != nil {
				return fmt.Errorf("invalid host address %q: not an IP literal; for host:port use type service", addr)
			}
		}
		if err := CheckHost(addr); err != nil {
			return err
		}
	case TargetNetwork:
		if _, err := netip.ParsePrefix(addr); err != nil {
			why := err.Error()
			if i := strings.LastIndex(why, "): "); i >= 0 {
				why = why[i+3:]
			}
			return fmt.Errorf("invalid network %q (%s); write a CIDR like 192.0.2.0/24 or 2001:db8::/64", addr, why)
		}
	case TargetService:
		return checkServiceAddress(addr)
	}
	return nil
}

func (v *validator) tags(base string, tags []string) {
	for i, tag := range tags {
		if strings.TrimSpace(tag) == "" || strings.ContainsAny(tag, ", \t\r\n") {
			v.addf(fmt.Sprintf("%s.tags[%d]", base, i), "invalid tag %q; use a single word without spaces or commas", tag)
		}
	}
}

func (v *validator) rules() map[string]Rule {
	seen := map[string]int{}
	byName := map[string]Rule{}
	for i, r := range v.c.Rules {
		base := fmt.Sprintf("rules[%d]", i)
		v.name("rule", "rules", i, r.Name, true, seen)
		if _, dup := byName[r.Name]; !dup && r.Name != "" {
			byName[r.Name] = r
		}
		if r.Check == "" {
			v.addf(base+".check", "missing check; use %s", oneOf(Checks()))
		} else {
			v.enum(base+".check", "check", r.Check, Checks())
		}
		for j, at := range r.AppliesTo {
			v.enum(fmt.Sprintf("%s.applies_to[%d]", base, j), "target type", at, TargetTypes())
		}
		v.tags(base, r.Tags)
		v.rule(base, r)
	}
	return byName
}

func (v *validator) rule(base string, r Rule) {
	positive := func(field string, val int) {
		key := base + "." + field
		if val < 0 || (val == 0 && v.given(key)) {
			v.addf(key, "invalid %s %d: must be at least 1", field, val)
		}
	}
	positive("count", r.Count)
	if r.Size < 0 || r.Size > 65507 {
		v.addf(base+".size", "invalid size %d: must be between 0 and 65507 bytes", r.Size)
	}
	if r.Retries < 0 {
		v.addf(base+".retries", "invalid retries %d: must be 0 or more", r.Retries)
	}
	if r.Port != 0 || v.given(base+".port") {
		if r.Port < 1 || r.Port > 65535 {
			v.addf(base+".port", "invalid port %d: must be between 1 and 65535", r.Port)
		}
	}
	for _, f := range []struct {
		field string
		spec  PortSpec
	}{{"ports", r.Ports}, {"expect_open", r.ExpectOpen}, {"must_be_closed", r.MustBeClosed}} {
		if f.spec != "" {
			if _, _, err := f.spec.Parse(); err != nil {
				v.add(base+"."+f.field, err.Error())
			}
		}
	}
	if r.Expect != "" {
		if _, err := regexp.Compile(r.Expect); err != nil {
			v.add(base+".expect", regexpError(r.Expect, err))
		}
	}
	if r.Method != "" && !isHTTPToken(r.Method) {
		v.addf(base+".method", "invalid HTTP method %q; use e.g. GET, HEAD or POST", r.Method)
	}
	if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
		v.addf(base+".path", "invalid path %q: must start with \"/\"", r.Path)
	}
	lower := map[string]string{}
	for _, name := range v.sortedKeys(base+".headers", r.Headers) {
		val := r.Headers[name]
		key := mapKey(base+".headers", name)
		if !isHTTPToken(name) {
			v.addf(key, "invalid header name %q; use letters, digits and '-'", name)
		} else if other, dup := lower[strings.ToLower(name)]; dup {
			v.addf(key, "header %q is also given as %q; header names are case-insensitive, keep one", name, other)
		}
		lower[strings.ToLower(name)] = name
		if strings.ContainsAny(val, "\r\n\x00") {
			v.addf(key, "header %q value contains a line break; write it on one line", name)
		}
	}
	for _, name := range v.sortedKeys(base+".expect_headers", r.ExpectHeaders) {
		key := mapKey(base+".expect_headers", name)
		if !isHTTPToken(name) {
			v.addf(key, "invalid header name %q; use letters, digits and '-'", name)
		}
		if _, err := regexp.Compile(r.ExpectHeaders[name]); err != nil {
			v.add(key, regexpError(r.ExpectHeaders[name], err))
		}
	}
	for j, st := range r.Status {
		if st < 100 || st > 599 {
			v.addf(fmt.Sprintf("%s.status[%d]", base, j), "invalid HTTP status %d: must be between 100 and 599", st)
		}
	}
	if r.RecordType != "" {
		v.enum(base+".record_type", "record type", r.RecordType, RecordTypes())
	}
	if r.Server != "" {
		if err := checkHostPort(r.Server, false); err != nil {
			v.addf(base+".server", "invalid DNS server %q; write host or host:port like 127.0.0.1:53 (port 1-65535)", r.Server)
		}
	}
	switch {
	case r.Check == CheckExec && len(r.Command) == 0:
		v.add(base+".command", "check exec needs command: an argv list like [/usr/lib/nagios/plugins/check_disk, -w, 20%]")
	case r.Check != CheckExec && len(r.Command) > 0 && r.Check != "":
		v.addf(base+".command", "command is only used by check exec, not %s; remove it or set check: exec", r.Check)
	case len(r.Command) > 0 && strings.TrimSpace(r.Command[0]) == "":
		v.add(base+".command[0]", "empty program name; the first item of command is the program to run")
	}
	if r.MinAlive < 0 {
		v.addf(base+".min_alive", "invalid min_alive %d: must be 0 or more", r.MinAlive)
	}
	positive("max_hosts", r.MaxHosts)
	v.duration(base+".interval", r.Interval)
	v.duration(base+".timeout", r.Timeout)
	v.threshold(base+".warn", r.Warn)
	v.threshold(base+".crit", r.Crit)
	if r.Severity != "" {
		v.enum(base+".severity", "severity", r.Severity, Severities())
	}
}

func (v *validator) threshold(base string, t Threshold) {
	v.duration(base+".rtt", t.RTT)
	if t.Loss != nil && (*t.Loss < 0 || *t.Loss > 100 || math.IsNaN(float64(*t.Loss))) {
		v.addf(base+".loss", "invalid percentage %q: must be between 0 and 100", t.Loss.String())
	}
	if t.Days < 0 {
		v.addf(base+".days", "invalid days %d: must be 0 or more", t.Days)
	}
	if t.Mbps < 0 || math.IsNaN(t.Mbps) || math.IsInf(t.Mbps, 0) || (t.Mbps == 0 && v.given(base+".mbps")) {
		v.addf(base+".mbps", "invalid mbps %v: must be greater than 0", t.Mbps)
	}
	if t.Range != "" || v.given(base+".range") {
		if _, err := ParseRange(t.Range); err != nil {
			v.add(base+".range", err.Error())
		}
	}
}

func regexpError(expr string, err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid regular expression %q: %s; fix it or quote special characters with \\", expr, se.Code)
	}
	return fmt.Sprintf("invalid regular expression %q: %v", expr, err)
}

func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

func (v *validator) transfers() {
	seen := map[string]int{}
	for i, t := range v.c.Transfers {
		base := fmt.Sprintf("transfers[%d]", i)
		v.name("transfer", "transfers", i, t.Name, true, seen)
		var src, dst Endpoint
		srcOK, dstOK := false, false
		if t.Source == "" {
			v.add(base+".source", "missing source; give a local path, sftp://host/path, user@host:path or an http(s):// URL")
		} else if e, err := ParseEndpoint(t.Source); err != nil {
			v.add(base+".source", err.Error())
		} else {
			src, srcOK = e, true
		}
		if t.Destination == "" {
			v.add(base+".destination", "missing destination; give a local path, sftp://host/path or user@host:path")
		} else if e, err := ParseEndpoint(t.Destination); err != nil {
			v.add(base+".destination", err.Error())
		} else if e.Kind == EndpointHTTP {
			v.add(base+".destination", "http(s) destinations are not supported; use a local path, sftp://host/path or user@host:path")
		} else {
			dst, dstOK = e, true
		}
		mode := t.Mode
		if t.Mode != "" {
			v.enum(base+".mode", "mode", t.Mode, Modes())
		} else if t.Method == "rsync" {
			mode = ModeSync
		}
		if srcOK && src.Kind == EndpointHTTP && (mode == ModeSync || mode == ModeBisync) {
			v.addf(base+".mode", "mode %s needs a directory listing; http sources support mode copy only", mode)
		}
		if t.Method != "" && v.enum(base+".method", "method", t.Method, Methods()) && srcOK && dstOK {
			v.method(base, t, src, dst)
		}
		for _, list := range []struct {
			field    string
			patterns []string
		}{{"include", t.Include}, {"exclude", t.Exclude}} {
			for j, p := range list.patterns {
				key := fmt.Sprintf("%s.%s[%d]", base, list.field, j)
				if p == "" {
					v.add(key, "empty pattern; remove it")
				} else if _, err := path.Match(p, ""); err != nil {
					v.addf(key, "invalid glob pattern %q: unbalanced [ ] or trailing \\; escape special characters with \\", p)
				}
			}
		}
		if t.Verify != "" {
			v.enum(base+".verify", "verify", t.Verify, Verifies())
		}
		if t.SHA256 != "" {
			if _, err := hex.DecodeString(t.SHA256); err != nil || len(t.SHA256) != 64 {
				v.addf(base+".sha256", "invalid sha256 %q: must be 64 hex characters (as printed by sha256sum)", t.SHA256)
			} else if t.Verify == VerifyNone {
				v.add(base+".sha256", "sha256 is set but verify is none; remove one of them")
			}
		}
		if t.Retries < 0 {
			v.addf(base+".retries", "invalid retries %d: must be 0 or more", t.Retries)
		}
		v.duration(base+".backoff", t.Backoff)
		if t.Delete && mode != ModeSync {
			if mode == "" {
				mode = ModeCopy
			}
			v.addf(base+".delete", "delete only applies to mode sync, not %s; set mode: sync or remove delete", mode)
		}
		if t.MaxDelete != nil && *t.MaxDelete < 0 {
			v.addf(base+".max_delete", "invalid max_delete %d: must be 0 or more", *t.MaxDelete)
		}
		if t.BWLimit != "" || v.given(base+".bwlimit") {
			if _, err := ParseBandwidth(t.BWLimit); err != nil {
				v.add(base+".bwlimit", err.Error())
			}
		}
		v.tags(base, t.Tags)
	}
}

// method checks that a familiar method name matches the endpoints.
func (v *validator) method(base string, t Transfer, src, dst Endpoint) {
	key := base + ".method"
	switch t.Method {
	case "scp", "sftp":
		if !src.Remote() && !dst.Remote() {
			v.addf(key, "method %s needs an sftp:// or user@host:path source or destination", t.Method)
		}
		if src.Kind == EndpointHTTP {
			v.addf(key, "method %s cannot download from an http(s) URL; use method curl or wget", t.Method)
		}
	case "rsync":
		if t.Mode != "" && t.Mode != ModeSync {
			v.addf(key, "method rsync means mode sync, but mode is %s; remove method or mode", t.Mode)
		}
	case "wget", "curl":
		if src.Kind != EndpointHTTP {
			v.addf(key, "method %s needs an http(s):// source", t.Method)
		}
	case "local":
		if src.Remote() || dst.Remote() {
			v.add(key, "method local needs local paths for both source and destination")
		}
	}
}

func (v *validator) ipc() {
	seen := map[string]int{}
	for i, q := range v.c.IPC.Queues {
		base := fmt.Sprintf("ipc.queues[%d]", i)
		v.name("queue", "ipc.queues", i, q.Name, false, seen)
		if q.MaxSize < 0 || (q.MaxSize == 0 && v.given(base+".max_size")) {
			v.addf(base+".max_size", "invalid max_size %d: must be greater than 0", q.MaxSize)
		}
		if q.Overflow != "" {
			v.enum(base+".overflow", "overflow policy", q.Overflow, Overflows())
		}
	}
	seen = map[string]int{}
	for i, ch := range v.c.IPC.Channels {
		v.name("channel", "ipc.channels", i, ch.Name, false, seen)
	}
}
