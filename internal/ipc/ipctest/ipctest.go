// Package ipctest is the conformance suite every ipc backend runs, so that
// priorities, FIFO, overflow, visibility timeouts, dead letters and durable
// subscribers mean the same thing on every backend:
//
//	func TestConformance(t *testing.T) {
//		ipctest.Run(t, func(t *testing.T) ipc.Backend { ... })
//	}
package ipctest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/ipc"
)

// within bounds every wait of the suite for something that should happen
// (a delivery, a redelivery after a visibility timeout): generous, so that
// a slow CI machine does not fail, yet a lost wake-up still fails the test.
const within = 15 * time.Second

// Run runs the conformance suite, one subtest per behaviour.
//
// newBackend returns a Backend on the backend under test. Within one subtest
// (one t) it may be called more than once, and every Backend it returns for
// that t must share the same state, as separate processes (or hosts) using
// the same state directory or server would. Different subtests may share
// state or not: the suite uses queue and channel names unique to each
// subtest. Run closes each Backend it gets exactly once, before the
// cleanups newBackend registered with t run.
//
// Beyond the Backend interface documentation, the suite checks that:
//   - every method rejects invalid names with ipc.ErrInvalid and unknown
//     queues with ipc.ErrNotFound;
//   - a Receive or Subscription.Next ended by ctx returns an error matching
//     ctx.Err();
//   - Message.Priority, Sender, Headers, Body and Deliveries round-trip.
//
// The whole suite takes about 10 s (visibility timeouts of 1 s).
func Run(t *testing.T, newBackend func(t *testing.T) ipc.Backend) {
	s := &suite{newBackend: newBackend}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"InvalidNames", s.testInvalidNames},
		{"UnknownQueue", s.testUnknownQueue},
		{"CreateExistsEnsure", s.testCreateExistsEnsure},
		{"InvalidMessages", s.testInvalidMessages},
		{"RoundTrip", s.testRoundTrip},
		{"PriorityOrder", s.testPriorityOrder},
		{"FIFOWithinPriority", s.testFIFO},
		{"DropOldestKeepsNewest", s.testDropOldest},
		{"DropOldestBatchLargerThanQueue", s.testDropOldestBatch},
		{"Reject", s.testReject},
		{"ReceiveTimeout", s.testReceiveTimeout},
		{"ReceiveCancel", s.testReceiveCancel},
		{"ReceiveWakesOnSend", s.testReceiveWakes},
		{"VisibilityTimeoutRedelivers", s.testVisibility},
		{"ExtendKeepsHidden", s.testExtend},
		{"NackRetries", s.testNack},
		{"DeadLetterAfterMaxDeliveries", s.testDeadLetterNack},
		{"DeadLetterAfterVisibility", s.testDeadLetterVisibility},
		{"Redrive", s.testRedrive},
		{"AckAll", s.testAckAll},
		{"AckAndReceive", s.testAckAndReceive},
		{"Stats", s.testStats},
		{"PurgeAndDelete", s.testPurgeDelete},
		{"ConcurrentReceiversEachOnce", s.testConcurrentReceivers},
		{"ChannelNonDurableLiveOnly", s.testChannelLive},
		{"ChannelDurableCatchesUp", s.testChannelDurable},
		{"ChannelDurableUnackedAgain", s.testChannelUnacked},
		{"ChannelFanOut", s.testChannelFanOut},
		{"ChannelNextCancel", s.testChannelCancel},
		{"ChannelStatsAndDeleteSubscriber", s.testChannelStats},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	newBackend func(t *testing.T) ipc.Backend
}

// backend returns a Backend closed when t ends.
func (s *suite) backend(t *testing.T) ipc.Backend {
	t.Helper()
	b := s.newBackend(t)
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			if err := b.Close(); err != nil {
				t.Errorf("close backend: %v", err)
			}
		})
	})
	return b
}

// uniq returns a name unique to this run.
func uniq(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 4*within)
	t.Cleanup(cancel)
	return ctx
}

// queue creates a queue with cfg (Name filled in when empty).
func (s *suite) queue(t *testing.T, b ipc.Backend, cfg ipc.QueueConfig) string {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = uniq("q")
	}
	if err := b.CreateQueue(ctxT(t), cfg); err != nil {
		t.Fatalf("CreateQueue(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = b.DeleteQueue(context.Background(), cfg.Name) })
	return cfg.Name
}

func text(bodies ...string) []ipc.Outgoing {
	out := make([]ipc.Outgoing, len(bodies))
	for i, s := range bodies {
		out[i] = ipc.Outgoing{Body: []byte(s)}
	}
	return out
}

func send(t *testing.T, b ipc.Backend, q string, msgs ...ipc.Outgoing) ipc.SendResult {
	t.Helper()
	res, err := b.Send(ctxT(t), q, msgs)
	if err != nil {
		t.Fatalf("Send to %s: %v", q, err)
	}
	if len(res.Messages) != len(msgs) {
		t.Fatalf("Send to %s stored %d of %d messages", q, len(res.Messages), len(msgs))
	}
	return res
}

func receive(t *testing.T, b ipc.Backend, q string, maxN int, wait time.Duration) []ipc.Delivery {
	t.Helper()
	ds, err := b.Receive(ctxT(t), q, ipc.ReceiveOptions{Max: maxN, Wait: wait})
	if err != nil {
		t.Fatalf("Receive from %s: %v", q, err)
	}
	if len(ds) > max(maxN, 1) {
		t.Fatalf("Receive(Max %d) returned %d deliveries", maxN, len(ds))
	}
	return ds
}

// drain receives and acknowledges every message of q (waiting for none)
// and returns their bodies in delivery order.
func drain(t *testing.T, b ipc.Backend, q string) []string {
	t.Helper()
	var out []string
	for {
		ds := receive(t, b, q, 10, 0)
		if len(ds) == 0 {
			return out
		}
		for _, d := range ds {
			out = append(out, string(d.Message().Body))
		}
		if err := b.AckAll(ctxT(t), ds); err != nil {
			t.Fatalf("AckAll: %v", err)
		}
	}
}

func ack(t *testing.T, d ipc.Delivery) {
	t.Helper()
	if err := d.Ack(ctxT(t)); err != nil {
		t.Fatalf("Ack %s: %v", d.Message().ID, err)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want one matching %q", what, err, target)
	}
}

func wantBodies(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func (s *suite) testInvalidNames(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	for _, name := range []string{"", "a b", "a.b", "-x", "a/b", "*", strings.Repeat("x", ipc.MaxNameLen+1), "é"} {
		wantErr(t, fmt.Sprintf("CreateQueue(%q)", name), b.CreateQueue(ctx, ipc.QueueConfig{Name: name}), ipc.ErrInvalid)
		_, err := b.Send(ctx, name, text("x"))
		wantErr(t, fmt.Sprintf("Send(%q)", name), err, ipc.ErrInvalid)
		_, err = b.Receive(ctx, name, ipc.ReceiveOptions{})
		wantErr(t, fmt.Sprintf("Receive(%q)", name), err, ipc.ErrInvalid)
		_, err = b.Publish(ctx, name, text("x"))
		wantErr(t, fmt.Sprintf("Publish(%q)", name), err, ipc.ErrInvalid)
		_, err = b.Subscribe(ctx, name, ipc.SubscribeOptions{})
		wantErr(t, fmt.Sprintf("Subscribe(%q)", name), err, ipc.ErrInvalid)
		if name != "" {
			_, err = b.Subscribe(ctx, "ok", ipc.SubscribeOptions{Durable: name})
			wantErr(t, fmt.Sprintf("Subscribe(Durable %q)", name), err, ipc.ErrInvalid)
		}
	}
	for _, cfg := range []ipc.QueueConfig{
		{Name: "q", MaxSize: -1},
		{Name: "q", Overflow: "drop-newest"},
		{Name: "q", MaxDeliveries: -2},
		{Name: "q", Visibility: time.Millisecond},
	} {
		wantErr(t, fmt.Sprintf("CreateQueue(%+v)", cfg), b.CreateQueue(ctx, cfg), ipc.ErrInvalid)
	}
}

func (s *suite) testUnknownQueue(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	q := uniq("missing")
	_, err := b.Send(ctx, q, text("x"))
	wantErr(t, "Send", err, ipc.ErrNotFound)
	_, err = b.Receive(ctx, q, ipc.ReceiveOptions{Wait: time.Second})
	wantErr(t, "Receive", err, ipc.ErrNotFound)
	_, err = b.QueueStats(ctx, q)
	wantErr(t, "QueueStats", err, ipc.ErrNotFound)
	_, err = b.Peek(ctx, q, 1)
	wantErr(t, "Peek", err, ipc.ErrNotFound)
	_, err = b.PurgeQueue(ctx, q)
	wantErr(t, "PurgeQueue", err, ipc.ErrNotFound)
	_, err = b.DeadLetters(ctx, q, 1)
	wantErr(t, "DeadLetters", err, ipc.ErrNotFound)
	_, err = b.Redrive(ctx, q, 0)
	wantErr(t, "Redrive", err, ipc.ErrNotFound)
	wantErr(t, "DeleteQueue", b.DeleteQueue(ctx, q), ipc.ErrNotFound)
}

func (s *suite) testCreateExistsEnsure(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxSize: 7, Overflow: ipc.Reject})
	wantErr(t, "second CreateQueue", b.CreateQueue(ctx, ipc.QueueConfig{Name: q}), ipc.ErrExists)
	find := func() ipc.QueueConfig {
		t.Helper()
		qs, err := b.Queues(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range qs {
			if i > 0 && qs[i-1].Name >= c.Name {
				t.Fatalf("Queues not sorted by name: %q before %q", qs[i-1].Name, c.Name)
			}
			if c.Name == q {
				return c
			}
		}
		t.Fatalf("Queues does not list %s: %+v", q, qs)
		return ipc.QueueConfig{}
	}
	want := ipc.QueueConfig{Name: q, MaxSize: 7, Overflow: ipc.Reject, MaxDeliveries: ipc.DefaultMaxDeliveries, Visibility: ipc.DefaultVisibility}
	if got := find(); got != want {
		t.Fatalf("Queues lists %+v, want %+v", got, want)
	}
	// EnsureQueue updates an existing queue and keeps its messages.
	send(t, b, q, text("kept")...)
	want = ipc.QueueConfig{Name: q, MaxSize: 9, Overflow: ipc.DropOldest, MaxDeliveries: 2, Visibility: 7 * time.Second}
	if err := b.EnsureQueue(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureQueue(ctx, want); err != nil {
		t.Fatalf("EnsureQueue again: %v", err)
	}
	if got := find(); got != want {
		t.Fatalf("after EnsureQueue Queues lists %+v, want %+v", got, want)
	}
	wantBodies(t, "messages after EnsureQueue", drain(t, b, q), "kept")
	// EnsureQueue creates a missing queue.
	q2 := uniq("ensured")
	if err := b.EnsureQueue(ctx, ipc.QueueConfig{Name: q2}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.DeleteQueue(context.Background(), q2) })
	send(t, b, q2, text("x")...)
	wantBodies(t, "ensured queue", drain(t, b, q2), "x")
}

func (s *suite) testInvalidMessages(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	ch := uniq("c")
	bad := []struct {
		m    ipc.Outgoing
		want error
	}{
		{ipc.Outgoing{Body: make([]byte, ipc.MaxBodySize+1)}, ipc.ErrTooLarge},
		{ipc.Outgoing{Body: []byte("a\x00b")}, ipc.ErrInvalid},
		{ipc.Outgoing{Body: []byte{0xff, 0xfe}}, ipc.ErrInvalid},
		{ipc.Outgoing{Body: []byte("x"), Priority: "urgent"}, ipc.ErrInvalid},
		{ipc.Outgoing{Body: []byte("x"), Sender: strings.Repeat("s", ipc.MaxNameLen+1)}, ipc.ErrInvalid},
		{ipc.Outgoing{Body: []byte("x"), Headers: map[string]string{"a b": "v"}}, ipc.ErrInvalid},
		{ipc.Outgoing{Body: []byte("x"), Headers: map[string]string{"k": "line\nbreak"}}, ipc.ErrInvalid},
	}
	for i, tc := range bad {
		// A valid message before the bad one: nothing of the batch is stored.
		_, err := b.Send(ctx, q, []ipc.Outgoing{{Body: []byte("ok")}, tc.m})
		wantErr(t, fmt.Sprintf("Send bad message %d", i), err, tc.want)
		_, err = b.Publish(ctx, ch, []ipc.Outgoing{tc.m})
		wantErr(t, fmt.Sprintf("Publish bad message %d", i), err, tc.want)
	}
	if got := drain(t, b, q); len(got) != 0 {
		t.Fatalf("invalid batches stored messages: %q", got)
	}
	// The largest body is fine.
	big := strings.Repeat("é", ipc.MaxBodySize/2)
	send(t, b, q, ipc.Outgoing{Body: []byte(big)})
	ds := receive(t, b, q, 1, 0)
	if len(ds) != 1 || string(ds[0].Message().Body) != big {
		t.Fatalf("largest body did not round-trip")
	}
	ack(t, ds[0])
}

func (s *suite) testRoundTrip(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	m := ipc.Outgoing{Priority: ipc.High, Sender: "backup-job", Headers: map[string]string{"host": "db1", "x.y-z_1": "ü ok"}, Body: []byte("done: 42\nsecond line")}
	before := time.Now().Add(-time.Second)
	res := send(t, b, q, m)
	sent := res.Messages[0]
	if sent.ID == "" || sent.Seq == 0 || sent.Time.Before(before) {
		t.Fatalf("Send result %+v: want ID, Seq and Time", sent)
	}
	ds := receive(t, b, q, 1, 0)
	if len(ds) != 1 {
		t.Fatalf("received %d messages, want 1", len(ds))
	}
	got := ds[0].Message()
	if got.ID != sent.ID || got.Seq != sent.Seq || got.Queue != q || got.Priority != ipc.High || got.Sender != "backup-job" ||
		string(got.Body) != string(m.Body) || got.Deliveries != 1 || len(got.Headers) != 2 ||
		got.Headers["host"] != "db1" || got.Headers["x.y-z_1"] != "ü ok" || got.Time.Sub(sent.Time).Abs() > time.Second {
		t.Fatalf("received %+v (body %q), sent %+v", *got, got.Body, m)
	}
	ack(t, ds[0])
	// An empty body is a message too.
	send(t, b, q, ipc.Outgoing{})
	ds = receive(t, b, q, 1, 0)
	if len(ds) != 1 || len(ds[0].Message().Body) != 0 || ds[0].Message().Priority != ipc.Normal {
		t.Fatalf("empty message: got %d deliveries", len(ds))
	}
	ack(t, ds[0])
}

func (s *suite) testPriorityOrder(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	var msgs []ipc.Outgoing
	for i, p := range []ipc.Priority{ipc.Low, ipc.Normal, ipc.High, ipc.High, ipc.Low, ipc.Normal, "", ipc.High} {
		msgs = append(msgs, ipc.Outgoing{Priority: p, Body: fmt.Appendf(nil, "%s-%d", p, i)})
	}
	send(t, b, q, msgs[:3]...)
	send(t, b, q, msgs[3:]...)
	wantBodies(t, "delivery order", drain(t, b, q), "high-2", "high-3", "high-7", "normal-1", "normal-5", "-6", "low-0", "low-4")
}

func (s *suite) testFIFO(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	var want []string
	for i := range 60 {
		want = append(want, fmt.Sprint(i))
	}
	send(t, b, q, text(want[:25]...)...)
	for _, w := range want[25:] {
		send(t, b, q, text(w)...)
	}
	wantBodies(t, "FIFO", drain(t, b, q), want...)
}

func (s *suite) testDropOldest(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxSize: 5})
	dropped := 0
	for i := range 9 {
		p := ipc.Normal
		if i == 0 {
			p = ipc.High // the oldest goes first, whatever its priority
		}
		res := send(t, b, q, ipc.Outgoing{Priority: p, Body: fmt.Appendf(nil, "m%d", i)})
		dropped += res.Dropped
	}
	if dropped != 4 {
		t.Fatalf("SendResult.Dropped adds up to %d, want 4", dropped)
	}
	st, err := b.QueueStats(ctxT(t), q)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 5 || st.Dropped != 4 || st.Sent != 9 {
		t.Fatalf("stats: ready %d dropped %d sent %d, want 5, 4, 9", st.Ready, st.Dropped, st.Sent)
	}
	wantBodies(t, "kept", drain(t, b, q), "m4", "m5", "m6", "m7", "m8")
}

func (s *suite) testDropOldestBatch(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxSize: 3})
	send(t, b, q, text("old1", "old2")...)
	res := send(t, b, q, text("a", "b", "c", "d")...)
	if res.Dropped != 3 {
		t.Fatalf("Dropped = %d, want 3", res.Dropped)
	}
	wantBodies(t, "kept", drain(t, b, q), "b", "c", "d")
}

func (s *suite) testReject(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxSize: 3, Overflow: ipc.Reject})
	send(t, b, q, text("1", "2")...)
	res, err := b.Send(ctx, q, text("3", "4", "5"))
	wantErr(t, "Send over the bound", err, ipc.ErrFull)
	if len(res.Messages) != 1 || res.Dropped != 0 {
		t.Fatalf("Send over the bound stored %d, dropped %d; want 1 stored (the prefix that fits), none dropped", len(res.Messages), res.Dropped)
	}
	_, err = b.Send(ctx, q, text("6"))
	wantErr(t, "Send to a full queue", err, ipc.ErrFull)
	// In-flight messages count: receiving does not make room, acking does.
	ds := receive(t, b, q, 1, 0)
	_, err = b.Send(ctx, q, text("7"))
	wantErr(t, "Send while one is in flight", err, ipc.ErrFull)
	ack(t, ds[0])
	send(t, b, q, text("8")...)
	wantBodies(t, "kept", drain(t, b, q), "2", "3", "8")
}

func (s *suite) testReceiveTimeout(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	if ds := receive(t, b, q, 1, 0); len(ds) != 0 {
		t.Fatalf("Receive on an empty queue returned %d", len(ds))
	}
	if ds := receive(t, b, q, 3, 300*time.Millisecond); len(ds) != 0 {
		t.Fatalf("Receive with a wait on an empty queue returned %d", len(ds))
	}
}

func (s *suite) testReceiveCancel(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		time.Sleep(200 * time.Millisecond)
		cancel()
	}()
	_, err := b.Receive(ctx, q, ipc.ReceiveOptions{Wait: ipc.WaitForever})
	wantErr(t, "Receive with a cancelled ctx", err, context.Canceled)
}

func (s *suite) testReceiveWakes(t *testing.T) {
	b1, b2 := s.backend(t), s.backend(t)
	q := s.queue(t, b1, ipc.QueueConfig{})
	got := make(chan []ipc.Delivery, 1)
	errc := make(chan error, 1)
	go func() {
		ds, err := b1.Receive(ctxT(t), q, ipc.ReceiveOptions{Max: 5, Wait: within})
		errc <- err
		got <- ds
	}()
	time.Sleep(100 * time.Millisecond) // let the receiver wait (not required)
	send(t, b2, q, text("wake")...)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	ds := <-got
	if len(ds) != 1 || string(ds[0].Message().Body) != "wake" {
		t.Fatalf("waiting receiver got %d messages, want the one sent", len(ds))
	}
	ack(t, ds[0])
}

func (s *suite) testVisibility(t *testing.T) {
	b1, b2 := s.backend(t), s.backend(t)
	q := s.queue(t, b1, ipc.QueueConfig{Visibility: time.Second})
	send(t, b1, q, text("m")...)
	first := receive(t, b1, q, 1, 0)
	if len(first) != 1 {
		t.Fatal("no delivery")
	}
	// Invisible to others while in flight (checked well within the second).
	start := time.Now()
	if ds := receive(t, b2, q, 1, 0); len(ds) != 0 && time.Since(start) < 500*time.Millisecond {
		t.Fatalf("in-flight message delivered again at once")
	}
	// The receiver "crashes": the message comes back after the timeout.
	ds := receive(t, b2, q, 1, within)
	if len(ds) != 1 {
		t.Fatal("message not delivered again after its visibility timeout")
	}
	m := ds[0].Message()
	if m.ID != first[0].Message().ID || m.Deliveries != 2 {
		t.Fatalf("redelivered %s with Deliveries %d, want %s with 2", m.ID, m.Deliveries, first[0].Message().ID)
	}
	ack(t, ds[0])
	// The first receiver's late ack must not fail silently in a harmful
	// way: ErrLost, or nil on a backend that cannot tell.
	if err := first[0].Ack(ctxT(t)); err != nil && !errors.Is(err, ipc.ErrLost) {
		t.Fatalf("late Ack: %v, want nil or ErrLost", err)
	}
	if got := drain(t, b1, q); len(got) != 0 {
		t.Fatalf("queue not empty after ack: %q", got)
	}
}

func (s *suite) testExtend(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{Visibility: 3 * time.Second})
	send(t, b, q, text("m")...)
	ds := receive(t, b, q, 1, 0)
	if len(ds) != 1 {
		t.Fatal("no delivery")
	}
	for range 4 {
		time.Sleep(time.Second)
		if err := ds[0].Extend(ctxT(t)); err != nil {
			t.Fatalf("Extend: %v", err)
		}
		if again := receive(t, b, q, 1, 0); len(again) != 0 {
			t.Fatal("extended message delivered again")
		}
	}
	ack(t, ds[0])
}

func (s *suite) testNack(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	send(t, b, q, text("m")...)
	ds := receive(t, b, q, 1, 0)
	dead, err := ds[0].Nack(ctxT(t), 0, "handler exited 1")
	if err != nil || dead {
		t.Fatalf("Nack = %v, %v; want false, nil", dead, err)
	}
	ds = receive(t, b, q, 1, within)
	if len(ds) != 1 || ds[0].Message().Deliveries != 2 {
		t.Fatal("nacked message not delivered again with Deliveries 2")
	}
	// A retry delay keeps it back (30 s: far beyond this test).
	if _, err := ds[0].Nack(ctxT(t), 30*time.Second, "later"); err != nil {
		t.Fatal(err)
	}
	if again := receive(t, b, q, 1, 0); len(again) != 0 {
		t.Fatal("message delivered before its retry delay")
	}
	st, err := b.QueueStats(ctxT(t), q)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready+st.InFlight != 1 || st.Dead != 0 {
		t.Fatalf("stats of a delayed message: ready %d in flight %d dead %d", st.Ready, st.InFlight, st.Dead)
	}
}

func (s *suite) testDeadLetterNack(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxDeliveries: 3})
	send(t, b, q, ipc.Outgoing{Priority: ipc.Low, Sender: "s", Body: []byte("poison")})
	send(t, b, q, text("fine")...)
	ds := receive(t, b, q, 1, 0)
	if len(ds) != 1 || string(ds[0].Message().Body) != "fine" {
		t.Fatal("the normal-priority message should come first")
	}
	ack(t, ds[0])
	for i := 1; i <= 3; i++ {
		ds := receive(t, b, q, 1, within)
		if len(ds) != 1 || string(ds[0].Message().Body) != "poison" || ds[0].Message().Deliveries != i {
			t.Fatalf("delivery %d: got %d messages", i, len(ds))
		}
		dead, err := ds[0].Nack(ctxT(t), 0, "exit status 3")
		if err != nil || dead != (i == 3) {
			t.Fatalf("Nack of delivery %d = %v, %v; want dead=%v", i, dead, err, i == 3)
		}
	}
	if ds := receive(t, b, q, 1, 0); len(ds) != 0 {
		t.Fatal("dead letter delivered again")
	}
	dl, err := b.DeadLetters(ctxT(t), q, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || string(dl[0].Body) != "poison" || dl[0].Deliveries != 3 || dl[0].Priority != ipc.Low ||
		dl[0].Sender != "s" || !strings.Contains(dl[0].Reason, "exit status 3") {
		t.Fatalf("DeadLetters = %+v", dl)
	}
	st, err := b.QueueStats(ctxT(t), q)
	if err != nil {
		t.Fatal(err)
	}
	if st.Dead != 1 || st.Ready != 0 || st.InFlight != 0 {
		t.Fatalf("stats: dead %d ready %d in flight %d; want 1, 0, 0", st.Dead, st.Ready, st.InFlight)
	}
}

func (s *suite) testDeadLetterVisibility(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxDeliveries: 1, Visibility: time.Second})
	send(t, b, q, text("crash")...)
	if ds := receive(t, b, q, 1, 0); len(ds) != 1 {
		t.Fatal("no delivery")
	}
	// Its only delivery times out: the next Receive moves it to the DLQ
	// instead of delivering it.
	deadline := time.Now().Add(within)
	for {
		if ds := receive(t, b, q, 1, 2*time.Second); len(ds) != 0 {
			t.Fatalf("message delivered %d times with MaxDeliveries 1", ds[0].Message().Deliveries)
		}
		dl, err := b.DeadLetters(ctxT(t), q, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(dl) == 1 {
			if string(dl[0].Body) != "crash" || dl[0].Deliveries != 1 {
				t.Fatalf("dead letter %+v", dl[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("timed-out message never reached the dead-letter queue")
		}
	}
}

func (s *suite) testRedrive(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxDeliveries: 1})
	send(t, b, q, text("d1", "d2", "d3")...)
	for range 3 {
		ds := receive(t, b, q, 1, 0)
		if dead, err := ds[0].Nack(ctx, 0, "fail"); err != nil || !dead {
			t.Fatalf("Nack = %v, %v; want dead", dead, err)
		}
	}
	send(t, b, q, text("live")...)
	n, err := b.Redrive(ctx, q, 2)
	if err != nil || n != 2 {
		t.Fatalf("Redrive(2) = %d, %v", n, err)
	}
	dl, err := b.DeadLetters(ctx, q, 0)
	if err != nil || len(dl) != 1 || string(dl[0].Body) != "d3" {
		t.Fatalf("DeadLetters after Redrive(2) = %+v, %v; want d3", dl, err)
	}
	// Redriven messages go to the end of the queue with a fresh count.
	ds := receive(t, b, q, 5, 0)
	var got []string
	for _, d := range ds {
		got = append(got, string(d.Message().Body))
		if d.Message().Deliveries != 1 {
			t.Fatalf("redriven %s has Deliveries %d, want 1", d.Message().Body, d.Message().Deliveries)
		}
	}
	wantBodies(t, "after redrive", got, "live", "d1", "d2")
	if err := b.AckAll(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Redrive(ctx, q, 0); err != nil || n != 1 {
		t.Fatalf("Redrive(all) = %d, %v; want 1", n, err)
	}
	if n, err := b.Redrive(ctx, q, 0); err != nil || n != 0 {
		t.Fatalf("Redrive of an empty DLQ = %d, %v; want 0", n, err)
	}
	wantBodies(t, "after second redrive", drain(t, b, q), "d3")
}

func (s *suite) testAckAll(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	var bodies []string
	for i := range 30 {
		bodies = append(bodies, fmt.Sprint(i))
	}
	send(t, b, q, text(bodies...)...)
	ds := receive(t, b, q, 100, 0)
	if len(ds) != 30 {
		t.Fatalf("Receive(Max 100) returned %d of 30", len(ds))
	}
	if err := b.AckAll(ctxT(t), ds); err != nil {
		t.Fatal(err)
	}
	st, err := b.QueueStats(ctxT(t), q)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 0 || st.InFlight != 0 || st.Acked != 30 || st.Sent != 30 {
		t.Fatalf("after AckAll: ready %d in flight %d acked %d sent %d", st.Ready, st.InFlight, st.Acked, st.Sent)
	}
}

// AckAndReceive settles one batch and takes the next: every message once,
// in order, all acknowledged in the end.
func (s *suite) testAckAndReceive(t *testing.T) {
	b := s.backend(t)
	q := s.queue(t, b, ipc.QueueConfig{})
	var bodies []string
	for i := range 25 {
		bodies = append(bodies, fmt.Sprint(i))
	}
	send(t, b, q, text(bodies...)...)
	var got []string
	var prev []ipc.Delivery
	for {
		ds, err := ipc.AckAndReceive(ctxT(t), b, q, prev, ipc.ReceiveOptions{Max: 10})
		if err != nil {
			t.Fatalf("AckAndReceive: %v", err)
		}
		if len(ds) == 0 {
			break
		}
		if len(ds) > 10 {
			t.Fatalf("AckAndReceive(Max 10) returned %d", len(ds))
		}
		for _, d := range ds {
			got = append(got, string(d.Message().Body))
		}
		prev = ds
	}
	wantBodies(t, "received", got, bodies...)
	st, err := b.QueueStats(ctxT(t), q)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 0 || st.InFlight != 0 || st.Acked != 25 {
		t.Fatalf("after AckAndReceive: ready %d in flight %d acked %d", st.Ready, st.InFlight, st.Acked)
	}
}

func (s *suite) testStats(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxSize: 50, MaxDeliveries: 2, Visibility: time.Minute})
	before := time.Now().Add(-time.Second)
	send(t, b, q, ipc.Outgoing{Priority: ipc.High, Body: []byte("h")}, ipc.Outgoing{Priority: ipc.Low, Body: []byte("l1")},
		ipc.Outgoing{Priority: ipc.Low, Body: []byte("l2")}, ipc.Outgoing{Body: []byte("n")})
	ds := receive(t, b, q, 1, 0) // h in flight
	st, err := b.QueueStats(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	want := map[ipc.Priority]int{ipc.High: 0, ipc.Normal: 1, ipc.Low: 2}
	for p, n := range want {
		if st.ByPriority[p] != n {
			t.Fatalf("ByPriority = %v, want %v", st.ByPriority, want)
		}
	}
	if st.Name != q || st.MaxSize != 50 || st.MaxDeliveries != 2 || st.Visibility != time.Minute ||
		st.Ready != 3 || st.InFlight != 1 || st.Dead != 0 || st.Sent != 4 || st.Acked != 0 ||
		st.Oldest.Before(before) || st.Oldest.After(time.Now().Add(time.Second)) || st.Created.IsZero() {
		t.Fatalf("QueueStats = %+v", st)
	}
	ack(t, ds[0])
	peek, err := b.Peek(ctx, q, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(peek) != 2 || string(peek[0].Body) != "n" || string(peek[1].Body) != "l1" {
		t.Fatalf("Peek(2) = %+v", peek)
	}
	// Peek delivers nothing.
	wantBodies(t, "after peek", drain(t, b, q), "n", "l1", "l2")
	st, err = b.QueueStats(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 0 || st.Acked != 4 || !st.Oldest.IsZero() {
		t.Fatalf("QueueStats of an empty queue = %+v", st)
	}
}

func (s *suite) testPurgeDelete(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	q := s.queue(t, b, ipc.QueueConfig{MaxDeliveries: 1})
	send(t, b, q, text("dead")...)
	ds := receive(t, b, q, 1, 0)
	if _, err := ds[0].Nack(ctx, 0, "x"); err != nil {
		t.Fatal(err)
	}
	send(t, b, q, text("1", "2", "3", "4", "5")...)
	receive(t, b, q, 1, 0) // one in flight
	n, err := b.PurgeQueue(ctx, q)
	if err != nil || n != 5 {
		t.Fatalf("PurgeQueue = %d, %v; want 5", n, err)
	}
	st, err := b.QueueStats(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 0 || st.InFlight != 0 || st.Dead != 1 {
		t.Fatalf("after purge: ready %d in flight %d dead %d; want 0 0 1", st.Ready, st.InFlight, st.Dead)
	}
	send(t, b, q, text("after")...)
	wantBodies(t, "after purge", drain(t, b, q), "after")

	if err := b.DeleteQueue(ctx, q); err != nil {
		t.Fatal(err)
	}
	qs, err := b.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range qs {
		if c.Name == q {
			t.Fatal("deleted queue still listed")
		}
	}
	_, err = b.Send(ctx, q, text("x"))
	wantErr(t, "Send to a deleted queue", err, ipc.ErrNotFound)
	// Re-created, it starts empty (no old dead letters either).
	s.queue(t, b, ipc.QueueConfig{Name: q})
	if got := drain(t, b, q); len(got) != 0 {
		t.Fatalf("re-created queue has messages %q", got)
	}
	if dl, err := b.DeadLetters(ctx, q, 0); err != nil || len(dl) != 0 {
		t.Fatalf("re-created queue has dead letters %+v, %v", dl, err)
	}
}

func (s *suite) testConcurrentReceivers(t *testing.T) {
	const n, workers = 200, 4
	b0 := s.backend(t)
	q := s.queue(t, b0, ipc.QueueConfig{})
	var bodies []string
	for i := range n {
		bodies = append(bodies, fmt.Sprint(i))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		b := s.backend(t)
		wg.Go(func() {
			for {
				ds, err := b.Receive(ctxT(t), q, ipc.ReceiveOptions{Max: 3, Wait: 2 * time.Second})
				if err != nil {
					errc <- err
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[string(d.Message().Body)]++
				}
				mu.Unlock()
				if err := b.AckAll(ctxT(t), ds); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	for i := 0; i < n; i += 20 {
		send(t, b0, q, text(bodies[i:i+20]...)...)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for _, body := range bodies {
		if seen[body] != 1 {
			t.Fatalf("message %s received %d times, want once", body, seen[body])
		}
	}
}

// next reads the next message of sub within d; nil when none came.
func next(t *testing.T, sub ipc.Subscription, d time.Duration) *ipc.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxT(t), d)
	defer cancel()
	m, err := sub.Next(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		t.Fatalf("Next: %v", err)
	}
	return m
}

func nextBody(t *testing.T, sub ipc.Subscription) string {
	t.Helper()
	m := next(t, sub, within)
	if m == nil {
		t.Fatal("no message on the subscription")
	}
	return string(m.Body)
}

func subscribe(t *testing.T, b ipc.Backend, ch, durable string) ipc.Subscription {
	t.Helper()
	sub, err := b.Subscribe(ctxT(t), ch, ipc.SubscribeOptions{Durable: durable})
	if err != nil {
		t.Fatalf("Subscribe(%s, %q): %v", ch, durable, err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

func publish(t *testing.T, b ipc.Backend, ch string, bodies ...string) []ipc.Message {
	t.Helper()
	ms, err := b.Publish(ctxT(t), ch, text(bodies...))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(ms) != len(bodies) {
		t.Fatalf("Publish returned %d of %d messages", len(ms), len(bodies))
	}
	return ms
}

func (s *suite) testChannelLive(t *testing.T) {
	b1, b2 := s.backend(t), s.backend(t)
	ch := uniq("c")
	publish(t, b1, ch, "before")
	sub := subscribe(t, b2, ch, "")
	pub := publish(t, b1, ch, "after1", "after2")
	m := next(t, sub, within)
	if m == nil || string(m.Body) != "after1" || m.Channel != ch || m.ID != pub[0].ID || m.Seq != pub[0].Seq {
		t.Fatalf("first live message %+v, want after1 (%+v)", m, pub[0])
	}
	if got := nextBody(t, sub); got != "after2" {
		t.Fatalf("second live message %q", got)
	}
	if m := next(t, sub, 200*time.Millisecond); m != nil {
		t.Fatalf("unexpected message %q", m.Body)
	}
	// A new non-durable subscriber does not see the past.
	sub2 := subscribe(t, b2, ch, "")
	if m := next(t, sub2, 200*time.Millisecond); m != nil {
		t.Fatalf("new live subscriber got an old message %q", m.Body)
	}
}

func (s *suite) testChannelDurable(t *testing.T) {
	b1, b2 := s.backend(t), s.backend(t)
	ch := uniq("c")
	publish(t, b1, ch, "before")
	sub := subscribe(t, b2, ch, "reader")
	publish(t, b1, ch, "1")
	m := next(t, sub, within)
	if m == nil || string(m.Body) != "1" {
		t.Fatalf("durable got %+v, want 1 (not the message from before it existed)", m)
	}
	if err := sub.Ack(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	sub.Close()
	publish(t, b1, ch, "2", "3") // while away
	b3 := s.backend(t)
	sub = subscribe(t, b3, ch, "reader")
	for _, want := range []string{"2", "3"} {
		m := next(t, sub, within)
		if m == nil || string(m.Body) != want {
			t.Fatalf("after reconnect got %+v, want %s", m, want)
		}
		if err := sub.Ack(ctxT(t), m); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, b1, ch, "4")
	if got := nextBody(t, sub); got != "4" {
		t.Fatalf("live after catching up: %q", got)
	}
}

func (s *suite) testChannelUnacked(t *testing.T) {
	b := s.backend(t)
	ch := uniq("c")
	sub := subscribe(t, b, ch, "r")
	publish(t, b, ch, "a", "b", "c")
	m := next(t, sub, within)
	if err := sub.Ack(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	if got := nextBody(t, sub); got != "b" { // read, not acknowledged
		t.Fatalf("got %q, want b", got)
	}
	sub.Close()
	sub = subscribe(t, b, ch, "r")
	for _, want := range []string{"b", "c"} {
		if got := nextBody(t, sub); got != want {
			t.Fatalf("after resubscribing got %q, want %q (unacknowledged messages come again)", got, want)
		}
	}
}

func (s *suite) testChannelFanOut(t *testing.T) {
	b := s.backend(t)
	ch := uniq("c")
	subs := []ipc.Subscription{subscribe(t, b, ch, "one"), subscribe(t, b, ch, "two"), subscribe(t, s.backend(t), ch, "")}
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprint(i))
	}
	publish(t, b, ch, want[:10]...)
	for _, w := range want[10:] {
		publish(t, b, ch, w)
	}
	for i, sub := range subs {
		var got []string
		for range want {
			got = append(got, nextBody(t, sub))
		}
		wantBodies(t, fmt.Sprintf("subscriber %d", i), got, want...)
	}
}

func (s *suite) testChannelCancel(t *testing.T) {
	b := s.backend(t)
	sub := subscribe(t, b, uniq("c"), "")
	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		time.Sleep(200 * time.Millisecond)
		cancel()
	}()
	_, err := sub.Next(ctx)
	wantErr(t, "Next with a cancelled ctx", err, context.Canceled)
}

func (s *suite) testChannelStats(t *testing.T) {
	b := s.backend(t)
	ctx := ctxT(t)
	ch := uniq("c")
	sub := subscribe(t, b, ch, "slow")
	publish(t, b, ch, "1", "2", "3")
	m := next(t, sub, within)
	if err := sub.Ack(ctx, m); err != nil {
		t.Fatal(err)
	}
	cs, err := b.Channels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found *ipc.ChannelStats
	for i := range cs {
		if cs[i].Name == ch {
			found = &cs[i]
		}
	}
	if found == nil {
		t.Fatalf("Channels does not list %s: %+v", ch, cs)
	}
	if found.Published != 3 || found.Stored != 3 || found.Last.IsZero() || len(found.Subscribers) != 1 {
		t.Fatalf("ChannelStats = %+v", *found)
	}
	if sb := found.Subscribers[0]; sb.Name != "slow" || sb.Pending != 2 || sb.Acked != m.Seq || sb.Active.IsZero() {
		t.Fatalf("SubscriberStats = %+v (acked seq %d)", sb, m.Seq)
	}
	if err := b.DeleteSubscriber(ctx, ch, "slow"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteSubscriber again", b.DeleteSubscriber(ctx, ch, "slow"), ipc.ErrNotFound)
}
