package ipc_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/ipc/local"
	"github.com/netops-dev/netops/internal/store"
)

func TestDefaultsMatchConfig(t *testing.T) {
	if ipc.DefaultMaxSize != config.DefaultQueueMaxSize {
		t.Fatalf("ipc.DefaultMaxSize %d != config.DefaultQueueMaxSize %d", ipc.DefaultMaxSize, config.DefaultQueueMaxSize)
	}
	if string(ipc.DropOldest) != config.OverflowDropOldest || string(ipc.Reject) != config.OverflowReject {
		t.Fatal("overflow policy names differ from the config's")
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "jobs", "Q-1_x", "0start", strings.Repeat("x", 64)} {
		if err := ipc.ValidateName("queue", ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "_a", "a b", "a.b", "a/b", "é", strings.Repeat("x", 65), "a\n"} {
		if err := ipc.ValidateName("queue", bad); !errors.Is(err, ipc.ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestParsePriority(t *testing.T) {
	for in, want := range map[string]ipc.Priority{"": ipc.Normal, "high": ipc.High, "LOW": ipc.Low, "Normal": ipc.Normal} {
		if got, err := ipc.ParsePriority(in); err != nil || got != want {
			t.Errorf("ParsePriority(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ipc.ParsePriority("urgent"); !errors.Is(err, ipc.ErrInvalid) {
		t.Errorf("ParsePriority(urgent) = %v", err)
	}
	for _, p := range ipc.Priorities() {
		if ipc.PriorityOfRank(p.Rank()) != p {
			t.Errorf("rank of %q does not round-trip", p)
		}
	}
}

func TestValidateOutgoing(t *testing.T) {
	ok := []ipc.Outgoing{
		{},
		{Body: []byte("text with\ttabs\nand lines, ünïcode")},
		{Body: make([]byte, ipc.MaxBodySize), Priority: ipc.Low, Sender: "me@host", Headers: map[string]string{"a.b-c_d": "v"}},
	}
	for i := range ok[2].Body {
		ok[2].Body[i] = 'x'
	}
	for i, m := range ok {
		if err := ipc.ValidateOutgoing(m); err != nil {
			t.Errorf("ok %d: %v", i, err)
		}
	}
	bad := []struct {
		m    ipc.Outgoing
		want error
	}{
		{ipc.Outgoing{Body: make([]byte, ipc.MaxBodySize+1)}, ipc.ErrTooLarge},
		{ipc.Outgoing{Body: []byte{'a', 0}}, ipc.ErrInvalid},
		{ipc.Outgoing{Body: []byte{0xc3}}, ipc.ErrInvalid},
		{ipc.Outgoing{Priority: "x"}, ipc.ErrInvalid},
		{ipc.Outgoing{Sender: "a\nb"}, ipc.ErrInvalid},
		{ipc.Outgoing{Headers: map[string]string{"": "v"}}, ipc.ErrInvalid},
		{ipc.Outgoing{Headers: map[string]string{"k": strings.Repeat("v", ipc.MaxHeadersSize)}}, ipc.ErrTooLarge},
	}
	for i, tc := range bad {
		if err := ipc.ValidateOutgoing(tc.m); !errors.Is(err, tc.want) {
			t.Errorf("bad %d: %v, want %v", i, err, tc.want)
		}
	}
}

func TestP2PQueue(t *testing.T) {
	if q, err := ipc.P2PQueue("alice", "bob"); err != nil || q != "alice_to_bob" {
		t.Fatalf("P2PQueue = %q, %v", q, err)
	}
	if _, err := ipc.P2PQueue("a", "b/c"); !errors.Is(err, ipc.ErrInvalid) {
		t.Fatalf("bad peer: %v", err)
	}
	if _, err := ipc.P2PQueue(strings.Repeat("a", 40), strings.Repeat("b", 40)); !errors.Is(err, ipc.ErrInvalid) {
		t.Fatalf("too long together: %v", err)
	}
}

func TestDefaultBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := ipc.DefaultBackoff(i + 1); got != w {
			t.Errorf("DefaultBackoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := ipc.DefaultBackoff(40); got != time.Minute {
		t.Errorf("DefaultBackoff(40) = %s, want 1m", got)
	}
}

func TestMessageEnv(t *testing.T) {
	m := &ipc.Message{ID: "7", Seq: 7, Queue: "q", Priority: ipc.High, Sender: "s", Deliveries: 2,
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Headers: map[string]string{"trace-id": "x", "a.b": "y"}}
	want := []string{"NETOPS_MSG_ID=7", "NETOPS_MSG_SEQ=7", "NETOPS_MSG_PRIORITY=high", "NETOPS_MSG_SENDER=s",
		"NETOPS_MSG_TIME=2026-01-02T03:04:05Z", "NETOPS_MSG_DELIVERIES=2", "NETOPS_MSG_QUEUE=q",
		"NETOPS_MSG_HEADER_A_B=y", "NETOPS_MSG_HEADER_TRACE_ID=x"}
	if got := ipc.MessageEnv(m); !slices.Equal(got, want) {
		t.Fatalf("MessageEnv = %q\nwant %q", got, want)
	}
}

func TestSummarize(t *testing.T) {
	now := time.Now()
	qs := []ipc.QueueStats{
		{QueueConfig: ipc.QueueConfig{Name: "full", MaxSize: 10}, Ready: 9, Dropped: 3, Dead: 2, Oldest: now.Add(-time.Hour), Sent: 20, Acked: 5},
		{QueueConfig: ipc.QueueConfig{Name: "fine", MaxSize: 10}, Ready: 1, Oldest: now.Add(-time.Second), Sent: 1},
	}
	cs := []ipc.ChannelStats{{Name: "news", Published: 7, Subscribers: []ipc.SubscriberStats{
		{Name: "behind", Pending: ipc.ChannelRetention / 2, Active: now},
		{Name: "gone", Pending: 1, Active: now.Add(-48 * time.Hour)},
	}}}
	runs := []ipc.ConsumeRun{
		{Queue: "full", Handler: "h", ConsumeTotals: ipc.ConsumeTotals{Handled: 10, Acked: 5, Failed: 5, Dead: 2}},
		{Queue: "full", Handler: "h", ConsumeTotals: ipc.ConsumeTotals{Handled: 2, Acked: 2}},
	}
	r := ipc.Summarize(now, qs, cs, runs)
	if r.Totals.Queues != 2 || r.Totals.Ready != 10 || r.Totals.Sent != 21 || r.Totals.Dropped != 3 || r.Totals.Subscribers != 2 ||
		r.Totals.HandlerRuns != 2 || r.Totals.Handled != 12 || r.Totals.Failed != 5 {
		t.Fatalf("totals %+v", r.Totals)
	}
	if len(r.Handlers) != 1 || r.Handlers[0].Runs != 2 || r.Handlers[0].Handled != 12 {
		t.Fatalf("handlers %+v", r.Handlers)
	}
	all := strings.Join(r.Recommendations, "\n")
	for _, want := range []string{"queue full is 90% full", "queue full dropped 3", "queue full has 2 dead letter", "queue full: its oldest message has waited 1h0m0s",
		"subscriber behind of channel news is 5000 messages behind", "subscriber gone of channel news has not read since", "handler h on queue full failed 5 of 12"} {
		if !strings.Contains(all, want) {
			t.Errorf("recommendations lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "queue fine") {
		t.Errorf("recommendation about a healthy queue:\n%s", all)
	}
	if r := ipc.Summarize(now, nil, nil, nil); len(r.Recommendations) != 1 || r.Recommendations[0] != "no problem found" {
		t.Fatalf("empty report: %q", r.Recommendations)
	}
}

func TestNewSampleRates(t *testing.T) {
	t0 := time.Now()
	s1 := ipc.NewSample(t0, nil, []ipc.QueueStats{{QueueConfig: ipc.QueueConfig{Name: "q"}, Sent: 10, Acked: 4}}, nil)
	if !s1.First || s1.Queues[0].InRate != 0 {
		t.Fatalf("first sample %+v", s1)
	}
	s2 := ipc.NewSample(t0.Add(2*time.Second), s1, []ipc.QueueStats{{QueueConfig: ipc.QueueConfig{Name: "q"}, Sent: 30, Acked: 8}},
		[]ipc.ChannelStats{{Name: "c", Published: 5}})
	if s2.First || s2.Queues[0].InRate != 10 || s2.Queues[0].OutRate != 2 || s2.Channels[0].PubRate != 0 {
		t.Fatalf("second sample %+v", s2)
	}
}

// Consume with a real local backend and real handler processes (sh).
func TestConsumeExecHandler(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh:", err)
	}
	dir := t.TempDir()
	st, err := store.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := local.New(st, dir)
	ctx := t.Context()
	if err := b.CreateQueue(ctx, ipc.QueueConfig{Name: "q", MaxDeliveries: 2}); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"ok 1", "fail 2", "ok 3"} {
		if _, err := b.Send(ctx, "q", []ipc.Outgoing{{Body: []byte(body), Headers: map[string]string{"k": "v"}}}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	script := `read -r body; echo "$body $NETOPS_MSG_DELIVERIES $NETOPS_MSG_HEADER_K" >> "$0"; case "$body" in fail*) exit 5;; esac`
	h := ipc.ExecHandler([]string{sh, "-c", script, out}, os.Environ(), os.Stdout, os.Stderr, 0, time.Second)
	var outcomes []ipc.Outcome
	totals, err := ipc.Consume(ctx, b, "q", h, ipc.ConsumeOptions{Concurrency: 2, Idle: 1500 * time.Millisecond,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond }, OnOutcome: func(o ipc.Outcome) { outcomes = append(outcomes, o) }})
	if err != nil {
		t.Fatal(err)
	}
	if totals.Handled != 4 || totals.Acked != 2 || totals.Failed != 2 || totals.Dead != 1 || len(outcomes) != 4 {
		t.Fatalf("totals %+v, %d outcomes", totals, len(outcomes))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	slices.Sort(lines)
	if want := []string{"fail 2 1 v", "fail 2 2 v", "ok 1 1 v", "ok 3 1 v"}; !slices.Equal(lines, want) {
		t.Fatalf("handler saw %q, want %q", lines, want)
	}
	dl, err := b.DeadLetters(ctx, "q", 0)
	if err != nil || len(dl) != 1 || !strings.Contains(dl[0].Reason, "exited 5") {
		t.Fatalf("dead letters %+v, %v", dl, err)
	}

	// A handler that cannot start stops Consume with ErrStop; the message
	// stays in the queue.
	if _, err := b.Send(ctx, "q", []ipc.Outgoing{{Body: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	missing := ipc.ExecHandler([]string{filepath.Join(dir, "no-such-handler")}, nil, nil, nil, 0, 0)
	_, err = ipc.Consume(ctx, b, "q", missing, ipc.ConsumeOptions{Idle: time.Second})
	if !errors.Is(err, ipc.ErrStop) {
		t.Fatalf("Consume with a missing handler: %v, want ErrStop", err)
	}
	if st, err := b.QueueStats(ctx, "q"); err != nil || st.Ready != 1 {
		t.Fatalf("stats after ErrStop: %+v, %v", st, err)
	}

	// Cancelling ctx stops Consume without error.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := b.PurgeQueue(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := ipc.Consume(cctx, b, "q", h, ipc.ConsumeOptions{}); err != nil {
		t.Fatalf("Consume ended by ctx: %v", err)
	}
}
