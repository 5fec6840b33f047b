package config

import "time"

// Defaults applied by WithDefaults.
const (
	DefaultKnownHosts     = "~/.ssh/known_hosts"
	DefaultSSHConfig      = "~/.ssh/config" // a missing file is not an error
	DefaultConnectTimeout = Duration(10 * time.Second)
	DefaultKeepalive      = Duration(15 * time.Second)
	DefaultQueueMaxSize   = 1000
	DefaultMaxDelete      = 100
	DefaultBackoff        = Duration(time.Second)
)

// Default returns the effective configuration used when no config file
// exists: every default filled in, no targets, rules, transfers or IPC
// objects. It equals Parse of an empty file followed by WithDefaults.
func Default() *Config {
	return (&Config{}).WithDefaults()
}

// WithDefaults returns a copy of c with every unset value that has a default
// filled in: backend.kind local; ssh host_key_policy strict, known_hosts
// ~/.ssh/known_hosts, config ~/.ssh/config, agent true, connect_timeout 10s,
// keepalive 15s; per-check rule defaults (see RuleDefaults) and severity
// critical; transfer mode copy (sync for method rsync), verify sha256,
// backoff 1s, max_delete 100; queue max_size 1000 and overflow drop-oldest (as in the reference chapter).
// state_dir stays empty: the caller decides it.
func (c *Config) WithDefaults() *Config {
	d := c.clone()
	if d.Backend.Kind == "" {
		d.Backend.Kind = BackendLocal
	}
	s := &d.SSH
	if s.KnownHosts == "" {
		s.KnownHosts = DefaultKnownHosts
	}
	if s.HostKeyPolicy == "" {
		s.HostKeyPolicy = HostKeyStrict
	}
	if s.Agent == nil {
		s.Agent = ptr(true)
	}
	if s.Config == "" {
		s.Config = DefaultSSHConfig
	}
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = DefaultConnectTimeout
	}
	if s.Keepalive == 0 {
		s.Keepalive = DefaultKeepalive
	}
	for i := range d.Rules {
		fillRule(&d.Rules[i])
	}
	for i := range d.Transfers {
		t := &d.Transfers[i]
		if t.Mode == "" {
			t.Mode = ModeCopy
			if t.Method == "rsync" {
				t.Mode = ModeSync
			}
		}
		if t.Verify == "" {
			t.Verify = VerifySHA256
		}
		if t.Backoff == 0 {
			t.Backoff = DefaultBackoff
		}
		if t.MaxDelete == nil {
			t.MaxDelete = ptr(DefaultMaxDelete)
		}
	}
	for i := range d.IPC.Queues {
		q := &d.IPC.Queues[i]
		if q.MaxSize == 0 {
			q.MaxSize = DefaultQueueMaxSize
		}
		if q.Overflow == "" {
			q.Overflow = OverflowDropOldest
		}
	}
	return d
}

// RuleDefaults returns the defaults WithDefaults applies to a rule of the
// given check: only the fields that have a default for that check are set.
//
//	all checks  timeout 5s (except below), severity critical
//	icmp        count 3, interval 1s, size 56, timeout 2s
//	tcp         timeout 5s
//	http        method GET, follow_redirects true, timeout 10s
//	dns         record_type A, timeout 5s
//	latency     count 5, interval 200ms, timeout 2s
//	portscan    ports top100 (when none of port, ports, expect_open, must_be_closed is set), timeout 1s per port
//	discover    max_hosts 256, timeout 1s per host
//	bandwidth   timeout 30s
//	traceroute  count 30 (max hops), timeout 30s
//	exec        timeout 30s
func RuleDefaults(check string) Rule {
	r := Rule{Check: check, Timeout: Duration(5 * time.Second), Severity: SeverityCritical}
	switch check {
	case CheckICMP:
		r.Count, r.Interval, r.Size, r.Timeout = 3, Duration(time.Second), 56, Duration(2*time.Second)
	case CheckHTTP:
		r.Method, r.FollowRedirects, r.Timeout = "GET", ptr(true), Duration(10*time.Second)
	case CheckDNS:
		r.RecordType = "A"
	case CheckLatency:
		r.Count, r.Interval, r.Timeout = 5, Duration(200*time.Millisecond), Duration(2*time.Second)
	case CheckPortscan:
		r.Ports, r.Timeout = PortsTop100, Duration(time.Second)
	case CheckDiscover:
		r.MaxHosts, r.Timeout = 256, Duration(time.Second)
	case CheckBandwidth, CheckExec:
		r.Timeout = Duration(30 * time.Second)
	case CheckTraceroute:
		r.Count, r.Timeout = 30, Duration(30*time.Second)
	case CheckNATS:
		r.Timeout = Duration(5 * time.Second)
	}
	return r
}

func fillRule(r *Rule) {
	def := RuleDefaults(r.Check)
	if r.Timeout == 0 {
		r.Timeout = def.Timeout
	}
	if r.Severity == "" {
		r.Severity = def.Severity
	}
	if r.Count == 0 {
		r.Count = def.Count
	}
	if r.Interval == 0 {
		r.Interval = def.Interval
	}
	if r.Size == 0 {
		r.Size = def.Size
	}
	if r.Method == "" {
		r.Method = def.Method
	}
	if r.FollowRedirects == nil && def.FollowRedirects != nil {
		r.FollowRedirects = ptr(*def.FollowRedirects)
	}
	if r.RecordType == "" {
		r.RecordType = def.RecordType
	}
	if r.Ports == "" && r.Port == 0 && r.ExpectOpen == "" && r.MustBeClosed == "" {
		r.Ports = def.Ports
	}
	if r.MaxHosts == 0 {
		r.MaxHosts = def.MaxHosts
	}
}

func ptr[T any](v T) *T { return &v }
