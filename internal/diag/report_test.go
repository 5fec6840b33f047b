package diag

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/diag/probe"
)

// roundTrip mimics the history: reports are stored as JSON and read back.
func roundTrip(t *testing.T, tr TargetReport) TargetReport {
	t.Helper()
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	var out TargetReport
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSummarizeDriftAndRecommendations(t *testing.T) {
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	mk := func(status probe.Status, score int, open []int, answers []string, rtt float64) TargetReport {
		scan := CheckResult{Rule: "ports", Check: "portscan", Status: probe.OK,
			Details: probe.PortscanDetails{Open: []probe.PortscanHost{{Address: "127.0.0.1", Ports: open}}}}
		dns := CheckResult{Rule: "dns", Check: "dns", Status: probe.OK,
			Details: probe.DNSDetails{Name: "web", Type: "A", Answers: answers}}
		tcp := CheckResult{Rule: "tcp", Check: "tcp", Status: status, Reason: "refused",
			Metrics: []probe.Metric{{Name: "rtt", Value: rtt, Unit: "s"}}}
		if status == probe.OK {
			tcp.Reason = ""
		}
		return TargetReport{Name: "web", Type: "host", Address: "127.0.0.1", Status: status, Score: score,
			Checks: []CheckResult{dns, scan, tcp}}
	}
	entries := []HistoryEntry{
		{base.Add(2 * time.Hour), roundTrip(t, mk(probe.Critical, 40, []int{22, 23}, []string{"192.0.2.2"}, 0.010))},
		{base, roundTrip(t, mk(probe.OK, 100, []int{22}, []string{"192.0.2.1"}, 0.001))},
		{base.Add(time.Hour), roundTrip(t, mk(probe.Critical, 40, []int{22}, []string{"192.0.2.1"}, 0.001))},
		{base.Add(-30 * 24 * time.Hour), roundTrip(t, mk(probe.OK, 100, nil, nil, 0.001))}, // outside the window
	}
	s := Summarize(entries, base.Add(-time.Hour), base.Add(3*time.Hour))
	if s.Runs != 3 || len(s.Targets) != 1 {
		t.Fatalf("runs %d targets %d", s.Runs, len(s.Targets))
	}
	ts := s.Targets[0]
	if ts.LastScore != 40 || ts.MinScore != 40 || ts.AvgScore != 60 || ts.FailureRate != 0.667 || ts.Failing["tcp"] != 2 {
		t.Errorf("target summary %+v", ts)
	}
	if got := strings.Join(intsToStrings(ts.Scores), " "); got != "100 40 40" {
		t.Errorf("recent scores %s", got)
	}
	kinds := map[string]string{}
	for _, d := range s.Drift {
		kinds[d.Kind] = d.Detail
	}
	if kinds["port-opened"] != "127.0.0.1:23" {
		t.Errorf("port drift: %v", s.Drift)
	}
	if !strings.Contains(kinds["dns-changed"], "[192.0.2.1] -> [192.0.2.2]") {
		t.Errorf("dns drift: %v", s.Drift)
	}
	if kinds["rtt-regression"] != "1.0ms -> 10.0ms" {
		t.Errorf("rtt drift: %v", s.Drift)
	}
	recs := strings.Join(s.Recommendations, "\n")
	for _, want := range []string{"web failed in 2 of 3 runs, mostly rule tcp", "Newly open ports on web (127.0.0.1:23)", "DNS answers of web changed"} {
		if !strings.Contains(recs, want) {
			t.Errorf("recommendations lack %q:\n%s", want, recs)
		}
	}
	var rule RuleSummary
	for _, r := range s.Rules {
		if r.Name == "tcp" {
			rule = r
		}
	}
	if rule.Failures != 2 || rule.TopReason != "refused" {
		t.Errorf("rule summary %+v", rule)
	}
}

func TestSummarizeEmpty(t *testing.T) {
	s := Summarize(nil, time.Now().Add(-time.Hour), time.Now())
	if len(s.Recommendations) != 1 || !strings.Contains(s.Recommendations[0], "No diag runs") {
		t.Errorf("%+v", s.Recommendations)
	}
}

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "1.5d": 36 * time.Hour} {
		if got, err := ParseSince(in); err != nil || got != want {
			t.Errorf("ParseSince(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0d", "-1h", "week"} {
		if _, err := ParseSince(bad); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

func intsToStrings(xs []int) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		b, _ := json.Marshal(x)
		out[i] = string(b)
	}
	return out
}
