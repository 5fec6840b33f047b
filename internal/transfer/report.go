package transfer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// History statuses.
const (
	StatusOK          = "ok"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
)

// RunRecord is what the history keeps of one run (the detail of a store
// run of kind "transfer").
type RunRecord struct {
	Name        string        `json:"name"`
	Source      string        `json:"source"`
	Destination string        `json:"destination"`
	Mode        string        `json:"mode"`
	Status      string        `json:"status"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration_ns"`
	Files       int           `json:"files"`
	Failed      int           `json:"failed"`
	Bytes       int64         `json:"bytes"`
	BytesSent   int64         `json:"bytes_sent"`
	Deleted     int           `json:"deleted"`
	Retried     int           `json:"retried"` // files that needed more than one attempt
	Resumed     int           `json:"resumed"` // files that continued from a prefix
	Verify      bool          `json:"verify"`
	Error       string        `json:"error,omitempty"`
}

// Record makes the history entry of a run.
func Record(res *Result, o Options, err error) RunRecord {
	rr := RunRecord{Name: res.Name, Source: res.Source, Destination: res.Destination, Mode: res.Mode,
		Status: StatusOK, Started: res.Started, Duration: res.Duration, Files: res.Files, Failed: res.Failed,
		Bytes: res.Bytes, BytesSent: res.BytesSent, Deleted: res.Deleted, Verify: o.Verify}
	for _, r := range res.Receipts {
		if r.Attempts > 1 {
			rr.Retried++
		}
		if r.ResumedFrom > 0 {
			rr.Resumed++
		}
	}
	if err != nil {
		rr.Status = StatusFailed
		if errors.Is(err, context.Canceled) {
			rr.Status = StatusInterrupted
		}
		rr.Error = err.Error()
	}
	return rr
}

// Throughput is bytes per second over d (0 when d is 0).
func Throughput(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / d.Seconds()
}

// ProfileSummary aggregates the history of one profile.
type ProfileSummary struct {
	Name        string        `json:"name"`
	Configured  bool          `json:"configured"`
	Mode        string        `json:"mode,omitempty"`
	Runs        int           `json:"runs"`
	OK          int           `json:"ok"`
	Failed      int           `json:"failed"`
	SuccessRate float64       `json:"success_rate"` // 0..1; 0 without runs
	AvgDuration time.Duration `json:"avg_duration_ns"`
	AvgRate     float64       `json:"avg_bytes_per_second"`
	Bytes       int64         `json:"bytes"`
	Retried     int           `json:"retried_files"`
	LastRun     time.Time     `json:"last_run,omitzero"`
	LastStatus  string        `json:"last_status,omitempty"`
	LastOK      time.Time     `json:"last_ok,omitzero"`
	LastError   string        `json:"last_error,omitempty"`
}

// Report is `netops transfer report`.
type Report struct {
	Since           time.Time        `json:"since"`
	Runs            int              `json:"runs"`
	SuccessRate     float64          `json:"success_rate"`
	Profiles        []ProfileSummary `json:"profiles"`
	Recommendations []string         `json:"recommendations"`
}

// Summarize builds the report from the configured profiles and the runs
// recorded since since (runs are any order).
func Summarize(profiles []config.Transfer, runs []RunRecord, since, now time.Time) *Report {
	rep := &Report{Since: since}
	by := map[string]*ProfileSummary{}
	var order []string
	get := func(name string) *ProfileSummary {
		if p, ok := by[name]; ok {
			return p
		}
		p := &ProfileSummary{Name: name}
		by[name] = p
		order = append(order, name)
		return p
	}
	verifyOff := map[string]bool{}
	for _, t := range profiles {
		p := get(t.Name)
		p.Configured, p.Mode = true, t.Mode
		if t.Verify == config.VerifyNone {
			verifyOff[t.Name] = true
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Started.Before(runs[j].Started) })
	var durSum = map[string]time.Duration{}
	var rateSum = map[string]float64{}
	ok := 0
	for _, r := range runs {
		if r.Started.Before(since) {
			continue
		}
		name := r.Name
		if name == "" {
			name = "(ad hoc)"
		}
		p := get(name)
		p.Runs++
		rep.Runs++
		p.Bytes += r.Bytes
		p.Retried += r.Retried
		p.LastRun, p.LastStatus = r.Started, r.Status
		if r.Status == StatusOK {
			p.OK++
			ok++
			p.LastOK = r.Started
			p.LastError = ""
			durSum[name] += r.Duration
			rateSum[name] += Throughput(r.Bytes, r.Duration)
		} else {
			p.Failed++
			p.LastError = r.Error
		}
	}
	if rep.Runs > 0 {
		rep.SuccessRate = float64(ok) / float64(rep.Runs)
	}
	for _, name := range order {
		p := by[name]
		if p.Runs > 0 {
			p.SuccessRate = float64(p.OK) / float64(p.Runs)
		}
		if p.OK > 0 {
			p.AvgDuration = durSum[name] / time.Duration(p.OK)
			p.AvgRate = rateSum[name] / float64(p.OK)
		}
		rep.Profiles = append(rep.Profiles, *p)
	}
	rep.Recommendations = recommend(rep, verifyOff, now)
	return rep
}

func recommend(rep *Report, verifyOff map[string]bool, now time.Time) []string {
	var out []string
	for _, p := range rep.Profiles {
		switch {
		case p.Configured && p.Runs == 0:
			out = append(out, fmt.Sprintf("%s: no run since %s; run it ('netops transfer run %s') or remove the profile", p.Name, rep.Since.Format("2006-01-02"), p.Name))
		case p.Runs > 0 && p.OK == 0:
			out = append(out, fmt.Sprintf("%s: every run failed (%d); last error: %s", p.Name, p.Runs, p.LastError))
		case p.Runs >= 2 && p.SuccessRate < 0.8:
			msg := fmt.Sprintf("%s: %.0f%% of runs succeeded; check the link and the server, or raise retries and backoff", p.Name, p.SuccessRate*100)
			if p.LastStatus != StatusOK && p.LastError != "" {
				msg += "; last error: " + p.LastError
			}
			out = append(out, msg)
		case p.LastStatus != "" && p.LastStatus != StatusOK:
			out = append(out, fmt.Sprintf("%s: the last run failed: %s", p.Name, p.LastError))
		}
		if p.Retried > 0 && p.OK > 0 {
			out = append(out, fmt.Sprintf("%s: %d files needed a retry; the connection is unstable (resume kept the cost down)", p.Name, p.Retried))
		}
		if verifyOff[p.Name] {
			out = append(out, fmt.Sprintf("%s: verify is none; set verify: sha256 so a corrupted copy is caught", p.Name))
		}
		if !p.LastOK.IsZero() && now.Sub(p.LastOK) > 7*24*time.Hour && p.LastStatus != StatusOK {
			out = append(out, fmt.Sprintf("%s: no successful run for %d days", p.Name, int(now.Sub(p.LastOK).Hours()/24)))
		}
	}
	if len(out) == 0 && rep.Runs > 0 {
		out = append(out, "all transfers in the period succeeded; nothing to do")
	}
	if len(out) == 0 {
		out = append(out, "no transfer runs recorded in the period")
	}
	return out
}
