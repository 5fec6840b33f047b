package local

import (
	"testing"

	"github.com/netops-dev/netops/internal/lock"
)

func TestGrantable(t *testing.T) {
	const (
		x = lock.Exclusive
		s = lock.Shared
	)
	sem := func(n int) claim { return claim{s, n} }
	c := func(ms ...lock.Mode) []claim {
		cs := make([]claim, len(ms))
		for i, m := range ms {
			cs[i] = claim{mode: m}
		}
		return cs
	}
	tests := []struct {
		queue []claim
		want  int
	}{
		{nil, 0},
		{c(x), 1},
		{c(s), 1},
		{c(x, x), 1},
		{c(x, s, s), 1},
		{c(s, s, s), 3},
		{c(s, s, x), 2},
		{c(s, x, s), 1}, // no writer starvation: the last s waits
		{c(s, s, x, s, s), 2},
		{c(x, s, x, s), 1},
		{[]claim{sem(2), sem(2), sem(2)}, 2}, // at most 2 holders
		{[]claim{sem(2), sem(2), sem(2), sem(2)}, 2}, // FIFO: the 3rd and 4th wait
		{[]claim{sem(1), sem(1)}, 1},                 // a 1-slot semaphore is a mutex
		{[]claim{sem(3), {mode: x}, sem(3)}, 1},      // an exclusive request still excludes
		{[]claim{{mode: s}, {mode: s}, sem(2)}, 2},   // 2 earlier tickets: no slot left
		{[]claim{sem(2), {mode: s}, {mode: s}}, 3},   // plain shared tickets have no limit
		{[]claim{sem(3), sem(3), sem(2), sem(3)}, 2}, // the 2-slot ticket stops the line
	}
	for _, tc := range tests {
		if got := grantable(tc.queue); got != tc.want {
			t.Errorf("grantable(%v) = %d, want %d", tc.queue, got, tc.want)
		}
	}
}

func TestPathRejectsOtherFiles(t *testing.T) {
	l := New(nil, "/state")
	for _, f := range []string{"", ".", "..", "../netops.db", "a/b", ".hidden", "/etc/passwd"} {
		if p := l.path(f); p != "" {
			t.Errorf("path(%q) = %q, want \"\"", f, p)
		}
	}
	if p := l.path("job.0123.lock"); p != "/state/locks/job.0123.lock" {
		t.Errorf("path(job.0123.lock) = %q", p)
	}
}
