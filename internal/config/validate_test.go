package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// lineOf returns the 1-based line of the first line of doc containing marker.
func lineOf(t *testing.T, doc, marker string) int {
	t.Helper()
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("marker %q not found in:\n%s", marker, doc)
	return 0
}

// mustFail parses doc and returns its single issue.
func mustFail(t *testing.T, doc string) Issue {
	t.Helper()
	c, err := Parse("test.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("Parse succeeded (%+v), want an error for:\n%s", c, doc)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T, want *Error: %v", err, err)
	}
	if len(ce.Issues) != 1 {
		t.Fatalf("got %d issues, want 1:\n%v", len(ce.Issues), err)
	}
	return ce.Issues[0]
}

// Each case holds exactly one problem. at is a substring of the line the
// issue must point at; key is the expected key path; msg a substring of the
// message.
func TestValidationErrors(t *testing.T) {
	const tgt = "targets:\n  - name: t1\n    type: host\n    address: 127.0.0.1\n"
	const rule = "rules:\n  - name: r1\n"
	tests := []struct {
		name, doc, at, key, msg string
	}{
		// unknown keys
		{"unknown top key with suggestion", "target:\n  - name: x\n", "target:", "target", `unknown key "target" (did you mean "targets"?)`},
		{"unknown nested key with suggestion", "ssh:\n  host_key_polcy: strict\n", "host_key_polcy", "ssh.host_key_polcy", `(did you mean "host_key_policy"?)`},
		{"unknown key dash spelling", "ssh:\n  known-hosts: /x\n", "known-hosts", "ssh.known-hosts", `did you mean "known_hosts"`},
		{"unknown key no suggestion", "backend:\n  zzzzzz: 1\n", "zzzzzz", "backend.zzzzzz", "remove it or use one of: kind, url,"},
		{"unknown key in rule threshold", rule + "    check: icmp\n    warn: {rt: 1s}\n", "warn:", "rules[0].warn.rt", `did you mean "rtt"`},
		{"unknown key in queue", "ipc:\n  queues:\n    - name: q\n      maxsize: 3\n", "maxsize", "ipc.queues[0].maxsize", `did you mean "max_size"`},
		{"duplicate yaml key", "backend:\n  kind: local\n  kind: nats\n", "kind: nats", "backend.kind", "duplicate key \"kind\" (first at line 2)"},

		// wrong types
		{"int gets word", rule + "    check: icmp\n    count: three\n", "count:", "rules[0].count", `expected an integer, got "three"`},
		{"int gets float", rule + "    check: icmp\n    count: 2.5\n", "count:", "rules[0].count", "expected an integer, got the number 2.5"},
		{"int overflow", rule + "    check: icmp\n    count: 99999999999999999999\n", "count:", "rules[0].count", "integer 99999999999999999999 is out of range"},
		{"list gets string", "targets:\n  - name: t\n    type: host\n    address: 127.0.0.1\n    tags: core\n", "tags:", "targets[0].tags", "expected a list"},
		{"section gets list", "backend: [local]\n", "backend:", "backend", "expected a mapping of backend settings"},
		{"targets gets mapping", "targets:\n  name: x\n", "name: x", "targets", "expected a list, got a mapping"},
		{"string gets mapping", "state_dir: {a: 1}\n", "state_dir", "state_dir", "expected a string, got a mapping"},
		{"bool gets word", "ssh:\n  agent: maybe\n", "agent", "ssh.agent", `expected true or false, got "maybe"`},
		{"float gets word", rule + "    check: bandwidth\n    warn: {mbps: fast}\n", "warn:", "rules[0].warn.mbps", "expected a number"},
		{"status gets word", rule + "    check: http\n    status: [ok]\n", "status:", "rules[0].status[0]", "expected an integer"},
		{"command as string", rule + "    check: exec\n    command: ls -l\n", "command:", "rules[0].command", "expected a list"},
		{"root is a list", "- a\n- b\n", "- a", "", "expected settings (key: value lines), got a list"},
		{"root is a scalar", "hello\n", "hello", "", "expected settings"},

		// durations and percentages
		{"duration without unit", rule + "    check: icmp\n    timeout: 5\n", "timeout", "rules[0].timeout", `missing unit; write e.g. "5s"`},
		{"duration zero", rule + "    check: icmp\n    interval: 0s\n", "interval", "rules[0].interval", "must be greater than 0"},
		{"duration negative", "ssh:\n  keepalive: -1s\n", "keepalive", "ssh.keepalive", "must be greater than 0"},
		{"duration garbage", "ssh:\n  connect_timeout: soon\n", "connect_timeout", "ssh.connect_timeout", `invalid duration "soon"`},
		{"duration as list", "ssh:\n  connect_timeout: [1s]\n", "connect_timeout", "ssh.connect_timeout", "expected a duration"},
		{"transfer backoff zero", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    backoff: 0ms\n", "backoff", "transfers[0].backoff", "must be greater than 0"},
		{"percent over 100", rule + "    check: icmp\n    crit: {loss: 120%}\n", "crit:", "rules[0].crit.loss", "between 0 and 100"},
		{"percent garbage", rule + "    check: icmp\n    warn:\n      loss: lots\n", "loss", "rules[0].warn.loss", `invalid percentage "lots"`},
		{"rtt zero", rule + "    check: icmp\n    warn:\n      rtt: 0s\n", "rtt", "rules[0].warn.rtt", "must be greater than 0"},

		// names and duplicates
		{"duplicate target", tgt + "  - {name: t1, type: host, address: \"::1\"}\n", "{name: t1", "targets[1].name", `duplicate target name "t1" (first defined at line 2)`},
		{"duplicate rule", rule + "    check: icmp\n  - {name: r1, check: tcp}\n", "{name: r1", "rules[1].name", `duplicate rule name "r1" (first defined at line 2)`},
		{"duplicate transfer", "transfers:\n  - {name: a, source: /a, destination: /b}\n  - {name: a, source: /c, destination: /d}\n", "/c", "transfers[1].name", `duplicate transfer name "a" (first defined at line 2)`},
		{"duplicate queue", "ipc:\n  queues:\n    - name: q\n    - {name: q}\n", "{name: q}", "ipc.queues[1].name", `duplicate queue name "q" (first defined at line 3)`},
		{"duplicate channel", "ipc:\n  channels: [{name: c}, {name: c}]\n", "channels", "ipc.channels[1].name", `duplicate channel name "c" (first defined at line 2)`},
		{"target name syntax", "targets:\n  - name: -bad\n    type: host\n    address: 127.0.0.1\n", "-bad", "targets[0].name", "must start with a letter or digit"},
		{"target name char", "targets:\n  - name: a b\n    type: host\n    address: 127.0.0.1\n", "a b", "targets[0].name", `' ' is not allowed`},
		{"missing target name", "targets:\n  - type: host\n    address: 127.0.0.1\n", "type: host", "targets[0].name", "missing name"},
		{"queue name with dot", "ipc:\n  queues:\n    - name: a.b\n", "a.b", "ipc.queues[0].name", `'.' is not allowed`},

		// targets
		{"missing type", "targets:\n  - name: t\n    address: 127.0.0.1\n", "name: t", "targets[0].type", "missing type; use host, network or service"},
		{"bad type", "targets:\n  - name: t\n    type: hots\n    address: 127.0.0.1\n", "hots", "targets[0].type", `unknown target type "hots" (did you mean "host"?)`},
		{"missing address", "targets:\n  - name: t\n    type: host\n", "name: t", "targets[0].address", "missing address"},
		{"bad hostname", "targets:\n  - name: t\n    type: host\n    address: bad_host!\n", "bad_host", "targets[0].address", "invalid hostname"},
		{"bad ipv4", "targets:\n  - name: t\n    type: host\n    address: 127.0.0.256\n", "127.0.0.256", "targets[0].address", "invalid IP address"},
		{"cidr as host", "targets:\n  - name: t\n    type: host\n    address: 127.0.0.0/8\n", "127.0.0.0/8", "targets[0].address", "use type network"},
		{"host:port as host", "targets:\n  - name: t\n    type: host\n    address: 127.0.0.1:22\n", "127.0.0.1:22", "targets[0].address", "use type service"},
		{"bad cidr", "targets:\n  - name: t\n    type: network\n    address: 127.0.0.0/33\n", "/33", "targets[0].address", `invalid network "127.0.0.0/33"`},
		{"ip as network", "targets:\n  - name: t\n    type: network\n    address: 127.0.0.1\n", "127.0.0.1", "targets[0].address", "write a CIDR"},
		{"service bad scheme", "targets:\n  - name: t\n    type: service\n    address: ftp://127.0.0.1/\n", "ftp", "targets[0].address", `unsupported scheme "ftp"`},
		{"service no host", "targets:\n  - name: t\n    type: service\n    address: http:///x\n", "http:", "targets[0].address", "no host; write"},
		{"service bad port", "targets:\n  - name: t\n    type: service\n    address: 127.0.0.1:99999\n", "99999", "targets[0].address", "invalid service address"},
		{"service url bad port", "targets:\n  - name: t\n    type: service\n    address: tcp://127.0.0.1:0\n", "tcp:", "targets[0].address", `invalid port "0"`},
		{"service bare host", "targets:\n  - name: t\n    type: service\n    address: localhost\n", "localhost", "targets[0].address", "write a URL"},
		{"bad tag", "targets:\n  - name: t\n    type: host\n    address: 127.0.0.1\n    tags: [\"a b\"]\n", "tags", "targets[0].tags[0]", "invalid tag"},
		{"unknown rule ref", tgt + "    rules: [pnig]\n" + rule + "    check: icmp\n", "pnig", "targets[0].rules[0]", `unknown rule "pnig"`},
		{"unknown rule ref no suggestion", tgt + "    rules: [zzz]\n", "zzz", "targets[0].rules[0]", "define it under rules:"},
		{"rule listed twice", tgt + "    rules: [r1, r1]\n" + rule + "    check: icmp\n", "[r1, r1]", "targets[0].rules[1]", "listed twice"},
		{"rule applies_to mismatch", tgt + "    rules: [r1]\n" + rule + "    check: http\n    applies_to: [service]\n", "rules: [r1]", "targets[0].rules[0]", "applies to service targets only, not host"},

		// rules
		{"missing check", "rules:\n  - name: r\n", "name: r", "rules[0].check", "missing check; use icmp, tcp,"},
		{"unknown check", rule + "    check: icpm\n", "icpm", "rules[0].check", `unknown check "icpm" (did you mean "icmp"?)`},
		{"bad applies_to", rule + "    check: icmp\n    applies_to: [hosts]\n", "applies_to", "rules[0].applies_to[0]", `did you mean "host"`},
		{"count zero", rule + "    check: icmp\n    count: 0\n", "count", "rules[0].count", "must be at least 1"},
		{"size negative", rule + "    check: icmp\n    size: -1\n", "size", "rules[0].size", "between 0 and 65507"},
		{"retries negative", rule + "    check: icmp\n    retries: -1\n", "retries", "rules[0].retries", "must be 0 or more"},
		{"port zero", rule + "    check: tcp\n    port: 0\n", "port", "rules[0].port", "between 1 and 65535"},
		{"port too big", rule + "    check: tcp\n    port: 70000\n", "port", "rules[0].port", "between 1 and 65535"},
		{"port as word", rule + "    check: tcp\n    port: ssh\n", "port", "rules[0].port", `expected an integer, got "ssh"`},
		{"port range reversed", rule + "    check: portscan\n    ports: 1024-1\n", "ports: ", "rules[0].ports", "write 1-1024"},
		{"port range too big", rule + "    check: portscan\n    ports: 1-70000\n", "ports: ", "rules[0].ports", "between 1 and 65535"},
		{"port list bad item", rule + "    check: portscan\n    ports: 22,http\n", "ports: ", "rules[0].ports", `invalid port "http"`},
		{"port list empty item", rule + "    check: portscan\n    ports: \"22,,80\"\n", "ports: ", "rules[0].ports", "extra comma"},
		{"expect_open bad", rule + "    check: portscan\n    expect_open: top5\n", "expect_open", "rules[0].expect_open", `invalid port "top5"`},
		{"must_be_closed bad", rule + "    check: portscan\n    must_be_closed: [22, 0]\n", "must_be_closed", "rules[0].must_be_closed", `invalid port "0"`},
		{"bad regexp", rule + "    check: tcp\n    expect: \"a(b\"\n", "expect", "rules[0].expect", `invalid regular expression "a(b": missing closing )`},
		{"bad method", rule + "    check: http\n    method: \"GE T\"\n", "method", "rules[0].method", "invalid HTTP method"},
		{"path without slash", rule + "    check: http\n    path: health\n", "path", "rules[0].path", `must start with "/"`},
		{"bad header name", rule + "    check: http\n    headers: {\"X Bad\": 1}\n", "headers", `rules[0].headers["X Bad"]`, "invalid header name"},
		{"duplicate header case", rule + "    check: http\n    headers:\n      Accept: a\n      accept: b\n", "accept: b", "rules[0].headers.accept", "case-insensitive"},
		{"status out of range", rule + "    check: http\n    status: [200, 99]\n", "status", "rules[0].status[1]", "between 100 and 599"},
		{"record type lowercase", rule + "    check: dns\n    record_type: a\n", "record_type", "rules[0].record_type", `did you mean "A"`},
		{"record type unknown", rule + "    check: dns\n    record_type: SOAX\n", "record_type", "rules[0].record_type", "use A, AAAA, CNAME"},
		{"bad dns server", rule + "    check: dns\n    server: 127.0.0.1:99999\n", "server", "rules[0].server", "invalid DNS server"},
		{"exec without command", rule + "    check: exec\n", "name: r1", "rules[0].command", "check exec needs command"},
		{"command on tcp", rule + "    check: tcp\n    command: [ls]\n", "command", "rules[0].command", "only used by check exec"},
		{"empty program", rule + "    check: exec\n    command: [\"\", x]\n", "command", "rules[0].command[0]", "empty program name"},
		{"min_alive negative", rule + "    check: discover\n    min_alive: -1\n", "min_alive", "rules[0].min_alive", "must be 0 or more"},
		{"max_hosts zero", rule + "    check: discover\n    max_hosts: 0\n", "max_hosts", "rules[0].max_hosts", "must be at least 1"},
		{"days negative", rule + "    check: http\n    warn:\n      days: -1\n", "days", "rules[0].warn.days", "must be 0 or more"},
		{"mbps zero", rule + "    check: bandwidth\n    crit:\n      mbps: 0\n", "mbps", "rules[0].crit.mbps", "must be greater than 0"},
		{"range reversed", rule + "    check: exec\n    command: [x]\n    warn:\n      range: \"20:10\"\n", "range", "rules[0].warn.range", "start is greater than end"},
		{"range garbage", rule + "    check: exec\n    command: [x]\n    crit:\n      range: abc\n", "range", "rules[0].crit.range", `invalid range "abc"`},
		{"bad severity", rule + "    check: icmp\n    severity: fatal\n", "severity", "rules[0].severity", "use info, warning or critical"},

		// backend
		{"backend kind", "backend:\n  kind: nast\n", "nast", "backend.kind", `unknown backend kind "nast" (did you mean "nats"?)`},
		{"nats needs url", "backend:\n  kind: nats\n", "kind", "backend.kind", "needs backend.url"},
		{"nats url scheme", "backend:\n  kind: nats\n  url: http://127.0.0.1:4222\n", "url", "backend.url", `unsupported scheme "http"`},
		{"nats url empty item", "backend:\n  kind: nats\n  url: nats://127.0.0.1,\n", "url", "backend.url", "extra comma"},
		{"nats url no scheme", "backend:\n  kind: nats\n  url: 127.0.0.1:4222\n", "url", "backend.url", "invalid NATS URL"},
		{"url with local kind", "backend:\n  url: nats://127.0.0.1:4222\n", "url", "backend.url", "add kind: nats"},
		{"password without user", "backend:\n  kind: nats\n  url: nats://127.0.0.1\n  password: pw\n", "password", "backend.password", "without backend.user"},
		{"user without password", "backend:\n  kind: nats\n  url: nats://127.0.0.1\n  user: u\n", "user", "backend.user", "without backend.password"},
		{"token and creds", "backend:\n  kind: nats\n  url: nats://127.0.0.1\n  creds: /c\n  token: t\n", "token", "backend.token", "choose one NATS authentication"},
		{"tls cert without key", "backend:\n  kind: nats\n  url: tls://127.0.0.1\n  tls:\n    cert: /c.pem\n", "cert", "backend.tls.cert", "without tls.key"},
		{"tls key without cert", "backend:\n  kind: nats\n  url: tls://127.0.0.1\n  tls:\n    key: /k.pem\n", "key", "backend.tls.key", "without tls.cert"},

		// ssh
		{"host key policy", "ssh:\n  host_key_policy: accept\n", "accept", "ssh.host_key_policy", `did you mean "accept-new"`},
		{"host key policy insecure", "ssh:\n  host_key_policy: ignore\n", "ignore", "ssh.host_key_policy", "use strict or accept-new"},
		{"empty identity file", "ssh:\n  identity_files: [\"\"]\n", "identity_files", "ssh.identity_files[0]", "empty identity file"},
		{"bad fingerprint", "ssh:\n  fingerprints:\n    \"127.0.0.1:22\": MD5:aa\n", "MD5", `ssh.fingerprints["127.0.0.1:22"]`, "invalid host key fingerprint"},
		{"fingerprint without port", "ssh:\n  fingerprints:\n    localhost: SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n", "localhost", "ssh.fingerprints.localhost", "keyed by host:port"},

		// transfers
		{"missing source", "transfers:\n  - name: x\n    destination: /b\n", "name: x", "transfers[0].source", "missing source"},
		{"missing destination", "transfers:\n  - name: x\n    source: /a\n", "name: x", "transfers[0].destination", "missing destination"},
		{"bad source scheme", "transfers:\n  - name: x\n    source: ftp://127.0.0.1/a\n    destination: /b\n", "ftp", "transfers[0].source", `unsupported scheme "ftp"`},
		{"http destination", "transfers:\n  - name: x\n    source: /a\n    destination: http://127.0.0.1/b\n", "destination", "transfers[0].destination", "http(s) destinations are not supported"},
		{"sftp without path", "transfers:\n  - name: x\n    source: /a\n    destination: sftp://127.0.0.1\n", "destination", "transfers[0].destination", "no path; write sftp://host/path"},
		{"sftp bad port", "transfers:\n  - name: x\n    source: /a\n    destination: sftp://127.0.0.1:99999/b\n", "destination", "transfers[0].destination", "invalid port"},
		{"scp bad host", "transfers:\n  - name: x\n    source: u@bad_host!:/a\n    destination: /b\n", "source", "transfers[0].source", "invalid hostname"},
		{"bad mode", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    mode: mirror\n", "mode", "transfers[0].mode", "use copy, sync or bisync"},
		{"bad method", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    method: ftp\n", "method", "transfers[0].method", `unknown method "ftp" (did you mean "sftp"?)`},
		{"bad method no suggestion", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    method: robocopy\n", "method", "transfers[0].method", "use scp, sftp, rsync, wget, curl or local"},
		{"wget local source", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    method: wget\n", "method", "transfers[0].method", "needs an http(s):// source"},
		{"sftp method local paths", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    method: scp\n", "method", "transfers[0].method", "needs an sftp://"},
		{"local method remote", "transfers:\n  - name: x\n    source: /a\n    destination: u@127.0.0.1:b\n    method: local\n", "method", "transfers[0].method", "needs local paths"},
		{"rsync with copy", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    mode: copy\n    method: rsync\n", "method", "transfers[0].method", "method rsync means mode sync"},
		{"http source sync", "transfers:\n  - name: x\n    source: https://127.0.0.1/a\n    destination: /b\n    mode: sync\n", "mode", "transfers[0].mode", "http sources support mode copy only"},
		{"bad include glob", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    include: [\"[a-\"]\n", "include", "transfers[0].include[0]", "invalid glob pattern"},
		{"empty exclude", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    exclude: [\"*.log\", \"\"]\n", "exclude", "transfers[0].exclude[1]", "empty pattern"},
		{"bad verify", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    verify: md5\n", "verify", "transfers[0].verify", "use sha256 or none"},
		{"bad sha256", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    sha256: abc\n", "sha256", "transfers[0].sha256", "64 hex characters"},
		{"sha256 with verify none", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    verify: none\n    sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n", "sha256", "transfers[0].sha256", "verify is none"},
		{"negative retries", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    retries: -2\n", "retries", "transfers[0].retries", "must be 0 or more"},
		{"delete with copy", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    delete: true\n", "delete", "transfers[0].delete", "only applies to mode sync, not copy"},
		{"negative max_delete", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    max_delete: -1\n", "max_delete", "transfers[0].max_delete", "must be 0 or more"},
		{"bad bwlimit", "transfers:\n  - name: x\n    source: /a\n    destination: /b\n    bwlimit: fast\n", "bwlimit", "transfers[0].bwlimit", "invalid bandwidth limit"},

		// ipc
		{"bad overflow", "ipc:\n  queues:\n    - name: q\n      overflow: drop-newest\n", "overflow", "ipc.queues[0].overflow", `did you mean "drop-oldest"`},
		{"max_size zero", "ipc:\n  queues:\n    - name: q\n      max_size: 0\n", "max_size", "ipc.queues[0].max_size", "must be greater than 0"},
		{"max_size negative", "ipc:\n  queues:\n    - name: q\n      max_size: -5\n", "max_size", "ipc.queues[0].max_size", "must be greater than 0"},

		// documents
		{"two documents", "backend: {kind: local}\n---\nstate_dir: /x\n", "---", "", "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := mustFail(t, tt.doc)
			wantLine := lineOf(t, tt.doc, tt.at)
			if is.Line != wantLine || is.Key != tt.key || !strings.Contains(is.Msg, tt.msg) {
				t.Errorf("got  %d %q %q\nwant %d %q containing %q", is.Line, is.Key, is.Msg, wantLine, tt.key, tt.msg)
			}
			if is.File != "test.yaml" {
				t.Errorf("File = %q, want test.yaml", is.File)
			}
			if strings.ContainsAny(is.Msg, "\n\r") || is.Msg == "" || strings.ToLower(is.Msg[:1]) != is.Msg[:1] {
				t.Errorf("message must be one lowercase line: %q", is.Msg)
			}
		})
	}
}

func TestManyIssuesCollectedAndSorted(t *testing.T) {
	doc := `rules:
  - name: r
    check: icmp
    count: three
targets:
  - name: t
    type: network
    address: 10.0.0.0/99
    adress: x
backend:
  kind: nast
`
	_, err := Parse("netops.yaml", []byte(doc))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := []string{
		`netops.yaml:4:12: rules[0].count: expected an integer, got "three"`,
		`netops.yaml:8:5: targets[0].address: invalid network "10.0.0.0/99" (prefix length out of range); write a CIDR like 192.0.2.0/24 or 2001:db8::/64`,
		`netops.yaml:9:5: targets[0].adress: unknown key "adress" (did you mean "address"?)`,
		`netops.yaml:11:3: backend.kind: unknown backend kind "nast" (did you mean "nats"?)`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("Error() =\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestTypoOfRequiredKeyReportedOnce(t *testing.T) {
	doc := "targets:\n  - name: t\n    type: host\n    adress: 127.0.0.1\n"
	is := mustFail(t, doc)
	if is.Key != "targets[0].adress" || is.Line != 4 {
		t.Errorf("got %+v", is)
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line int
	}{
		{"bad indentation", "targets:\n  - name: x\n    type: host\n   address: 127.0.0.1\n", 4},
		{"unclosed flow list", "a: 1\nb: [1, 2\nc: 3\n", 2},
		{"tab indentation", "ssh:\n\tagent: true\n", 2},
		{"mapping in scalar", "state_dir: a: b\n", 1},
		{"unclosed quote", "rules:\n  - name: a\n    expect: \"^(SSH\n  - name: b\n", 3},
		{"unknown anchor", "rules:\n  - *nope\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := mustFail(t, tt.doc)
			if is.Line != tt.line || !strings.HasPrefix(is.Msg, "invalid YAML: ") {
				t.Errorf("got line %d %q, want line %d invalid YAML", is.Line, is.Msg, tt.line)
			}
			want := "test.yaml:" + strconv.Itoa(tt.line) + ": invalid YAML: "
			if !strings.HasPrefix(is.String(), want) {
				t.Errorf("String() = %q, want prefix %q", is.String(), want)
			}
		})
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	doc := `rules:
  - &base
    name: ping
    check: icmp
    timeout: 2s
  - <<: *base
    name: ping-slow
    timeout: 10s
targets:
  - name: t
    type: host
    address: 127.0.0.1
    rules: &both [ping, ping-slow]
  - name: t2
    type: host
    address: ::1
    rules: *both
`
	c, err := Parse("a.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := c.Rule("ping-slow")
	if !ok || r.Check != CheckICMP || r.Timeout.D().Seconds() != 10 {
		t.Errorf("merged rule = %+v", r)
	}
	if got := c.Targets[1].Rules; len(got) != 2 || got[1] != "ping-slow" {
		t.Errorf("aliased list = %v", got)
	}
	// an unknown key inside a merged mapping is still caught
	bad := "base: &b {name: x}\n"
	if _, err := Parse("a.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), `unknown key "base"`) {
		t.Errorf("want unknown key error, got %v", err)
	}
	merged := "rules:\n  - <<: {name: a, check: icmp, cuont: 1}\n"
	if is := mustFail(t, merged); is.Key != "rules[0].cuont" || is.Line != 2 {
		t.Errorf("got %+v", is)
	}
}

func TestAliasBombIsBounded(t *testing.T) {
	// Each level merges the previous one ten times: 10^9 mappings if expanded.
	var b strings.Builder
	b.WriteString("targets:\n  - &a0 {name: t, type: host, address: 127.0.0.1}\n")
	for i := 1; i < 10; i++ {
		prev := "*a" + strconv.Itoa(i-1)
		b.WriteString("  - &a" + strconv.Itoa(i) + " {<<: [" + strings.Repeat(prev+", ", 9) + prev + "]}\n")
	}
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too many values") {
		t.Fatalf("want a too-many-values error, got %v", err)
	}
}
