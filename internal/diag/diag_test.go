package diag

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/probe"
)

func TestAdHocTarget(t *testing.T) {
	tests := []struct {
		arg, typ, addr, errPart string
	}{
		{"127.0.0.1", "host", "127.0.0.1", ""},
		{"::1", "host", "::1", ""},
		{"[::1]", "host", "::1", ""},
		{"localhost", "host", "localhost", ""},
		{"web-1.example.org", "host", "web-1.example.org", ""},
		{"127.0.0.0/29", "network", "127.0.0.0/29", ""},
		{"127.0.0.5/29", "network", "127.0.0.0/29", ""},
		{"https://127.0.0.1:8443/healthz", "service", "https://127.0.0.1:8443/healthz", ""},
		{"tcp://127.0.0.1:22", "service", "tcp://127.0.0.1:22", ""},
		{"127.0.0.1:22", "service", "tcp://127.0.0.1:22", ""},
		{"[::1]:22", "service", "tcp://[::1]:22", ""},
		{"10.0.0.0/33", "", "", "not a valid CIDR"},
		{"ftp://h/", "", "", "unsupported URL scheme"},
		{"127.0.0.1:0", "", "", "port must be"},
		{"a;rm -rf /", "", "", "not a configured target"},
		{"$(reboot)", "", "", "not a configured target"},
		{"-rf", "", "", "not a configured target"},
		{"", "", "", "empty target"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := AdHocTarget(tt.arg)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("err = %v, want %q", err, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tt.typ || got.Address != tt.addr {
				t.Errorf("got %s %s, want %s %s", got.Type, got.Address, tt.typ, tt.addr)
			}
		})
	}
}

func TestPlanAppliesByType(t *testing.T) {
	cfg := &config.Config{
		Targets: []config.Target{
			{Name: "h", Type: "host", Address: "127.0.0.1"},
			{Name: "n", Type: "network", Address: "127.0.0.0/30"},
			{Name: "s", Type: "service", Address: "http://127.0.0.1:8080/"},
			{Name: "only", Type: "host", Address: "127.0.0.1", Rules: []string{"lat"}},
		},
		Rules: []config.Rule{
			{Name: "ping", Check: "icmp"},
			{Name: "scan", Check: "portscan"},
			{Name: "disc", Check: "discover"},
			{Name: "web", Check: "http"},
			{Name: "lat", Check: "latency"},
		},
	}
	checks := Plan(cfg, cfg.Targets, nil)
	got := map[string][]string{}
	for _, c := range checks {
		got[c.Target.Name] = append(got[c.Target.Name], c.Rule.Name)
	}
	want := map[string]string{"h": "ping scan lat", "n": "scan disc", "s": "ping web", "only": "lat"}
	for name, w := range want {
		if g := strings.Join(got[name], " "); g != w {
			t.Errorf("%s: rules %q, want %q", name, g, w)
		}
	}
	// Defaults are filled in: icmp gets a count.
	if checks[0].Rule.Count == 0 {
		t.Errorf("rule defaults not applied: %+v", checks[0].Rule)
	}
	if f := Plan(cfg, cfg.Targets, []string{"lat"}); len(f) != 2 {
		t.Errorf("rule filter: %d checks, want 2", len(f))
	}
}

func TestPlanBuiltinRules(t *testing.T) {
	cfg := &config.Config{}
	targets := []config.Target{
		{Name: "ip", Type: "host", Address: "127.0.0.1"},
		{Name: "name", Type: "host", Address: "localhost"},
		{Name: "web", Type: "service", Address: "https://127.0.0.1/"},
		{Name: "tcp", Type: "service", Address: "tcp://127.0.0.1:22"},
		{Name: "net", Type: "network", Address: "127.0.0.0/29"},
	}
	got := map[string]string{}
	for _, c := range Plan(cfg, targets, nil) {
		got[c.Target.Name] += c.Rule.Name + " "
	}
	want := map[string]string{
		"ip": "ping ports ", "name": "ping dns ports ", "web": "ping tcp http ", "tcp": "ping tcp ", "net": "discover ",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
}

func fixed(res probe.Result) probe.Func {
	return func(ctx context.Context, t probe.Target, r config.Rule) probe.Result { return res }
}

func TestRunStatusesScoreAndSeverity(t *testing.T) {
	tgt := config.Target{Name: "t", Type: "host", Address: "127.0.0.1"}
	rtt := func(sec float64) probe.Result {
		r := probe.Result{Status: probe.OK, Message: "measured"}
		r.AddMetric(probe.MetricRTT, sec, "s")
		return r
	}
	probes := map[string]probe.Func{
		"ok":      fixed(rtt(0.001)),
		"slow":    fixed(rtt(0.3)),
		"refused": fixed(probe.Failf(probe.Critical, probe.ReasonRefused, "connection refused")),
		"perm":    fixed(probe.Failf(probe.Unknown, probe.ReasonPermission, "no raw socket")),
	}
	warn := config.Threshold{RTT: config.Duration(100 * time.Millisecond)}
	crit := config.Threshold{RTT: config.Duration(time.Second)}
	checks := []Check{
		{tgt, config.Rule{Name: "a", Check: "ok", Severity: "critical", Warn: warn, Crit: crit}},
		{tgt, config.Rule{Name: "b", Check: "slow", Severity: "critical", Warn: warn, Crit: crit}},
		{tgt, config.Rule{Name: "c", Check: "refused", Severity: "warning"}},
		{tgt, config.Rule{Name: "d", Check: "refused", Severity: "info"}},
		{tgt, config.Rule{Name: "e", Check: "perm", Severity: "critical"}},
		{tgt, config.Rule{Name: "f", Check: "nosuch"}},
	}
	rep := Run(context.Background(), checks, Options{Probes: probes})
	byRule := map[string]CheckResult{}
	for _, c := range rep.Targets[0].Checks {
		byRule[c.Rule] = c
	}
	wantStatus := map[string]probe.Status{"a": probe.OK, "b": probe.Warning, "c": probe.Warning, "d": probe.OK, "e": probe.Unknown, "f": probe.Unknown}
	for r, w := range wantStatus {
		if byRule[r].Status != w {
			t.Errorf("rule %s: status %v, want %v (%s)", r, byRule[r].Status, w, byRule[r].Message)
		}
	}
	if !strings.Contains(byRule["b"].Message, "rtt 300.0ms > 100ms (warn)") {
		t.Errorf("threshold message: %q", byRule["b"].Message)
	}
	if byRule["c"].Remediation == "" || byRule["a"].Remediation != "" {
		t.Errorf("remediation only on failures: a=%q c=%q", byRule["a"].Remediation, byRule["c"].Remediation)
	}
	// Weights: a 3*1 + b 3*.5 + c 2*.5 + d 1*1 + e 0 + f 0 (critical) = 6.5 of 15.
	if rep.Score != 43 || rep.Band != "CRITICAL" {
		t.Errorf("score %d %s, want 43 CRITICAL", rep.Score, rep.Band)
	}
	if rep.ExitCode() != 3 {
		t.Errorf("exit code %d, want 3 (UNKNOWN is the worst here)", rep.ExitCode())
	}
}

func TestWorstPrefersCritical(t *testing.T) {
	rs := []CheckResult{{Status: probe.Unknown}, {Status: probe.Critical}, {Status: probe.Warning}}
	if s := worst(rs); s != probe.Critical {
		t.Errorf("worst = %v, want CRITICAL", s)
	}
}

func TestBands(t *testing.T) {
	for score, want := range map[int]string{100: "EXCELLENT", 90: "EXCELLENT", 89: "GOOD", 75: "GOOD", 74: "FAIR", 60: "FAIR", 59: "CRITICAL", 0: "CRITICAL"} {
		if got := Band(score); got != want {
			t.Errorf("Band(%d) = %s, want %s", score, got, want)
		}
	}
}

func TestRetries(t *testing.T) {
	var calls atomic.Int32
	flaky := func(ctx context.Context, t probe.Target, r config.Rule) probe.Result {
		if calls.Add(1) < 3 {
			return probe.Failf(probe.Critical, probe.ReasonTimeout, "no answer")
		}
		return probe.Result{Status: probe.OK, Message: "fine"}
	}
	tgt := config.Target{Name: "t", Type: "host", Address: "127.0.0.1"}
	rep := Run(context.Background(), []Check{{tgt, config.Rule{Name: "r", Check: "flaky", Retries: 2}}},
		Options{Probes: map[string]probe.Func{"flaky": flaky}})
	c := rep.Targets[0].Checks[0]
	if c.Status != probe.OK || c.Attempts != 3 {
		t.Errorf("status %v after %d attempts, want OK after 3", c.Status, c.Attempts)
	}
}

func TestMaxTimeAndPanic(t *testing.T) {
	block := func(ctx context.Context, t probe.Target, r config.Rule) probe.Result {
		<-ctx.Done()
		return probe.Failf(probe.Critical, probe.Classify(ctx.Err()), "gave up: %v", ctx.Err())
	}
	boom := func(ctx context.Context, t probe.Target, r config.Rule) probe.Result { panic("bug") }
	tgt := config.Target{Name: "t", Type: "host", Address: "127.0.0.1"}
	checks := []Check{
		{tgt, config.Rule{Name: "slow", Check: "block", Timeout: config.Duration(time.Hour)}},
		{tgt, config.Rule{Name: "queued", Check: "block", Timeout: config.Duration(time.Hour)}},
	}
	start := time.Now()
	rep := Run(context.Background(), checks, Options{Probes: map[string]probe.Func{"block": block, "boom": boom},
		Concurrency: 1, MaxTime: 200 * time.Millisecond})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("max-time not honoured: %v", took)
	}
	for _, c := range rep.Targets[0].Checks {
		if c.Status == probe.OK || c.Reason != probe.ReasonTimeout {
			t.Errorf("%s: %v %s, want a timeout", c.Rule, c.Status, c.Reason)
		}
	}
	rep = Run(context.Background(), []Check{{tgt, config.Rule{Name: "bug", Check: "boom"}}},
		Options{Probes: map[string]probe.Func{"boom": boom}})
	if c := rep.Targets[0].Checks[0]; c.Status != probe.Unknown || !strings.Contains(c.Message, "internal error") {
		t.Errorf("panic not contained: %+v", c)
	}
}

func TestSelectTargets(t *testing.T) {
	cfg := &config.Config{Targets: []config.Target{
		{Name: "a", Type: "host", Address: "127.0.0.1", Tags: []string{"prod"}},
		{Name: "b", Type: "host", Address: "127.0.0.2"},
	}}
	names := func(ts []config.Target) string {
		var s []string
		for _, t := range ts {
			s = append(s, t.Name)
		}
		return strings.Join(s, ",")
	}
	for _, tt := range []struct {
		sel  Selection
		want string
	}{
		{Selection{}, "a,b"},
		{Selection{Tags: []string{"prod"}}, "a"},
		{Selection{Args: []string{"b", "127.0.0.9"}}, "b,127.0.0.9"},
		{Selection{All: true, Args: []string{"a"}}, "a,b"},
	} {
		got, err := SelectTargets(cfg, tt.sel)
		if err != nil || names(got) != tt.want {
			t.Errorf("%+v: %s %v, want %s", tt.sel, names(got), err, tt.want)
		}
	}
	if _, err := SelectTargets(&config.Config{}, Selection{}); err == nil {
		t.Error("no targets at all must be an error")
	}
}
