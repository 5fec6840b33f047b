package store

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestRecordRunAndRuns(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	base := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	in := []Run{ // recorded out of start order
		{Kind: "diag", Name: "d1", Status: "ok", Started: base, Finished: base.Add(time.Second), Detail: json.RawMessage(`{"rtt_ms":1.5}`)},
		{Kind: "transfer", Name: "t1", Status: "failed", Started: base.Add(2 * time.Minute)},
		{Kind: "diag", Name: "d3", Status: "ok", Started: base.Add(3 * time.Minute)},
		{Kind: "diag", Name: "d2", Status: "running", Started: base.Add(time.Minute)},
	}
	ids := map[string]int64{}
	for _, r := range in {
		id, err := s.RecordRun(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		ids[r.Name] = id
	}

	names := func(rs []Run) []string {
		var n []string
		for _, r := range rs {
			n = append(n, r.Name)
		}
		return n
	}
	tests := []struct {
		kind  string
		limit int
		want  []string
	}{
		{"", 0, []string{"d3", "t1", "d2", "d1"}},
		{"", 2, []string{"d3", "t1"}},
		{"diag", 0, []string{"d3", "d2", "d1"}},
		{"diag", 2, []string{"d3", "d2"}},
		{"transfer", 10, []string{"t1"}},
		{"lock", 0, nil},
	}
	for _, tt := range tests {
		got, err := s.Runs(ctx, tt.kind, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names(got), tt.want) {
			t.Errorf("Runs(%q, %d) = %v, want %v", tt.kind, tt.limit, names(got), tt.want)
		}
	}

	all, err := s.Runs(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Run{}
	for _, r := range all {
		byName[r.Name] = r
	}
	for _, want := range in {
		got := byName[want.Name]
		if got.ID != ids[want.Name] || got.Kind != want.Kind || got.Status != want.Status ||
			!got.Started.Equal(want.Started) || !got.Finished.Equal(want.Finished) ||
			string(got.Detail) != string(want.Detail) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", want.Name, got, want)
		}
	}
	if !byName["t1"].Finished.IsZero() || byName["t1"].Detail != nil {
		t.Errorf("unset Finished/Detail came back as %v / %q", byName["t1"].Finished, byName["t1"].Detail)
	}
}

func TestRecordRunDefaultsAndValidation(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	before := time.Now()
	if _, err := s.RecordRun(ctx, Run{Kind: "diag", Name: "now"}); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Runs(ctx, "diag", 1)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Runs = %v, %v", rs, err)
	}
	if rs[0].Started.Before(before) || rs[0].Started.After(time.Now()) {
		t.Errorf("zero Started stored as %v, want now", rs[0].Started)
	}

	for _, bad := range []Run{
		{Kind: "", Name: "no kind"},
		{Kind: "diag", Detail: json.RawMessage(`{not json`)},
	} {
		if _, err := s.RecordRun(ctx, bad); err == nil {
			t.Errorf("RecordRun(%+v) succeeded", bad)
		}
	}
	if n := countRuns(t, s); n != 1 {
		t.Fatalf("rows = %d, want 1", n)
	}
}
