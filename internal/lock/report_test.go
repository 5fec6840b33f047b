package lock

import (
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	now := time.Now()
	ev := func(name, outcome string, waited, held time.Duration, owner string) Event {
		return Event{Name: name, Outcome: outcome, At: now, Waited: waited, Held: held, Owner: owner}
	}
	events := []Event{
		ev("backup", "released", 0, 2*time.Second, "a"),
		ev("backup", "released", 500*time.Millisecond, 9*time.Second, "b"),
		ev("backup", "timeout", 30*time.Second, 0, "c"),
		ev("deploy", "released", time.Millisecond, time.Second, "d"),
		ev("deploy", "lost", 0, time.Second, "e"),
		{Name: "old", Outcome: "released", At: now.Add(-30 * 24 * time.Hour)},
	}
	active := []Status{{Name: "backup", Holders: []Entry{{Holder: Holder{Owner: "a"}}}, Waiters: []Entry{{Holder: Holder{Owner: "z"}, Since: now}}}, {Name: "idle"}}
	r := Summarize(active, events, now.Add(-7*24*time.Hour))
	if r.Held != 1 || r.Queued != 1 || len(r.Active) != 1 {
		t.Errorf("active: held %d queued %d %+v", r.Held, r.Queued, r.Active)
	}
	if len(r.Locks) != 2 {
		t.Fatalf("locks %+v (the old event is outside the period)", r.Locks)
	}
	b := r.Locks[0]
	if b.Name != "backup" || b.Uses != 3 || b.Timeouts != 1 || b.Contended != 2 || b.LongestHold != 9*time.Second || b.LongestBy != "b" || b.MaxWait != 30*time.Second {
		t.Errorf("backup summary %+v", b)
	}
	if d := r.Locks[1]; d.Lost != 1 || d.Contended != 0 {
		t.Errorf("deploy summary %+v", d)
	}
	recs := strings.Join(r.Recommendations, "\n")
	for _, want := range []string{"backup: 1 of 3 attempts gave up waiting (longest hold 9s by b)", "deploy: 1 leases were lost"} {
		if !strings.Contains(recs, want) {
			t.Errorf("recommendations lack %q:\n%s", want, recs)
		}
	}
}
