package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	fixtureDir  = "../../testdata/config"
	examplePath = "../../configs/netops.example.yaml"
)

// exported returns c with its unexported bookkeeping cleared, for
// comparisons of the schema fields only.
func exported(c *Config) Config {
	x := *c
	x.file, x.pos, x.overrides = "", nil, nil
	return x
}

// TestFixtures checks every testdata/config fixture against the
// "# expect: LINE:KEY" (or "# expect: ok") comment on its first line.
func TestFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", fixtureDir, err)
	}
	required := map[string]bool{"valid-full.yaml": false, "misspelled-key.yaml": false, "bad-cidr.yaml": false,
		"duplicate-target.yaml": false, "bad-duration.yaml": false, "bad-port-range.yaml": false, "bad-type.yaml": false}
	for _, f := range files {
		base := filepath.Base(f)
		if _, ok := required[base]; ok {
			required[base] = true
		}
		t.Run(base, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			expect, ok := strings.CutPrefix(first, "# expect: ")
			if !ok {
				t.Fatalf("first line must be \"# expect: LINE:KEY\" or \"# expect: ok\", got %q", first)
			}
			c, err := Load(f)
			if expect == "ok" {
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
				if c.File() != f {
					t.Errorf("File() = %q, want %q", c.File(), f)
				}
				return
			}
			lineStr, key, _ := strings.Cut(expect, ":")
			line, err2 := strconv.Atoi(lineStr)
			if err2 != nil {
				t.Fatalf("bad expect line %q", first)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if len(ce.Issues) != 1 {
				t.Fatalf("fixture must hold exactly one error, got %d:\n%v", len(ce.Issues), err)
			}
			is := ce.Issues[0]
			if is.Line != line || is.Key != key || is.File != f {
				t.Errorf("got %s:%d %q, want %s:%d %q (%s)", is.File, is.Line, is.Key, f, line, key, is.Msg)
			}
			msg := err.Error()
			if !strings.Contains(msg, f+":"+lineStr+":") || !strings.Contains(msg, key) || strings.Contains(msg, "\n") {
				t.Errorf("message %q must hold %s:%s: and %q on one line", msg, f, lineStr, key)
			}
		})
	}
	for name, seen := range required {
		if !seen {
			t.Errorf("required fixture %s is missing", name)
		}
	}
}

func TestExampleParses(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("example config does not load:\n%v", err)
	}
	if len(c.Targets) == 0 || len(c.Rules) == 0 || len(c.Transfers) == 0 || len(c.IPC.Queues) != 2 || len(c.IPC.Channels) != 1 {
		t.Errorf("example is missing sections: %+v", exported(c))
	}
	if q, ok := c.Queue("events"); !ok || q.MaxSize != 200 || q.Overflow != OverflowDropOldest {
		t.Errorf("queue events = %+v", q)
	}
	if q, ok := c.Queue("user_notifications"); !ok || q.MaxSize != 50 {
		t.Errorf("queue user_notifications = %+v", q)
	}
	if _, ok := c.Channel("alerts"); !ok {
		t.Error("channel alerts missing")
	}
	// Only loopback: every address must be loopback.
	for _, tg := range c.Targets {
		a := tg.Address
		if !(strings.Contains(a, "127.0.0.") || a == "::1" || a == "localhost") {
			t.Errorf("target %s address %q is not loopback", tg.Name, a)
		}
	}
	for _, tr := range c.Transfers {
		for _, loc := range []string{tr.Source, tr.Destination} {
			e, err := ParseEndpoint(loc)
			if err != nil || (e.Remote() && e.Host != "127.0.0.1") || (!e.Remote() && !strings.HasPrefix(e.Path, "/tmp/")) {
				t.Errorf("transfer %s location %q is not loopback or /tmp", tr.Name, loc)
			}
		}
	}
	if c.Backend.Kind != BackendLocal {
		t.Errorf("example backend = %q, want local", c.Backend.Kind)
	}
}

func roundTripInputs(t *testing.T) map[string]*Config {
	t.Helper()
	in := map[string]*Config{}
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "valid-*.yaml"))
	files = append(files, examplePath)
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		in[f] = c
		in[f+" (defaults)"] = c.WithDefaults()
		in[f+" (masked)"] = c.Masked()
	}
	in["Default()"] = Default()
	in["empty"] = &Config{}
	return in
}

func TestExportRoundTrip(t *testing.T) {
	for name, c := range roundTripInputs(t) {
		t.Run(name, func(t *testing.T) {
			out1, err := c.Export()
			if err != nil {
				t.Fatal(err)
			}
			c2, err := Parse("export.yaml", out1)
			if err != nil {
				t.Fatalf("exported YAML does not parse:\n%v\n%s", err, out1)
			}
			if a, b := exported(c), exported(c2); !reflect.DeepEqual(a, b) {
				t.Errorf("round trip differs:\nbefore %+v\nafter  %+v\nYAML:\n%s", a, b, out1)
			}
			out2, err := c2.Export()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out1, out2) {
				t.Errorf("second export differs:\n%s\n---\n%s", out1, out2)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	c, err := Load(filepath.Join(fixtureDir, "valid-full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"state_dir":`, `"connect_timeout":"5s"`, `"loss":"60.5%"`, `"host_key_policy":"accept-new"`, `"max_delete":0`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(exported(c), back) {
		t.Errorf("JSON round trip differs:\n%+v\n%+v", exported(c), back)
	}
	empty, _ := json.Marshal(&Config{})
	if string(empty) != "{}" {
		t.Errorf("empty config JSON = %s, want {}", empty)
	}
}

func TestEmptyConfigIsValid(t *testing.T) {
	for _, doc := range []string{"", "\n", "# only a comment\n", "---\n", "{}\n", "~\n"} {
		c, err := Parse("empty.yaml", []byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if !reflect.DeepEqual(exported(c), Config{}) {
			t.Errorf("%q: want zero config, got %+v", doc, exported(c))
		}
		if got, want := exported(c.WithDefaults()), exported(Default()); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: WithDefaults = %+v, want Default() %+v", doc, got, want)
		}
	}
	c, err := Load("")
	if err != nil || !reflect.DeepEqual(exported(c), exported(Default())) {
		t.Errorf("Load(\"\") = %+v, %v; want Default()", c, err)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default() does not validate: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	d := Default()
	if d.Backend.Kind != BackendLocal || d.SSH.HostKeyPolicy != HostKeyStrict || d.SSH.KnownHosts != "~/.ssh/known_hosts" ||
		d.SSH.Agent == nil || !*d.SSH.Agent || d.SSH.ConnectTimeout.D() != 10*time.Second || d.SSH.Keepalive.D() != 15*time.Second {
		t.Errorf("Default() = %+v", d)
	}
	if d.StateDir != "" {
		t.Errorf("state_dir default must be left to the caller, got %q", d.StateDir)
	}
	doc := `ssh: {agent: false}
rules:
  - {name: p, check: icmp}
  - {name: h, check: http, follow_redirects: false, timeout: 1s}
  - {name: s, check: portscan}
  - {name: s2, check: portscan, must_be_closed: "23"}
transfers:
  - {name: a, source: /a, destination: /b}
  - {name: r, source: /a, destination: /b, method: rsync}
ipc: {queues: [{name: q}]}
`
	c, err := Parse("d.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := c.Export()
	w := c.WithDefaults()
	after, _ := c.Export()
	if !bytes.Equal(before, after) {
		t.Error("WithDefaults modified its receiver")
	}
	if err := w.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if *w.SSH.Agent {
		t.Error("explicit agent: false was overwritten")
	}
	p, _ := w.Rule("p")
	if p.Count != 3 || p.Interval.D() != time.Second || p.Timeout.D() != 2*time.Second || p.Severity != SeverityCritical {
		t.Errorf("icmp defaults = %+v", p)
	}
	h, _ := w.Rule("h")
	if h.Method != "GET" || *h.FollowRedirects || h.Timeout.D() != time.Second {
		t.Errorf("http defaults = %+v", h)
	}
	if s, _ := w.Rule("s"); s.Ports != PortsTop100 {
		t.Errorf("portscan default ports = %q", s.Ports)
	}
	if s, _ := w.Rule("s2"); s.Ports != "" {
		t.Errorf("portscan with must_be_closed got default ports %q", s.Ports)
	}
	a, _ := w.Transfer("a")
	if a.Mode != ModeCopy || a.Verify != VerifySHA256 || a.MaxDelete == nil || *a.MaxDelete != DefaultMaxDelete {
		t.Errorf("transfer defaults = %+v", a)
	}
	if r, _ := w.Transfer("r"); r.Mode != ModeSync {
		t.Errorf("method rsync mode = %q, want sync", r.Mode)
	}
	if q, _ := w.Queue("q"); q.MaxSize != DefaultQueueMaxSize || q.Overflow != OverflowDropOldest {
		t.Errorf("queue defaults = %+v", q)
	}
}

func TestLocate(t *testing.T) {
	root := t.TempDir()
	cwd := filepath.Join(root, "work")
	home := filepath.Join(root, "home")
	etc := filepath.Join(root, "etc")
	cwdFile := filepath.Join(cwd, "netops.yaml")
	homeFile := filepath.Join(home, ".config", "netops", "netops.yaml")
	etcFile := filepath.Join(etc, "netops.yaml")
	for _, d := range []string{cwd, filepath.Dir(homeFile), etc} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := Locate("", cwd, home, etc); got != "" {
		t.Errorf("nothing exists: got %q", got)
	}
	write(etcFile)
	if got := Locate("", cwd, home, etc); got != etcFile {
		t.Errorf("etc only: got %q", got)
	}
	write(homeFile)
	if got := Locate("", cwd, home, etc); got != homeFile {
		t.Errorf("home before etc: got %q", got)
	}
	write(cwdFile)
	if got := Locate("", cwd, home, etc); got != cwdFile {
		t.Errorf("cwd first: got %q", got)
	}
	if got := Locate("/no/such/file.yaml", cwd, home, etc); got != "/no/such/file.yaml" {
		t.Errorf("explicit must win even if missing: got %q", got)
	}
	if got := Locate("", "", "", etc); got != etcFile {
		t.Errorf("empty cwd/home are skipped: got %q", got)
	}
	// a directory named netops.yaml is not a config file
	os.Remove(cwdFile)
	os.Mkdir(cwdFile, 0o755)
	if got := Locate("", cwd, home, etc); got != homeFile {
		t.Errorf("directory must be skipped: got %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(missing)
	var ce *Error
	if !errors.As(err, &ce) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want *Error wrapping fs.ErrNotExist, got %T %v", err, err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, missing+": config file not found") {
		t.Errorf("message = %q", msg)
	}
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: got %v", err)
	}
	if os.Geteuid() != 0 {
		p := filepath.Join(t.TempDir(), "secret.yaml")
		os.WriteFile(p, []byte("{}"), 0o000)
		if _, err := Load(p); err == nil || !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable: got %v", err)
		}
	}
}

func TestParseStdinName(t *testing.T) {
	_, err := Parse("-", []byte("bogus: 1\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "<stdin>:1:1: bogus: unknown key") {
		t.Errorf("got %v", err)
	}
	c, err := Parse("-", []byte("{}"))
	if err != nil || c.File() != "<stdin>" {
		t.Errorf("File() = %q, %v", c.File(), err)
	}
}

func TestIssueString(t *testing.T) {
	tests := []struct {
		is   Issue
		want string
	}{
		{Issue{File: "netops.yaml", Line: 12, Column: 5, Key: "targets[1].adress", Msg: "m"}, "netops.yaml:12:5: targets[1].adress: m"},
		{Issue{File: "netops.yaml", Line: 3, Msg: "invalid YAML: x"}, "netops.yaml:3: invalid YAML: x"},
		{Issue{Source: "NETOPS_BACKEND_KIND", Key: "backend.kind", Msg: "m"}, "NETOPS_BACKEND_KIND: backend.kind: m"},
		{Issue{File: "netops.yaml", Key: "backend.url", Msg: "m"}, "netops.yaml: backend.url: m"},
		{Issue{Key: "backend.url", Msg: "m"}, "backend.url: m"},
		{Issue{Msg: "two\nlines"}, "two lines"},
	}
	for _, tt := range tests {
		if got := tt.is.String(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.is, got, tt.want)
		}
	}
	e := &Error{Err: fs.ErrNotExist}
	if e.Error() != fs.ErrNotExist.Error() || !errors.Is(e, fs.ErrNotExist) {
		t.Errorf("Error without issues = %q", e.Error())
	}
}

func TestLookups(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if tg, ok := c.Target("loopback-net"); !ok || tg.Type != TargetNetwork {
		t.Errorf("Target = %+v, %v", tg, ok)
	}
	if r, ok := c.Rule("ping"); !ok || r.Check != CheckICMP {
		t.Errorf("Rule = %+v, %v", r, ok)
	}
	if tr, ok := c.Transfer("mirror-configs"); !ok || tr.Mode != ModeSync {
		t.Errorf("Transfer = %+v, %v", tr, ok)
	}
	for _, name := range []string{"nope", ""} {
		if _, ok := c.Target(name); ok {
			t.Errorf("Target(%q) found", name)
		}
		if _, ok := c.Rule(name); ok {
			t.Errorf("Rule(%q) found", name)
		}
		if _, ok := c.Transfer(name); ok {
			t.Errorf("Transfer(%q) found", name)
		}
	}
	if p, ok := c.Position("targets[0].address"); !ok || p.Line == 0 {
		t.Errorf("Position = %+v, %v", p, ok)
	}
	is := c.Issue("targets[0].info", "diag says no")
	if is.File != examplePath || is.Line == 0 {
		t.Errorf("Issue = %+v", is)
	}
}

func TestMaskedNeverLeaks(t *testing.T) {
	secrets := []string{"fixture-password-123", "fixture-url-secret", "fixture-query-secret", "fixture-bearer-secret",
		"fixture-apikey-secret", "fixture-sftp-secret", "fixture-argv-secret", "fixture-token-secret", "nats-url-secret"}
	var all []*Config
	for _, f := range []string{"valid-full.yaml", "valid-nats-token.yaml"} {
		c, err := Load(filepath.Join(fixtureDir, f))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, c)
	}
	c := &Config{Backend: Backend{Kind: BackendNATS, URL: "nats://u:nats-url-secret@127.0.0.1:4222,tls://127.0.0.1:4223", User: "u", Password: "fixture-password-123"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	all = append(all, c)
	for _, c := range all {
		orig, _ := c.Export()
		found := 0
		for _, s := range secrets {
			if bytes.Contains(orig, []byte(s)) {
				found++
			}
		}
		if found == 0 {
			t.Fatal("test config holds no secret")
		}
		m := c.Masked()
		out, err := m.Export()
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(m)
		for _, s := range secrets {
			if bytes.Contains(out, []byte(s)) || bytes.Contains(js, []byte(s)) {
				t.Errorf("masked output leaks %q:\n%s", s, out)
			}
		}
		if !bytes.Contains(out, []byte(Mask)) {
			t.Errorf("masked output has no %s:\n%s", Mask, out)
		}
		if err := m.Validate(); err != nil {
			t.Errorf("masked config does not validate: %v", err)
		}
		if after, _ := c.Export(); !bytes.Equal(orig, after) {
			t.Error("Masked modified its receiver")
		}
	}
	// non-secret parts survive
	m := all[0].Masked()
	if tr, _ := m.Transfer("backup_configs"); tr.Destination != "sftp://backup:"+Mask+"@127.0.0.1:2222/backup/configs" {
		t.Errorf("destination = %q", tr.Destination)
	}
	if tg, _ := m.Target("api"); tg.Address != "https://monitor:"+Mask+"@127.0.0.1:8443/healthz?token="+Mask {
		t.Errorf("address = %q", tg.Address)
	}
	if r, _ := m.Rule("http"); r.Headers["Accept"] != "application/json" || r.Headers["Authorization"] != Mask {
		t.Errorf("headers = %v", r.Headers)
	}
}

func TestErrorsDoNotLeakURLPasswords(t *testing.T) {
	doc := "backend:\n  kind: nats\n  url: ftp://u:leaky-secret@127.0.0.1\n" +
		"transfers:\n  - {name: a, source: /a, destination: \"sftp://u:leaky-secret@127.0.0.1:0/x\"}\n"
	_, err := Parse("x.yaml", []byte(doc))
	if err == nil || strings.Contains(err.Error(), "leaky-secret") {
		t.Errorf("error leaks or is missing: %v", err)
	}
}

// schemaPaths lists every field path of t: "targets[].address", ...
func schemaPaths(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" {
			continue
		}
		p := joinKey(prefix, name)
		*out = append(*out, p)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice {
			schemaPaths(ft.Elem(), p+"[]", out)
		} else {
			schemaPaths(ft, p, out)
		}
	}
}

// TestFixturesUseEveryField makes sure the valid fixtures (which the round
// trip test exports) exercise every key of the schema.
func TestFixturesUseEveryField(t *testing.T) {
	var want []string
	schemaPaths(reflect.TypeFor[Config](), "", &want)
	used := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "valid-*.yaml"))
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		for k := range c.pos {
			var b strings.Builder
			for i := 0; i < len(k); i++ {
				if k[i] == '[' && i+1 < len(k) && k[i+1] >= '0' && k[i+1] <= '9' {
					j := strings.IndexByte(k[i:], ']')
					b.WriteString("[]")
					i += j
					continue
				}
				b.WriteByte(k[i])
			}
			used[b.String()] = true
		}
	}
	if len(want) < 80 {
		t.Fatalf("schema walk found only %d paths", len(want))
	}
	for _, p := range want {
		if !used[p] {
			t.Errorf("no valid fixture sets %s", p)
		}
	}
}
