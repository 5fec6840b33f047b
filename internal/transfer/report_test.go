package transfer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

func TestSummarize(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	profiles := []config.Transfer{
		{Name: "nightly", Mode: config.ModeSync, Verify: config.VerifySHA256},
		{Name: "idle", Mode: config.ModeCopy, Verify: config.VerifyNone},
		{Name: "broken", Mode: config.ModeCopy},
	}
	run := func(name, status string, ago time.Duration, d time.Duration, bytes int64, retried int) RunRecord {
		return RunRecord{Name: name, Status: status, Started: now.Add(-ago), Duration: d, Bytes: bytes, Retried: retried,
			Error: map[bool]string{true: "", false: "ssh h: connection refused"}[status == StatusOK]}
	}
	runs := []RunRecord{
		run("nightly", StatusOK, 3*time.Hour, 2*time.Second, 200, 0),
		run("nightly", StatusOK, 2*time.Hour, 4*time.Second, 400, 2),
		run("nightly", StatusFailed, time.Hour, time.Second, 0, 0),
		run("broken", StatusFailed, time.Hour, time.Second, 0, 0),
		run("broken", StatusFailed, 30*time.Minute, time.Second, 0, 0),
		run("nightly", StatusOK, 30*24*time.Hour, time.Second, 1, 0), // before the period
	}
	rep := Summarize(profiles, runs, now.Add(-7*24*time.Hour), now)
	if rep.Runs != 5 || rep.SuccessRate != 0.4 {
		t.Errorf("runs %d success %.2f, want 5 and 0.40", rep.Runs, rep.SuccessRate)
	}
	by := map[string]ProfileSummary{}
	for _, p := range rep.Profiles {
		by[p.Name] = p
	}
	n := by["nightly"]
	if n.Runs != 3 || n.OK != 2 || n.AvgDuration != 3*time.Second || n.AvgRate != 100 || n.Retried != 2 || n.LastStatus != StatusFailed {
		t.Errorf("nightly summary %+v", n)
	}
	if by["idle"].Runs != 0 || !by["idle"].Configured {
		t.Errorf("idle summary %+v", by["idle"])
	}
	recs := strings.Join(rep.Recommendations, "\n")
	for _, want := range []string{
		"idle: no run since", "idle: verify is none", "broken: every run failed (2)",
		"nightly: 67% of runs succeeded; check the link and the server, or raise retries and backoff; last error: ssh h: connection refused", "nightly: 2 files needed a retry",
	} {
		if !strings.Contains(recs, want) {
			t.Errorf("recommendations lack %q:\n%s", want, recs)
		}
	}
}

func TestRecordStatus(t *testing.T) {
	res := &Result{Name: "p", Files: 2, Receipts: []Receipt{{Attempts: 2, ResumedFrom: 10}, {Attempts: 1}}}
	if r := Record(res, Options{Verify: true}, nil); r.Status != StatusOK || r.Retried != 1 || r.Resumed != 1 || !r.Verify {
		t.Errorf("record %+v", r)
	}
	if r := Record(res, Options{}, errors.New("boom")); r.Status != StatusFailed || r.Error != "boom" {
		t.Errorf("failed record %+v", r)
	}
}
