package diag

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/probe"
)

// HistoryEntry is one recorded target result.
type HistoryEntry struct {
	Started time.Time
	Target  TargetReport
}

// Drift is a change between a target's last two runs.
type Drift struct {
	Target string `json:"target"`
	Rule   string `json:"rule"`
	Kind   string `json:"kind"` // status, port-opened, port-closed, dns-changed, rtt-regression
	Detail string `json:"detail"`
}

// TargetSummary is what the history says about one target.
type TargetSummary struct {
	Name        string         `json:"name"`
	Type        string         `json:"type"`
	Address     string         `json:"address"`
	Runs        int            `json:"runs"`
	LastRun     time.Time      `json:"last_run"`
	LastStatus  probe.Status   `json:"last_status"`
	LastScore   int            `json:"last_score"`
	AvgScore    float64        `json:"avg_score"`
	MinScore    int            `json:"min_score"`
	Scores      []int          `json:"recent_scores"` // oldest first, at most 10
	FailureRate float64        `json:"failure_rate"`  // share of runs not OK, 0..1
	Failing     map[string]int `json:"failing_rules,omitempty"`
}

// RuleSummary is what the history says about one rule across targets.
type RuleSummary struct {
	Name        string  `json:"name"`
	Check       string  `json:"check"`
	Runs        int     `json:"runs"`
	Failures    int     `json:"failures"`
	FailureRate float64 `json:"failure_rate"`
	TopReason   string  `json:"top_reason,omitempty"`
}

// Summary is the diag report: targets, rules, scores, failure rates, drift
// since the previous run and recommendations, all computed from the history.
type Summary struct {
	Since           time.Time       `json:"since"`
	Until           time.Time       `json:"until"`
	Runs            int             `json:"runs"`
	Targets         []TargetSummary `json:"targets"`
	Rules           []RuleSummary   `json:"rules"`
	Drift           []Drift         `json:"drift"`
	Recommendations []string        `json:"recommendations"`
}

// Summarize builds the report from history entries (any order).
func Summarize(entries []HistoryEntry, since, until time.Time) *Summary {
	s := &Summary{Since: since, Until: until, Targets: []TargetSummary{}, Rules: []RuleSummary{},
		Drift: []Drift{}, Recommendations: []string{}}
	byTarget := map[string][]HistoryEntry{}
	var names []string
	for _, e := range entries {
		if e.Started.Before(since) || e.Started.After(until) {
			continue
		}
		if _, ok := byTarget[e.Target.Name]; !ok {
			names = append(names, e.Target.Name)
		}
		byTarget[e.Target.Name] = append(byTarget[e.Target.Name], e)
		s.Runs++
	}
	sort.Strings(names)
	type ruleAcc struct {
		RuleSummary
		reasons map[string]int
	}
	rules := map[string]*ruleAcc{}
	for _, name := range names {
		runs := byTarget[name]
		sort.Slice(runs, func(i, j int) bool { return runs[i].Started.Before(runs[j].Started) })
		last := runs[len(runs)-1]
		ts := TargetSummary{Name: name, Type: last.Target.Type, Address: last.Target.Address, Runs: len(runs),
			LastRun: last.Started, LastStatus: last.Target.Status, LastScore: last.Target.Score,
			MinScore: 100, Failing: map[string]int{}}
		notOK, sum := 0, 0
		for _, r := range runs {
			sum += r.Target.Score
			ts.MinScore = min(ts.MinScore, r.Target.Score)
			if r.Target.Status != probe.OK {
				notOK++
			}
			for _, c := range r.Target.Checks {
				acc := rules[c.Rule]
				if acc == nil {
					acc = &ruleAcc{RuleSummary: RuleSummary{Name: c.Rule, Check: c.Check}, reasons: map[string]int{}}
					rules[c.Rule] = acc
				}
				acc.Runs++
				if c.Status != probe.OK {
					acc.Failures++
					ts.Failing[c.Rule]++
					if c.Reason != "" {
						acc.reasons[c.Reason]++
					}
				}
			}
		}
		ts.AvgScore = math.Round(float64(sum)/float64(len(runs))*10) / 10
		ts.FailureRate = ratio(notOK, len(runs))
		for _, r := range runs[max(0, len(runs)-10):] {
			ts.Scores = append(ts.Scores, r.Target.Score)
		}
		s.Targets = append(s.Targets, ts)
		if len(runs) >= 2 {
			s.Drift = append(s.Drift, drift(runs[len(runs)-2].Target, last.Target)...)
		}
	}
	for _, acc := range rules {
		acc.FailureRate = ratio(acc.Failures, acc.Runs)
		best := 0
		for reason, n := range acc.reasons {
			if n > best || (n == best && reason < acc.TopReason) {
				best, acc.TopReason = n, reason
			}
		}
		s.Rules = append(s.Rules, acc.RuleSummary)
	}
	sort.Slice(s.Rules, func(i, j int) bool { return s.Rules[i].Name < s.Rules[j].Name })
	s.Recommendations = recommend(s, byTarget)
	return s
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(float64(a)/float64(b)*1000) / 1000
}

// detailsAs re-reads a check's details (a generic map after the history's
// JSON round trip) as a typed value.
func detailsAs[T any](d any) (T, bool) {
	var v T
	if d == nil {
		return v, false
	}
	b, err := json.Marshal(d)
	if err != nil {
		return v, false
	}
	return v, json.Unmarshal(b, &v) == nil
}

func metricValue(c CheckResult, name string) (float64, bool) {
	for _, m := range c.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

// drift compares two runs of the same target, rule by rule.
func drift(prev, cur TargetReport) []Drift {
	var out []Drift
	old := map[string]CheckResult{}
	for _, c := range prev.Checks {
		old[c.Rule] = c
	}
	for _, c := range cur.Checks {
		p, ok := old[c.Rule]
		if !ok {
			continue
		}
		d := Drift{Target: cur.Name, Rule: c.Rule}
		if p.Status != c.Status {
			d.Kind, d.Detail = "status", p.Status.String()+" -> "+c.Status.String()+": "+c.Message
			out = append(out, d)
		}
		switch c.Check {
		case config.CheckPortscan:
			po, ok1 := detailsAs[probe.PortscanDetails](p.Details)
			co, ok2 := detailsAs[probe.PortscanDetails](c.Details)
			if ok1 && ok2 {
				opened, closed := portDiff(po, co)
				if len(opened) > 0 {
					out = append(out, Drift{Target: cur.Name, Rule: c.Rule, Kind: "port-opened", Detail: strings.Join(opened, ", ")})
				}
				if len(closed) > 0 {
					out = append(out, Drift{Target: cur.Name, Rule: c.Rule, Kind: "port-closed", Detail: strings.Join(closed, ", ")})
				}
			}
		case config.CheckDNS:
			po, ok1 := detailsAs[probe.DNSDetails](p.Details)
			co, ok2 := detailsAs[probe.DNSDetails](c.Details)
			if ok1 && ok2 && !slices.Equal(po.Answers, co.Answers) {
				out = append(out, Drift{Target: cur.Name, Rule: c.Rule, Kind: "dns-changed",
					Detail: fmt.Sprintf("%s %s: [%s] -> [%s]", co.Type, co.Name, strings.Join(po.Answers, " "), strings.Join(co.Answers, " "))})
			}
		}
		// An RTT regression: at least 50% slower and 1 ms more than before.
		if pr, ok1 := metricValue(p, probe.MetricRTT); ok1 {
			if cr, ok2 := metricValue(c, probe.MetricRTT); ok2 && cr > pr*1.5 && cr-pr > 0.001 {
				out = append(out, Drift{Target: cur.Name, Rule: c.Rule, Kind: "rtt-regression",
					Detail: probe.FormatSeconds(pr) + " -> " + probe.FormatSeconds(cr)})
			}
		}
	}
	return out
}

func portDiff(prev, cur probe.PortscanDetails) (opened, closed []string) {
	set := func(d probe.PortscanDetails) map[string]bool {
		m := map[string]bool{}
		for _, h := range d.Open {
			for _, p := range h.Ports {
				m[h.Address+":"+strconv.Itoa(p)] = true
			}
		}
		return m
	}
	a, b := set(prev), set(cur)
	for k := range b {
		if !a[k] {
			opened = append(opened, k)
		}
	}
	for k := range a {
		if !b[k] {
			closed = append(closed, k)
		}
	}
	sort.Strings(opened)
	sort.Strings(closed)
	return opened, closed
}

// recommend derives advice from the summary and the latest runs.
func recommend(s *Summary, byTarget map[string][]HistoryEntry) []string {
	recs := []string{}
	if s.Runs == 0 {
		return append(recs, "No diag runs in this period: schedule `netops diag` (cron, a systemd timer) or run `netops diag monitor`.")
	}
	for _, t := range s.Targets {
		if t.FailureRate >= 0.5 && len(t.Failing) > 0 {
			worst, n := "", 0
			for r, c := range t.Failing {
				if c > n || (c == n && r < worst) {
					worst, n = r, c
				}
			}
			recs = append(recs, fmt.Sprintf("%s failed in %d of %d runs, mostly rule %s: run `netops diag %s --explain`.",
				t.Name, int(math.Round(t.FailureRate*float64(t.Runs))), t.Runs, worst, t.Name))
		} else if t.FailureRate > 0 && t.FailureRate < 0.5 && t.LastStatus == probe.OK {
			recs = append(recs, fmt.Sprintf("%s is intermittent (%.0f%% of runs not OK): watch it with `netops diag monitor %s --alert-after 3`.",
				t.Name, t.FailureRate*100, t.Name))
		}
	}
	for _, r := range s.Rules {
		if r.TopReason == probe.ReasonPermission {
			recs = append(recs, fmt.Sprintf("Rule %s could not run (permission): see `netops diag doctor`.", r.Name))
		}
	}
	for _, d := range s.Drift {
		switch d.Kind {
		case "port-opened":
			recs = append(recs, fmt.Sprintf("Newly open ports on %s (%s): check that they are expected, or add them to must_be_closed.", d.Target, d.Detail))
		case "dns-changed":
			recs = append(recs, fmt.Sprintf("DNS answers of %s changed (%s): confirm the change was intended.", d.Target, d.Detail))
		case "rtt-regression":
			recs = append(recs, fmt.Sprintf("Round-trip time of %s/%s regressed (%s): check load and the network path.", d.Target, d.Rule, d.Detail))
		}
	}
	names := make([]string, 0, len(byTarget))
	for n := range byTarget {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		runs := byTarget[n]
		last := runs[len(runs)-1]
		for _, c := range last.Target.Checks {
			if days, ok := metricValue(c, probe.MetricCertDays); ok && days < 30 {
				recs = append(recs, fmt.Sprintf("The certificate of %s expires in %.0f days: renew it.", n, days))
			}
		}
	}
	if len(recs) == 0 {
		recs = append(recs, "All targets healthy over the period; nothing to do.")
	}
	return recs
}

// ParseSince parses a look-back period: a Go duration or a number of days ("7d").
func ParseSince(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err == nil && n > 0 {
			return time.Duration(n * float64(24*time.Hour)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid period %q: write e.g. 7d, 36h or 90m", s)
	}
	return d, nil
}
