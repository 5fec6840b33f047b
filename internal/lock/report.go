package lock

import (
	"fmt"
	"sort"
	"time"
)

// Event is one use of a lock as recorded in the local history: a grant (with
// how long it waited and was held) or an attempt that gave up.
type Event struct {
	Name     string        `json:"name"`
	Owner    string        `json:"owner"`
	Mode     Mode          `json:"mode"`
	Token    uint64        `json:"token,omitempty"`
	Outcome  string        `json:"outcome"` // released, timeout, lost, interrupted, error
	At       time.Time     `json:"at"`
	Waited   time.Duration `json:"waited"`
	Held     time.Duration `json:"held"`
	ExitCode int           `json:"exit_code"`
	Backend  string        `json:"backend"`
}

// LockSummary is what the history says about one lock.
type LockSummary struct {
	Name        string        `json:"name"`
	Uses        int           `json:"uses"`
	Timeouts    int           `json:"timeouts"`
	Contended   int           `json:"contended"` // grants that had to wait more than ContendedAfter
	Contention  float64       `json:"contention_rate"`
	AvgWait     time.Duration `json:"avg_wait"`
	MaxWait     time.Duration `json:"max_wait"`
	LongestHold time.Duration `json:"longest_hold"`
	LongestBy   string        `json:"longest_hold_owner,omitempty"`
	Lost        int           `json:"leases_lost"`
}

// Report is the lock report: what is held and queued now, and what the
// history says (contention, waits, longest holds), with recommendations.
type Report struct {
	Since           time.Time     `json:"since"`
	Active          []Status      `json:"active"`
	Held            int           `json:"held"`
	Queued          int           `json:"queued"`
	Locks           []LockSummary `json:"locks"`
	Recommendations []string      `json:"recommendations"`
}

// ContendedAfter is the wait above which a grant counts as contended.
const ContendedAfter = 100 * time.Millisecond

// Summarize builds the report from the current status and history events.
func Summarize(active []Status, events []Event, since time.Time) *Report {
	r := &Report{Since: since, Active: []Status{}, Locks: []LockSummary{}, Recommendations: []string{}}
	for _, s := range active {
		if len(s.Holders)+len(s.Waiters) == 0 {
			continue
		}
		r.Active = append(r.Active, s)
		r.Held += len(s.Holders)
		r.Queued += len(s.Waiters)
	}
	by := map[string]*LockSummary{}
	waits := map[string]time.Duration{}
	for _, e := range events {
		if e.At.Before(since) {
			continue
		}
		s := by[e.Name]
		if s == nil {
			s = &LockSummary{Name: e.Name}
			by[e.Name] = s
		}
		s.Uses++
		switch e.Outcome {
		case "timeout":
			s.Timeouts++
		case "lost":
			s.Lost++
		}
		waits[e.Name] += e.Waited
		s.MaxWait = max(s.MaxWait, e.Waited)
		if e.Waited > ContendedAfter || e.Outcome == "timeout" {
			s.Contended++
		}
		if e.Held > s.LongestHold {
			s.LongestHold, s.LongestBy = e.Held, e.Owner
		}
	}
	for name, s := range by {
		s.AvgWait = (waits[name] / time.Duration(s.Uses)).Round(time.Millisecond)
		s.Contention = float64(s.Contended) / float64(s.Uses)
		r.Locks = append(r.Locks, *s)
	}
	sort.Slice(r.Locks, func(i, j int) bool { return r.Locks[i].Name < r.Locks[j].Name })
	for _, s := range r.Locks {
		switch {
		case s.Timeouts > 0:
			r.Recommendations = append(r.Recommendations, fmt.Sprintf(
				"%s: %d of %d attempts gave up waiting (longest hold %s by %s): raise --wait, shorten the jobs, or spread their schedules.",
				s.Name, s.Timeouts, s.Uses, s.LongestHold.Round(time.Millisecond), s.LongestBy))
		case s.Contention >= 0.5:
			r.Recommendations = append(r.Recommendations, fmt.Sprintf(
				"%s: %.0f%% of grants waited (average %s): the jobs overlap; stagger them or split the lock.",
				s.Name, s.Contention*100, s.AvgWait))
		}
		if s.Lost > 0 {
			r.Recommendations = append(r.Recommendations, fmt.Sprintf(
				"%s: %d leases were lost while commands ran: check the backend's reachability or raise --ttl.", s.Name, s.Lost))
		}
	}
	for _, s := range r.Active {
		for _, w := range s.Waiters {
			if time.Since(w.Since) > time.Hour {
				r.Recommendations = append(r.Recommendations, fmt.Sprintf(
					"%s: %s (pid %d on %s) has been waiting for %s: check the holder with 'netops lock status %s'.",
					s.Name, w.Owner, w.PID, w.Host, time.Since(w.Since).Round(time.Second), s.Name))
				break
			}
		}
	}
	if len(r.Recommendations) == 0 {
		r.Recommendations = append(r.Recommendations, "No contention, timeouts or lost leases in this period: nothing to do.")
	}
	return r
}
