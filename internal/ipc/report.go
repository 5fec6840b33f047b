package ipc

import (
	"fmt"
	"sort"
	"time"
)

// ConsumeRun is one `ipc consume` run, as recorded in the local history.
type ConsumeRun struct {
	Queue    string    `json:"queue"`
	Handler  string    `json:"handler"`
	Backend  string    `json:"backend,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	ConsumeTotals
}

// HandlerSummary sums the recorded runs of one handler on one queue.
type HandlerSummary struct {
	Queue   string    `json:"queue"`
	Handler string    `json:"handler"`
	Runs    int       `json:"runs"`
	Last    time.Time `json:"last,omitzero"`
	ConsumeTotals
}

// ReportTotals sums a report.
type ReportTotals struct {
	Queues      int    `json:"queues"`
	Ready       int    `json:"ready"`
	InFlight    int    `json:"in_flight"`
	Dead        int    `json:"dead_letters"`
	Sent        uint64 `json:"sent"`
	Acked       uint64 `json:"acked"`
	Dropped     uint64 `json:"dropped"`
	Channels    int    `json:"channels"`
	Published   uint64 `json:"published"`
	Subscribers int    `json:"durable_subscribers"`
	HandlerRuns int    `json:"handler_runs"`
	Handled     int    `json:"handled"`
	Failed      int    `json:"failed"`
}

// Report is the IPC report: queues, channels and subscribers now, handlers
// from the history, totals and recommendations derived from them.
type Report struct {
	Generated       time.Time        `json:"generated"`
	Queues          []QueueStats     `json:"queues"`
	Channels        []ChannelStats   `json:"channels"`
	Handlers        []HandlerSummary `json:"handlers"`
	Totals          ReportTotals     `json:"totals"`
	Recommendations []string         `json:"recommendations"`
}

// Thresholds of the recommendations.
const (
	reportFullShare     = 0.8             // a queue this full is near its bound
	reportWaiting       = 5 * time.Minute // oldest message older than this: no consumer?
	reportBehindShare   = 0.5             // of ChannelRetention
	reportInactive      = 24 * time.Hour  // durable subscriber not seen for this long
	reportFailShare     = 0.1             // handler failure rate
	reportMinHandlerRun = 10              // handler runs needed to judge a failure rate
)

// Summarize builds the report at now.
func Summarize(now time.Time, queues []QueueStats, channels []ChannelStats, runs []ConsumeRun) *Report {
	r := &Report{Generated: now, Queues: queues, Channels: channels, Handlers: []HandlerSummary{}, Recommendations: []string{}}
	if r.Queues == nil {
		r.Queues = []QueueStats{}
	}
	if r.Channels == nil {
		r.Channels = []ChannelStats{}
	}
	t := &r.Totals
	for _, q := range queues {
		t.Queues++
		t.Ready += q.Ready
		t.InFlight += q.InFlight
		t.Dead += q.Dead
		t.Sent += q.Sent
		t.Acked += q.Acked
		t.Dropped += q.Dropped
		if used := q.Ready + q.InFlight; q.MaxSize > 0 && float64(used) >= reportFullShare*float64(q.MaxSize) {
			r.recommend("queue %s is %d%% full (%d of %d messages): add consumers ('ipc consume --concurrency') or raise its max size",
				q.Name, 100*used/q.MaxSize, used, q.MaxSize)
		}
		if q.Dropped > 0 {
			r.recommend("queue %s dropped %d message(s) when full (overflow drop-oldest): raise its max size, consume faster, or use overflow reject to push back on senders",
				q.Name, q.Dropped)
		}
		if q.Dead > 0 {
			r.recommend("queue %s has %d dead letter(s): see why with 'netops ipc dlq list %s', fix the handler, then 'netops ipc dlq redrive %s'",
				q.Name, q.Dead, q.Name, q.Name)
		}
		if q.Ready > 0 && !q.Oldest.IsZero() && now.Sub(q.Oldest) > reportWaiting {
			r.recommend("queue %s: its oldest message has waited %s: is a consumer running?", q.Name, now.Sub(q.Oldest).Round(time.Second))
		}
	}
	for _, c := range channels {
		t.Channels++
		t.Published += c.Published
		for _, s := range c.Subscribers {
			t.Subscribers++
			if float64(s.Pending) >= reportBehindShare*ChannelRetention {
				r.recommend("durable subscriber %s of channel %s is %d messages behind: past %d it misses the oldest; run it more often or add a consumer",
					s.Name, c.Name, s.Pending, ChannelRetention)
			}
			if !s.Active.IsZero() && now.Sub(s.Active) > reportInactive {
				r.recommend("durable subscriber %s of channel %s has not read since %s: if it is gone, remove it with 'netops ipc channel unsubscribe %s %s'",
					s.Name, c.Name, s.Active.Format(time.RFC3339), c.Name, s.Name)
			}
		}
	}
	byKey := map[[2]string]*HandlerSummary{}
	for _, run := range runs {
		k := [2]string{run.Queue, run.Handler}
		h := byKey[k]
		if h == nil {
			h = &HandlerSummary{Queue: run.Queue, Handler: run.Handler}
			byKey[k] = h
		}
		h.Runs++
		h.Handled += run.Handled
		h.Acked += run.Acked
		h.Failed += run.Failed
		h.Dead += run.Dead
		h.Lost += run.Lost
		if run.Finished.After(h.Last) {
			h.Last = run.Finished
		}
		t.HandlerRuns++
		t.Handled += run.Handled
		t.Failed += run.Failed
	}
	for _, h := range byKey {
		r.Handlers = append(r.Handlers, *h)
	}
	sort.Slice(r.Handlers, func(i, j int) bool {
		a, b := r.Handlers[i], r.Handlers[j]
		if a.Queue != b.Queue {
			return a.Queue < b.Queue
		}
		return a.Handler < b.Handler
	})
	for _, h := range r.Handlers {
		if h.Handled >= reportMinHandlerRun && float64(h.Failed) > reportFailShare*float64(h.Handled) {
			r.recommend("handler %s on queue %s failed %d of %d messages: check its logs (consume prints each failure on stderr)",
				h.Handler, h.Queue, h.Failed, h.Handled)
		}
		if h.Lost > 0 {
			r.recommend("handler %s on queue %s finished %d message(s) after the visibility timeout: raise the queue's visibility or make the handler faster",
				h.Handler, h.Queue, h.Lost)
		}
	}
	if len(r.Recommendations) == 0 {
		r.Recommendations = append(r.Recommendations, "no problem found")
	}
	return r
}

func (r *Report) recommend(format string, args ...any) {
	r.Recommendations = append(r.Recommendations, fmt.Sprintf(format, args...))
}

// QueueSample is one queue in a monitor sample.
type QueueSample struct {
	Name     string  `json:"name"`
	Ready    int     `json:"ready"`
	InFlight int     `json:"in_flight"`
	Dead     int     `json:"dead_letters"`
	InRate   float64 `json:"in_per_s"`  // messages sent per second since the previous sample
	OutRate  float64 `json:"out_per_s"` // messages acknowledged per second
	Dropped  uint64  `json:"dropped"`
}

// ChannelSample is one channel in a monitor sample.
type ChannelSample struct {
	Name        string            `json:"name"`
	PubRate     float64           `json:"published_per_s"`
	Subscribers []SubscriberStats `json:"subscribers"`
}

// Sample is one look of `ipc monitor`.
type Sample struct {
	Time     time.Time       `json:"time"`
	First    bool            `json:"first,omitempty"` // rates are 0: no previous sample
	Queues   []QueueSample   `json:"queues"`
	Channels []ChannelSample `json:"channels"`
	// Raw counters, for the next sample's rates.
	sent, acked, published map[string]uint64
}

// NewSample builds a sample from the stats at now; rates are computed
// against prev (nil for the first sample).
func NewSample(now time.Time, prev *Sample, queues []QueueStats, channels []ChannelStats) *Sample {
	s := &Sample{Time: now, First: prev == nil, Queues: []QueueSample{}, Channels: []ChannelSample{},
		sent: map[string]uint64{}, acked: map[string]uint64{}, published: map[string]uint64{}}
	var dt float64
	if prev != nil {
		dt = now.Sub(prev.Time).Seconds()
	}
	rate := func(cur uint64, old map[string]uint64, name string) float64 {
		if prev == nil || dt <= 0 {
			return 0
		}
		o, ok := old[name]
		if !ok || cur < o {
			return 0
		}
		return float64(cur-o) / dt
	}
	for _, q := range queues {
		s.sent[q.Name], s.acked[q.Name] = q.Sent, q.Acked
		qs := QueueSample{Name: q.Name, Ready: q.Ready, InFlight: q.InFlight, Dead: q.Dead, Dropped: q.Dropped}
		if prev != nil {
			qs.InRate, qs.OutRate = rate(q.Sent, prev.sent, q.Name), rate(q.Acked, prev.acked, q.Name)
		}
		s.Queues = append(s.Queues, qs)
	}
	for _, c := range channels {
		s.published[c.Name] = c.Published
		cs := ChannelSample{Name: c.Name, Subscribers: c.Subscribers}
		if cs.Subscribers == nil {
			cs.Subscribers = []SubscriberStats{}
		}
		if prev != nil {
			cs.PubRate = rate(c.Published, prev.published, c.Name)
		}
		s.Channels = append(s.Channels, cs)
	}
	return s
}
