// Package config defines the netops configuration file: its schema, strict
// loading with file:line:column error reporting, validation, defaults,
// scalar overrides (environment and flags), secret masking and export.
//
// The package never prints and never exits; every problem is returned as an
// *Error that lists all issues found, one line each
// ("netops.yaml:12:5: targets[1].adress: unknown key ...").
//
// Typical use:
//
//	path := config.Locate(flagPath, cwd, home, "")   // "" when no file exists
//	cfg, err := config.Load(path)                     // "" -> Default()
//	// for each key in config.ScalarKeys() given by env or flag:
//	err = cfg.Set(key, value, "NETOPS_BACKEND_KIND")  // checks the value alone
//	err = cfg.Validate()                              // checks how settings fit together
//	eff := cfg.WithDefaults()                         // what netops will actually use
//	out, err := eff.Masked().Export()                 // safe to show
package config

import (
	"strings"
)

// Config is the whole netops configuration file.
type Config struct {
	// StateDir holds local state (SQLite database, locks). Empty means the
	// caller's default (root: /var/lib/netops, else $XDG_STATE_HOME/netops).
	StateDir  string     `yaml:"state_dir,omitempty" json:"state_dir,omitempty"`
	Backend   Backend    `yaml:"backend,omitempty" json:"backend,omitzero"`
	SSH       SSH        `yaml:"ssh,omitempty" json:"ssh,omitzero"`
	Targets   []Target   `yaml:"targets,omitempty" json:"targets,omitempty"`
	Rules     []Rule     `yaml:"rules,omitempty" json:"rules,omitempty"`
	Transfers []Transfer `yaml:"transfers,omitempty" json:"transfers,omitempty"`
	IPC       IPC        `yaml:"ipc,omitempty" json:"ipc,omitzero"`

	file      string            // display name of the source file ("" when none)
	pos       map[string]Pos    // key path -> position of the key in the file
	overrides map[string]string // key path -> source of an override (e.g. NETOPS_BACKEND_KIND)
}

// Pos is a 1-based line and column in the configuration file.
type Pos struct{ Line, Column int }

// Backend kinds.
const (
	BackendLocal = "local"
	BackendNATS  = "nats"
)

// Backend selects where locks and IPC state live.
type Backend struct {
	// Kind is BackendLocal (SQLite in the state dir, default) or BackendNATS.
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty"`
	// URL is one or more comma-separated nats:// or tls:// server URLs.
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// Creds is the path of a NATS credentials (.creds) file.
	Creds    string `yaml:"creds,omitempty" json:"creds,omitempty"`
	User     string `yaml:"user,omitempty" json:"user,omitempty"`
	Password string `yaml:"password,omitempty" json:"password,omitempty"` // secret
	Token    string `yaml:"token,omitempty" json:"token,omitempty"`       // secret
	TLS      TLS    `yaml:"tls,omitempty" json:"tls,omitzero"`
	// Replicas is how many copies of the lock bucket and of the queue and
	// channel streams a NATS cluster keeps when netops creates them (1-5;
	// 0 means 1). Use 3 on a 3-node cluster so one node can fail.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty"`
}

// URLs returns the server URLs of b.URL, split on commas and trimmed.
func (b Backend) URLs() []string {
	var out []string
	for u := range strings.SplitSeq(b.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// TLS holds file paths for a TLS client setup.
type TLS struct {
	CA   string `yaml:"ca,omitempty" json:"ca,omitempty"`
	Cert string `yaml:"cert,omitempty" json:"cert,omitempty"`
	Key  string `yaml:"key,omitempty" json:"key,omitempty"`
}

// SSH host key policies.
const (
	HostKeyStrict    = "strict"
	HostKeyAcceptNew = "accept-new"
)

// SSH configures SSH/SFTP connections. Paths may start with "~/"; expanding
// them is the caller's job (see ExpandHome).
type SSH struct {
	KnownHosts     string            `yaml:"known_hosts,omitempty" json:"known_hosts,omitempty"`
	HostKeyPolicy  string            `yaml:"host_key_policy,omitempty" json:"host_key_policy,omitempty"`
	IdentityFiles  []string          `yaml:"identity_files,omitempty" json:"identity_files,omitempty"`
	Agent          *bool             `yaml:"agent,omitempty" json:"agent,omitempty"`
	Config         string            `yaml:"config,omitempty" json:"config,omitempty"`
	ConnectTimeout Duration          `yaml:"connect_timeout,omitempty" json:"connect_timeout,omitzero"`
	Keepalive      Duration          `yaml:"keepalive,omitempty" json:"keepalive,omitzero"`
	Fingerprints   map[string]string `yaml:"fingerprints,omitempty" json:"fingerprints,omitempty"` // "host:port" -> "SHA256:..."
}

// Target types.
const (
	TargetHost    = "host"
	TargetNetwork = "network"
	TargetService = "service"
)

// Target is something diag checks.
type Target struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Type is TargetHost (IP or hostname), TargetNetwork (CIDR) or
	// TargetService (URL or host:port).
	Type    string   `yaml:"type,omitempty" json:"type,omitempty"`
	Address string   `yaml:"address,omitempty" json:"address,omitempty"`
	Info    string   `yaml:"info,omitempty" json:"info,omitempty"`
	Tags    []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Rules optionally names the rules to run on this target; each must exist.
	Rules []string `yaml:"rules,omitempty" json:"rules,omitempty"`
}

// Rule check kinds.
const (
	CheckICMP       = "icmp"
	CheckTCP        = "tcp"
	CheckHTTP       = "http"
	CheckDNS        = "dns"
	CheckLatency    = "latency"
	CheckPortscan   = "portscan"
	CheckDiscover   = "discover"
	CheckBandwidth  = "bandwidth"
	CheckTraceroute = "traceroute"
	CheckExec       = "exec"
	CheckNATS       = "nats"
)

// Severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Rule describes one check. Only Name and Check are required; which other
// fields matter depends on Check.
type Rule struct {
	Name  string `yaml:"name,omitempty" json:"name,omitempty"`
	Check string `yaml:"check,omitempty" json:"check,omitempty"`
	// AppliesTo limits the rule to target types (host, network, service).
	AppliesTo []string `yaml:"applies_to,omitempty" json:"applies_to,omitempty"`
	Tags      []string `yaml:"tags,omitempty" json:"tags,omitempty"`

	Count    int      `yaml:"count,omitempty" json:"count,omitempty"`
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitzero"`
	Size     int      `yaml:"size,omitempty" json:"size,omitempty"`
	Timeout  Duration `yaml:"timeout,omitempty" json:"timeout,omitzero"`
	Retries  int      `yaml:"retries,omitempty" json:"retries,omitempty"`

	Port   int      `yaml:"port,omitempty" json:"port,omitempty"`
	Ports  PortSpec `yaml:"ports,omitempty" json:"ports,omitempty"`
	Send   string   `yaml:"send,omitempty" json:"send,omitempty"`
	Expect string   `yaml:"expect,omitempty" json:"expect,omitempty"` // regular expression
	TLS    bool     `yaml:"tls,omitempty" json:"tls,omitempty"`

	Method  string            `yaml:"method,omitempty" json:"method,omitempty"`
	Path    string            `yaml:"path,omitempty" json:"path,omitempty"`
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// ExpectHeaders maps response header names to regular expressions the
	// header's value (all values joined with ", ") must match.
	ExpectHeaders   map[string]string `yaml:"expect_headers,omitempty" json:"expect_headers,omitempty"`
	Body            string            `yaml:"body,omitempty" json:"body,omitempty"`
	Status          []int             `yaml:"status,omitempty" json:"status,omitempty"`
	FollowRedirects *bool             `yaml:"follow_redirects,omitempty" json:"follow_redirects,omitempty"`
	CAFile          string            `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`

	RecordType string   `yaml:"record_type,omitempty" json:"record_type,omitempty"`
	Server     string   `yaml:"server,omitempty" json:"server,omitempty"`
	Answers    []string `yaml:"answers,omitempty" json:"answers,omitempty"`

	// Command is an argv list for check exec; it is never run through a shell.
	Command []string `yaml:"command,omitempty" json:"command,omitempty"`

	ExpectOpen   PortSpec `yaml:"expect_open,omitempty" json:"expect_open,omitempty"`
	MustBeClosed PortSpec `yaml:"must_be_closed,omitempty" json:"must_be_closed,omitempty"`
	// MinAlive is, for discover, the fewest live hosts and, for nats, the
	// fewest servers the cluster must have (0: no minimum).
	MinAlive int `yaml:"min_alive,omitempty" json:"min_alive,omitempty"`
	MaxHosts int `yaml:"max_hosts,omitempty" json:"max_hosts,omitempty"`

	Warn Threshold `yaml:"warn,omitempty" json:"warn,omitzero"`
	Crit Threshold `yaml:"crit,omitempty" json:"crit,omitzero"`

	Severity    string `yaml:"severity,omitempty" json:"severity,omitempty"`
	Remediation string `yaml:"remediation,omitempty" json:"remediation,omitempty"`
}

// Threshold holds warning or critical limits; unset fields are not checked.
type Threshold struct {
	RTT  Duration `yaml:"rtt,omitempty" json:"rtt,omitzero"`
	Loss *Percent `yaml:"loss,omitempty" json:"loss,omitempty"` // pointer: "loss: 0%" is meaningful
	Days int      `yaml:"days,omitempty" json:"days,omitempty"`
	Mbps float64  `yaml:"mbps,omitempty" json:"mbps,omitempty"`
	// Range is a Nagios range string ("10:", "~:20", "@10:20"); see ParseRange.
	Range string `yaml:"range,omitempty" json:"range,omitempty"`
}

// Transfer modes, methods and verify values.
const (
	ModeCopy   = "copy"
	ModeSync   = "sync"
	ModeBisync = "bisync"

	VerifySHA256 = "sha256"
	VerifyNone   = "none"
)

// Transfer is a named transfer profile.
type Transfer struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Source is a local path, sftp://[user@]host[:port]/path, user@host:path
	// or an http(s):// URL. See ParseEndpoint.
	Source string `yaml:"source,omitempty" json:"source,omitempty"`
	// Destination is like Source but cannot be http(s).
	Destination string `yaml:"destination,omitempty" json:"destination,omitempty"`
	Mode        string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Method is an optional familiar name: scp and sftp mean an SFTP
	// transfer, rsync means mode sync, wget and curl mean an HTTP download,
	// local means both ends are local paths.
	Method    string   `yaml:"method,omitempty" json:"method,omitempty"`
	Include   []string `yaml:"include,omitempty" json:"include,omitempty"` // path.Match globs
	Exclude   []string `yaml:"exclude,omitempty" json:"exclude,omitempty"` // path.Match globs
	Verify    string   `yaml:"verify,omitempty" json:"verify,omitempty"`
	SHA256    string   `yaml:"sha256,omitempty" json:"sha256,omitempty"` // expected digest of the source, 64 hex
	Retries   int      `yaml:"retries,omitempty" json:"retries,omitempty"`
	Backoff   Duration `yaml:"backoff,omitempty" json:"backoff,omitzero"`
	Delete    bool     `yaml:"delete,omitempty" json:"delete,omitempty"`
	MaxDelete *int     `yaml:"max_delete,omitempty" json:"max_delete,omitempty"`
	BackupDir string   `yaml:"backup_dir,omitempty" json:"backup_dir,omitempty"`
	// BWLimit is bytes per second like "512K" or "10M"; see ParseBandwidth.
	BWLimit string   `yaml:"bwlimit,omitempty" json:"bwlimit,omitempty"`
	Tags    []string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

// IPC declares queues and channels.
type IPC struct {
	Queues   []Queue   `yaml:"queues,omitempty" json:"queues,omitempty"`
	Channels []Channel `yaml:"channels,omitempty" json:"channels,omitempty"`
}

// Queue overflow policies.
const (
	OverflowDropOldest = "drop-oldest"
	OverflowReject     = "reject"
)

// Queue is a bounded message queue.
type Queue struct {
	Name     string `yaml:"name,omitempty" json:"name,omitempty"`
	MaxSize  int    `yaml:"max_size,omitempty" json:"max_size,omitempty"`
	Overflow string `yaml:"overflow,omitempty" json:"overflow,omitempty"`
}

// Channel is a publish/subscribe channel.
type Channel struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
}

// File returns the display name of the file c was parsed from ("" for
// Default or a Config built in code; "<stdin>" for "-").
func (c *Config) File() string { return c.file }

// Position returns where key (a path like "targets[1].address") was written
// in the file. ok is false when the key did not come from the file.
func (c *Config) Position(key string) (p Pos, ok bool) {
	p, ok = c.pos[key]
	return p, ok
}

// Issue returns an Issue about key carrying the best location known for it:
// the override source if key was Set, else the position of key (or of its
// nearest parent) in the file. Later stages (diag, transfer) use it to report
// problems found in the config with the same file:line form.
func (c *Config) Issue(key, msg string) Issue {
	is := Issue{File: c.file, Key: key, Msg: msg}
	if src, ok := c.overrides[key]; ok {
		is.File = ""
		is.Source = src
		return is
	}
	for k := key; k != ""; k = parentKey(k) {
		if p, ok := c.pos[k]; ok {
			is.Line = p.Line
			if k == key {
				is.Column = p.Column
			}
			return is
		}
	}
	return is
}

// Target returns the target called name.
func (c *Config) Target(name string) (Target, bool) {
	for _, t := range c.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}

// Rule returns the rule called name.
func (c *Config) Rule(name string) (Rule, bool) {
	for _, r := range c.Rules {
		if r.Name == name {
			return r, true
		}
	}
	return Rule{}, false
}

// Transfer returns the transfer profile called name.
func (c *Config) Transfer(name string) (Transfer, bool) {
	for _, t := range c.Transfers {
		if t.Name == name {
			return t, true
		}
	}
	return Transfer{}, false
}

// Queue returns the queue called name.
func (c *Config) Queue(name string) (Queue, bool) {
	for _, q := range c.IPC.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return Queue{}, false
}

// Channel returns the channel called name.
func (c *Config) Channel(name string) (Channel, bool) {
	for _, ch := range c.IPC.Channels {
		if ch.Name == name {
			return ch, true
		}
	}
	return Channel{}, false
}

// ExpandHome replaces a leading "~" or "~/" in p with home.
func ExpandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") && home != "" {
		return strings.TrimSuffix(home, "/") + p[1:]
	}
	return p
}

// parentKey returns the parent of a key path: "a.b[2].c" -> "a.b[2]" ->
// "a.b" -> "a" -> "".
func parentKey(k string) string {
	if strings.HasSuffix(k, "]") {
		if i := strings.LastIndex(k, "["); i >= 0 {
			return k[:i]
		}
	}
	if i := strings.LastIndexAny(k, ".]"); i >= 0 {
		if k[i] == ']' {
			return k[:i+1]
		}
		return k[:i]
	}
	return ""
}
