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
	tests := []struct {
		queue []lock.Mode
		want  int
	}{
		{nil, 0},
		{[]lock.Mode{x}, 1},
		{[]lock.Mode{s}, 1},
		{[]lock.Mode{x, x}, 1},
		{[]lock.Mode{x, s, s}, 1},
		{[]lock.Mode{s, s, s}, 3},
		{[]lock.Mode{s, s, x}, 2},
		{[]lock.Mode{s, x, s}, 1}, // no writer starvation: the last s waits
		{[]lock.Mode{s, s, x, s, s}, 2},
		{[]lock.Mode{x, s, x, s}, 1},
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
