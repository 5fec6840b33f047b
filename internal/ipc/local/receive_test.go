package local_test

import (
	"bytes"
	"fmt"
	"maps"
	"strconv"
	"testing"

	"github.com/netops-dev/netops/internal/ipc"
)

// One Receive of more messages than fit one of its internal arrays and
// body buffers hands out every message whole, in delivery order, with
// bodies that do not share room (appending to one leaves the next intact).
func TestReceiveLargeBatch(t *testing.T) {
	b := openBackend(t, t.TempDir())
	ctx := t.Context()
	if err := b.CreateQueue(ctx, ipc.QueueConfig{Name: "big", MaxSize: 10000}); err != nil {
		t.Fatal(err)
	}
	const n = 2500
	want := map[string]ipc.Outgoing{} // by body
	var msgs []ipc.Outgoing
	for i := range n {
		m := ipc.Outgoing{Priority: ipc.Priorities()[i%3], Sender: fmt.Sprintf("s%d", i%4), Body: fmt.Appendf(nil, "m%d", i)}
		switch i % 7 {
		case 1:
			m.Body = append(m.Body, bytes.Repeat([]byte{'x'}, 40<<10)...) // several body buffers
		case 2:
			m.Headers = map[string]string{"k": strconv.Itoa(i)}
		}
		want[string(m.Body)] = m
		msgs = append(msgs, m)
	}
	for i := 0; i < n; i += 1000 {
		if _, err := b.Send(ctx, "big", msgs[i:min(i+1000, n)]); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := b.Receive(ctx, "big", ipc.ReceiveOptions{Max: n + 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != n {
		t.Fatalf("received %d of %d messages", len(ds), n)
	}
	bodies := make([][]byte, n)
	for i, d := range ds {
		m := d.Message()
		bodies[i] = bytes.Clone(m.Body)
		w, ok := want[string(m.Body)]
		if !ok {
			t.Fatalf("message %d: unexpected body %.40q", i, m.Body)
		}
		if m.Sender != w.Sender || m.Priority != w.Priority || !maps.Equal(m.Headers, w.Headers) || m.Deliveries != 1 || m.Queue != "big" {
			t.Fatalf("message %d: got sender %q priority %s headers %v deliveries %d queue %q, want %q %s %v 1 big",
				i, m.Sender, m.Priority, m.Headers, m.Deliveries, m.Queue, w.Sender, w.Priority, w.Headers)
		}
		if m.ID != strconv.FormatUint(m.Seq, 10) {
			t.Fatalf("message %d: ID %q, Seq %d", i, m.ID, m.Seq)
		}
		if i > 0 {
			p := ds[i-1].Message()
			if p.Priority.Rank() < m.Priority.Rank() || (p.Priority == m.Priority && p.Seq >= m.Seq) {
				t.Fatalf("message %d (%s, %d) after (%s, %d): not in delivery order", i, m.Priority, m.Seq, p.Priority, p.Seq)
			}
		}
	}
	for _, d := range ds {
		m := d.Message()
		m.Body = append(m.Body, "clobber"...)
	}
	for i, d := range ds {
		if got := d.Message().Body; !bytes.Equal(got[:len(got)-len("clobber")], bodies[i]) {
			t.Fatalf("message %d: body changed by an append to another", i)
		}
	}
	if err := b.AckAll(ctx, ds); err != nil {
		t.Fatal(err)
	}
	st, err := b.QueueStats(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 0 || st.InFlight != 0 || st.Acked != n {
		t.Fatalf("after ack: ready %d, in flight %d, acked %d; want 0, 0, %d", st.Ready, st.InFlight, st.Acked, n)
	}
}
