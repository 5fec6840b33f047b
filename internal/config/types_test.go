package config

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"100ms", 100 * time.Millisecond, "100ms"},
		{"2s", 2 * time.Second, "2s"},
		{"60s", time.Minute, "1m"},
		{"1h", time.Hour, "1h"},
		{"90m", 90 * time.Minute, "1h30m"},
		{"1m0.5s", 60*time.Second + 500*time.Millisecond, "1m0.5s"},
		{" 3s ", 3 * time.Second, "3s"},
	}
	for _, tt := range tests {
		d, err := ParseDuration(tt.in)
		if err != nil || d.D() != tt.want || d.String() != tt.out {
			t.Errorf("ParseDuration(%q) = %v (%s), %v; want %v %s", tt.in, d.D(), d, err, tt.want, tt.out)
		}
		again, err := ParseDuration(d.String())
		if err != nil || again != d {
			t.Errorf("canonical form %q does not parse back", d.String())
		}
	}
	for _, bad := range []string{"", "5", "1.5", "0s", "-1s", "soon", "5 s"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", bad)
		}
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"250ms"`), &d); err != nil || d.D() != 250*time.Millisecond {
		t.Errorf("json: %v %v", d, err)
	}
	if err := json.Unmarshal([]byte(`5`), &d); err == nil {
		t.Error("json number accepted as duration")
	}
	if b, _ := json.Marshal(Duration(time.Minute)); string(b) != `"1m"` {
		t.Errorf("json marshal = %s", b)
	}
}

func TestPercent(t *testing.T) {
	for in, want := range map[string]float64{"20%": 20, "20": 20, "20.5": 20.5, "0%": 0, "100 %": 100, " 7.25% ": 7.25} {
		p, err := ParsePercent(in)
		if err != nil || float64(p) != want {
			t.Errorf("ParsePercent(%q) = %v, %v", in, p, err)
		}
	}
	for _, bad := range []string{"", "%", "-1%", "101", "NaN", "lots", "20%%"} {
		if _, err := ParsePercent(bad); err == nil {
			t.Errorf("ParsePercent(%q) succeeded", bad)
		}
	}
	if s := Percent(12.5).String(); s != "12.5%" {
		t.Errorf("String = %q", s)
	}
	var p Percent
	for _, in := range []string{`"20%"`, `20`, `20.0`} {
		if err := json.Unmarshal([]byte(in), &p); err != nil || p != 20 {
			t.Errorf("json %s: %v %v", in, p, err)
		}
	}
	// YAML accepts integers, floats and strings
	for _, doc := range []string{"loss: 20", "loss: 20.0", "loss: '20%'", "loss: 20%"} {
		c, err := Parse("p.yaml", []byte("rules:\n  - name: r\n    check: icmp\n    warn: {"+doc+"}\n"))
		if err != nil || *c.Rules[0].Warn.Loss != 20 {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func TestPortSpec(t *testing.T) {
	tests := []struct {
		in     string
		ranges []PortRange
		named  []string
	}{
		{"22", []PortRange{{22, 22}}, nil},
		{"22,80,443", []PortRange{{22, 22}, {80, 80}, {443, 443}}, nil},
		{"1-1024", []PortRange{{1, 1024}}, nil},
		{"top100", nil, []string{"top100"}},
		{"top1000, 8080-8090", []PortRange{{8080, 8090}}, []string{"top1000"}},
		{"65535", []PortRange{{65535, 65535}}, nil},
	}
	for _, tt := range tests {
		r, n, err := PortSpec(tt.in).Parse()
		if err != nil || !reflect.DeepEqual(r, tt.ranges) || !reflect.DeepEqual(n, tt.named) {
			t.Errorf("Parse(%q) = %v %v %v", tt.in, r, n, err)
		}
	}
	for _, bad := range []string{"", "0", "65536", "a", "1-", "-5", "10-5", "22,,80", "top50", "1-2-3"} {
		if _, _, err := PortSpec(bad).Parse(); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
	// YAML forms are normalised to the comma-separated form
	for doc, want := range map[string]PortSpec{"22": "22", `"22, 80"`: "22,80", "[22, 8000-8080]": "22,8000-8080", "[top100, 8080]": "top100,8080"} {
		c, err := Parse("p.yaml", []byte("rules:\n  - name: r\n    check: portscan\n    ports: "+doc+"\n"))
		if err != nil || c.Rules[0].Ports != want {
			t.Errorf("ports: %s -> %q, %v; want %q", doc, c.Rules[0].Ports, err, want)
		}
	}
}

func TestParseRange(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		in    string
		want  Range
		alert map[float64]bool
	}{
		{"10", Range{0, 10, false}, map[float64]bool{-1: true, 0: false, 10: false, 11: true}},
		{"10:", Range{10, inf, false}, map[float64]bool{9: true, 10: false, 1e9: false}},
		{"~:20", Range{math.Inf(-1), 20, false}, map[float64]bool{-1e9: false, 20: false, 21: true}},
		{"10:20", Range{10, 20, false}, map[float64]bool{9: true, 15: false, 21: true}},
		{"@10:20", Range{10, 20, true}, map[float64]bool{9: false, 10: true, 20: true, 21: false}},
		{"0.5:1.5", Range{0.5, 1.5, false}, map[float64]bool{1: false, 2: true}},
	}
	for _, tt := range tests {
		r, err := ParseRange(tt.in)
		if err != nil || r != tt.want {
			t.Errorf("ParseRange(%q) = %+v, %v", tt.in, r, err)
			continue
		}
		for v, want := range tt.alert {
			if r.Alert(v) != want {
				t.Errorf("%q.Alert(%v) = %v", tt.in, v, !want)
			}
		}
	}
	for _, bad := range []string{"", "@", "abc", "20:10", "1:x", "x:1", "~", "NaN"} {
		if _, err := ParseRange(bad); err == nil {
			t.Errorf("ParseRange(%q) succeeded", bad)
		}
	}
}

func TestParseBandwidth(t *testing.T) {
	for in, want := range map[string]int64{"1000": 1000, "512K": 512 << 10, "10M": 10 << 20, "1G": 1 << 30, "1.5m": 3 << 19, "2k": 2048} {
		got, err := ParseBandwidth(in)
		if err != nil || got != want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "10MB/s", "-1M", "0", "1e3", "K"} {
		if _, err := ParseBandwidth(bad); err == nil {
			t.Errorf("ParseBandwidth(%q) succeeded", bad)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in   string
		want Endpoint
	}{
		{"/etc", Endpoint{Kind: EndpointLocal, Path: "/etc"}},
		{"relative/dir", Endpoint{Kind: EndpointLocal, Path: "relative/dir"}},
		{"./a:b", Endpoint{Kind: EndpointLocal, Path: "./a:b"}},
		{"sftp://127.0.0.1/backup", Endpoint{Kind: EndpointSFTP, Host: "127.0.0.1", Path: "/backup"}},
		{"sftp://backup:pw@localhost:2222/b/c", Endpoint{Kind: EndpointSFTP, User: "backup", Password: "pw", Host: "localhost", Port: 2222, Path: "/b/c"}},
		{"sftp://[::1]:22/x", Endpoint{Kind: EndpointSFTP, Host: "::1", Port: 22, Path: "/x"}},
		{"backup@127.0.0.1:logs/", Endpoint{Kind: EndpointSFTP, User: "backup", Host: "127.0.0.1", Path: "logs/"}},
		{"root@[::1]:/var/log", Endpoint{Kind: EndpointSFTP, User: "root", Host: "::1", Path: "/var/log"}},
		{"u@localhost:", Endpoint{Kind: EndpointSFTP, User: "u", Host: "localhost", Path: ""}},
		{"https://127.0.0.1:8443/f.iso?x=1", Endpoint{Kind: EndpointHTTP, Host: "127.0.0.1", Port: 8443, Path: "/f.iso", URL: "https://127.0.0.1:8443/f.iso?x=1"}},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseEndpoint(%q) = %+v, %v\nwant %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "ftp://h/x", "sftp://h", "sftp:///x", "http://", "sftp://h:70000/x", "u@bad_host!:/x", "a\nb"} {
		if e, err := ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) = %+v, want error", bad, e)
		}
	}
}

func TestCheckHost(t *testing.T) {
	for _, ok := range []string{"127.0.0.1", "::1", "fe80::1%eth0", "localhost", "a.example.com", "a-b.c", "xn--bcher-kva.example", "localhost.", "_srv.local"} {
		if err := CheckHost(ok); err != nil {
			t.Errorf("CheckHost(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a.com", "a-.com", "a..b", "256.1.1.1", "1.2.3", "a b", strings.Repeat("a", 64) + ".com", "::g"} {
		if err := CheckHost(bad); err == nil {
			t.Errorf("CheckHost(%q) succeeded", bad)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"name", "type", "address", "info", "tags", "rules"}
	for in, want := range map[string]string{"adress": "address", "Address": "address", "nmae": "name", "tpye": "type",
		"rule": "rules", "addresses": "address", "zzz": "", "": "", "x": ""} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://u:p@h:4222":               "nats://u:" + Mask + "@h:4222",
		"nats://u@h:4222":                 "nats://u@h:4222",
		"https://h/x?token=abc&page=2#f":  "https://h/x?token=" + Mask + "&page=2#f",
		"https://u:p@ss@h/p@x":            "https://u:" + Mask + "@h/p@x",
		"/local/path?token=1":             "/local/path?token=1",
		"tcp://127.0.0.1:22":              "tcp://127.0.0.1:22",
		"https://h/?api_key=k&APIKEY=k2":  "https://h/?api_key=" + Mask + "&APIKEY=" + Mask,
		"https://h/?password=&user=alice": "https://h/?password=" + Mask + "&user=alice",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
