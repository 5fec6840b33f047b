package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/diag/probe"
	"github.com/netops-dev/netops/internal/transfer"
)

func TestTransferEventStatus(t *testing.T) {
	job := &transferJob{name: "nightly"}
	job.opts.Mode = "sync"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name       string
		out        transferOutcome
		status     string
		files      int
		durationMS int64
		err        string
	}{
		{"ok", transferOutcome{job: job, res: &transfer.Result{Mode: "sync", Files: 3, Bytes: 30, Duration: 1500 * time.Millisecond}},
			"ok", 3, 1500, ""},
		{"failed with result", transferOutcome{job: job, res: &transfer.Result{Files: 1, Failed: 2}, err: errors.New("upload x: permission denied")},
			"failed", 1, 0, "upload x: permission denied"},
		{"failed before start", transferOutcome{job: job, err: errors.New("source x: not found")}, "failed", 0, 0, "source x: not found"},
		{"interrupted", transferOutcome{job: job, err: fmt.Errorf("read: %w", context.Canceled)}, "interrupted", 0, 0, "read: context canceled"},
	}
	for _, c := range cases {
		ev := newTransferEvent(c.out, at)
		if ev.Kind != "transfer.result" || ev.Profile != "nightly" || ev.Mode != "sync" || !ev.Time.Equal(at) {
			t.Errorf("%s: header fields: %+v", c.name, ev)
		}
		if ev.Status != c.status || ev.Files != c.files || ev.DurationMS != c.durationMS || ev.Error != c.err {
			t.Errorf("%s: got status %q files %d duration_ms %d error %q", c.name, ev.Status, ev.Files, ev.DurationMS, ev.Error)
		}
	}
}

func TestAlertEventJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := json.Marshal(newAlertEvent(diag.Alert{State: "firing", Target: "web1", Rule: "https", Check: "http",
		Status: probe.Critical, Message: "status 503", Rounds: 3, Since: at, At: at}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"kind": "diag.alert", "time": "2026-01-02T03:04:05Z", "state": "firing", "target": "web1",
		"rule": "https", "check": "http", "status": "CRITICAL", "message": "status 503", "rounds": float64(3)}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (event %s)", k, m[k], v, b)
		}
	}
}
