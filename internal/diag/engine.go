// Package diag runs checks (targets x rules) with real probes, concurrently and
// within deadlines, and turns their results into statuses, scores and advice.
package diag

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/diag/probe"
)

// Options control a run.
type Options struct {
	// Probes maps a check kind to its probe (see Probes()).
	Probes map[string]probe.Func
	// Concurrency bounds the checks in flight (default 256).
	Concurrency int
	// MaxTime bounds the whole run; checks still running then are UNKNOWN
	// (reason timeout). Zero means no overall limit.
	MaxTime time.Duration
	// Now returns the current time (tests); default time.Now.
	Now func() time.Time
}

// CheckResult is the outcome of one rule on one target.
type CheckResult struct {
	Target      string         `json:"target"`
	Rule        string         `json:"rule"`
	Check       string         `json:"check"`
	Severity    string         `json:"severity"`
	Status      probe.Status   `json:"status"`
	Reason      string         `json:"reason,omitempty"`
	Message     string         `json:"message"`
	Metrics     []probe.Metric `json:"metrics,omitempty"`
	Details     any            `json:"details,omitempty"`
	Mode        string         `json:"mode,omitempty"`
	Attempts    int            `json:"attempts"`
	Duration    float64        `json:"duration_seconds"`
	Remediation string         `json:"remediation,omitempty"`
}

// TargetReport groups the results of one target with its score.
type TargetReport struct {
	Name    string        `json:"name"`
	Type    string        `json:"type"`
	Address string        `json:"address"`
	Info    string        `json:"info,omitempty"`
	Status  probe.Status  `json:"status"`
	Score   int           `json:"score"`
	Band    string        `json:"band"`
	Checks  []CheckResult `json:"checks"`
	Explain *Explanation  `json:"explain,omitempty"` // with --explain, for failing targets
}

// Report is the result of a run.
type Report struct {
	Started  time.Time      `json:"started"`
	Duration float64        `json:"duration_seconds"`
	Status   probe.Status   `json:"status"`
	Score    int            `json:"score"`
	Band     string         `json:"band"`
	Counts   map[string]int `json:"counts"`
	Targets  []TargetReport `json:"targets"`
}

// ExitCode is the process exit code for the report's worst status:
// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (CRITICAL wins over UNKNOWN).
func (r *Report) ExitCode() int { return int(r.Status) }

// ErrNoProbe is returned for a check kind without a probe in Options.Probes.
var ErrNoProbe = errors.New("no probe for this check kind")

// Run executes the checks and builds the report. It returns when every check
// finished or ctx (or MaxTime) ended; unfinished checks are UNKNOWN.
func Run(ctx context.Context, checks []Check, opts Options) *Report {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 256
	}
	start := now()
	parent := ctx
	if opts.MaxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.MaxTime)
		defer cancel()
	}

	results := make([]CheckResult, len(checks))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = notRun(c, ctx.Err())
				return
			}
			defer func() { <-sem }()
			results[i] = runCheck(ctx, c, opts.Probes, now)
			if ctx.Err() != nil && parent.Err() == nil {
				// --max-time ran out while the check ran: whatever it saw is
				// partial (a ping cut after one packet) or a failure caused by
				// the deadline, not by the target.
				r := &results[i]
				r.Status, r.Reason = probe.Unknown, probe.ReasonTimeout
				r.Message = "stopped by --max-time before it finished: " + r.Message
				r.Remediation = "Raise --max-time or lower the rule's count/timeout"
			}
		}()
	}
	wg.Wait()
	return buildReport(start, now().Sub(start), checks, results)
}

func notRun(c Check, err error) CheckResult {
	msg := "not run: " + err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "not run: the overall --max-time ran out first"
	}
	sev := c.Rule.Severity
	if sev == "" {
		sev = config.SeverityCritical
	}
	return CheckResult{Target: c.Target.Name, Rule: c.Rule.Name, Check: c.Rule.Check,
		Severity: sev, Status: probe.Unknown, Reason: probe.ReasonTimeout, Message: msg}
}

// budget is how long one attempt of a check may take.
func budget(r config.Rule) time.Duration {
	t := r.Timeout.D()
	if t <= 0 {
		t = 5 * time.Second
	}
	switch r.Check {
	case config.CheckICMP, config.CheckLatency:
		return t + time.Duration(r.Count)*r.Interval.D() + time.Second
	case config.CheckPortscan, config.CheckDiscover, config.CheckTraceroute:
		// Their timeout is per port / host / hop; they bound themselves and the
		// overall --max-time bounds the run.
		return 0
	case config.CheckBandwidth:
		return t + 5*time.Second
	}
	return t
}

func runCheck(ctx context.Context, c Check, probes map[string]probe.Func, now func() time.Time) CheckResult {
	cr := CheckResult{Target: c.Target.Name, Rule: c.Rule.Name, Check: c.Rule.Check, Severity: c.Rule.Severity}
	if cr.Severity == "" {
		cr.Severity = config.SeverityCritical
	}
	fn, ok := probes[c.Rule.Check]
	if !ok {
		cr.Status, cr.Reason = probe.Unknown, probe.ReasonError
		cr.Message = fmt.Sprintf("%v: %q", ErrNoProbe, c.Rule.Check)
		return cr
	}
	t := probe.Target{Name: c.Target.Name, Type: c.Target.Type, Address: c.Target.Address}
	start := now()
	var res probe.Result
	attempts := c.Rule.Retries + 1
	for a := 1; a <= attempts; a++ {
		cr.Attempts = a
		res = attempt(ctx, fn, t, c.Rule)
		// Retry only real failures: an UNKNOWN (no permission, bad input, local
		// resources) or a policy violation will not change on a second try.
		if res.Status == probe.OK || res.Status == probe.Unknown || ctx.Err() != nil || a == attempts ||
			res.Reason == probe.ReasonPolicy {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(a) * 200 * time.Millisecond):
		}
	}
	cr.Duration = now().Sub(start).Seconds()
	cr.Status, cr.Reason, cr.Message = res.Status, res.Reason, res.Message
	cr.Metrics, cr.Details, cr.Mode = res.Metrics, res.Details, res.Mode

	// Severity decides what a failure means: a critical rule fails CRITICAL, a
	// warning rule only warns, an info rule reports without failing.
	switch {
	case cr.Severity == config.SeverityWarning && cr.Status == probe.Critical:
		cr.Status = probe.Warning
	case cr.Severity == config.SeverityInfo && (cr.Status == probe.Critical || cr.Status == probe.Warning):
		cr.Status = probe.OK
		cr.Message = "info: " + cr.Message
	}
	if cr.Status != probe.OK {
		cr.Remediation = c.Rule.Remediation
		if cr.Remediation == "" {
			cr.Remediation = remediationFor(cr.Reason, c.Target, c.Rule)
		}
	}
	return cr
}

// attempt runs the probe once within the check's budget and applies thresholds.
func attempt(ctx context.Context, fn probe.Func, t probe.Target, r config.Rule) (res probe.Result) {
	if b := budget(r); b > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b)
		defer cancel()
	}
	defer func() {
		// A probe bug must not take the whole run down: report it as UNKNOWN.
		if p := recover(); p != nil {
			res = probe.Failf(probe.Unknown, probe.ReasonError, "internal error in %s probe: %v", r.Check, p)
		}
	}()
	res = fn(ctx, t, r)
	probe.ApplyThresholds(&res, r)
	return res
}

// severityWeight is how much a check counts in the score.
func severityWeight(sev string) float64 {
	switch sev {
	case config.SeverityInfo:
		return 1
	case config.SeverityWarning:
		return 2
	}
	return 3
}

// credit is the share of a check's weight its status earns.
func credit(s probe.Status) float64 {
	switch s {
	case probe.OK:
		return 1
	case probe.Warning:
		return 0.5
	}
	return 0
}

// Score is the weighted share of passing checks, 0-100 (100 when empty).
func Score(results []CheckResult) int {
	var total, got float64
	for _, r := range results {
		w := severityWeight(r.Severity)
		total += w
		got += w * credit(r.Status)
	}
	if total == 0 {
		return 100
	}
	return int(100*got/total + 0.5)
}

// Band names a score: EXCELLENT >= 90, GOOD >= 75, FAIR >= 60, else CRITICAL.
func Band(score int) string {
	switch {
	case score >= 90:
		return "EXCELLENT"
	case score >= 75:
		return "GOOD"
	case score >= 60:
		return "FAIR"
	}
	return "CRITICAL"
}

func worst(results []CheckResult) probe.Status {
	s := probe.OK
	for _, r := range results {
		s = probe.Worse(s, r.Status)
	}
	return s
}

func buildReport(start time.Time, took time.Duration, checks []Check, results []CheckResult) *Report {
	rep := &Report{Started: start, Duration: took.Seconds(), Counts: map[string]int{}}
	index := map[string]int{}
	for i, c := range checks {
		ti, ok := index[c.Target.Name]
		if !ok {
			ti = len(rep.Targets)
			index[c.Target.Name] = ti
			rep.Targets = append(rep.Targets, TargetReport{Name: c.Target.Name, Type: c.Target.Type,
				Address: c.Target.Address, Info: c.Target.Info})
		}
		rep.Targets[ti].Checks = append(rep.Targets[ti].Checks, results[i])
		rep.Counts[results[i].Status.String()]++
	}
	for i := range rep.Targets {
		t := &rep.Targets[i]
		sort.SliceStable(t.Checks, func(a, b int) bool { return t.Checks[a].Rule < t.Checks[b].Rule })
		t.Status = worst(t.Checks)
		t.Score = Score(t.Checks)
		t.Band = Band(t.Score)
	}
	rep.Status = worst(results)
	rep.Score = Score(results)
	rep.Band = Band(rep.Score)
	return rep
}

// AddTargets adds targets that had no applicable checks to the report, so the
// user sees them (score 100, no checks) instead of them silently vanishing.
func (r *Report) AddTargets(targets []config.Target) {
	have := map[string]bool{}
	for _, t := range r.Targets {
		have[t.Name] = true
	}
	for _, t := range targets {
		if !have[t.Name] {
			r.Targets = append(r.Targets, TargetReport{Name: t.Name, Type: t.Type, Address: t.Address,
				Info: t.Info, Status: probe.OK, Score: 100, Band: Band(100), Checks: []CheckResult{}})
		}
	}
}
