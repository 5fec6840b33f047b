package local_test

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/ipc/local"
	"github.com/netops-dev/netops/internal/store"
)

// The depth counter that enforces the size bound must equal the number of
// live rows after any mix of operations, and the bound must hold.
func TestDepthInvariant(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := local.New(st, dir)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, cfg := range []ipc.QueueConfig{
		{Name: "drop", MaxSize: 20, MaxDeliveries: 2, Visibility: time.Second},
		{Name: "rej", MaxSize: 20, Overflow: ipc.Reject, MaxDeliveries: 2, Visibility: time.Second},
	} {
		if err := b.CreateQueue(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		var held []ipc.Delivery
		for step := range 400 {
			switch op := rng.IntN(7); op {
			case 0, 1:
				var msgs []ipc.Outgoing
				for i := range 1 + rng.IntN(8) {
					msgs = append(msgs, ipc.Outgoing{Priority: ipc.Priorities()[rng.IntN(3)], Body: fmt.Appendf(nil, "%d-%d", step, i)})
				}
				_, _ = b.Send(ctx, cfg.Name, msgs) // ErrFull is expected with reject
			case 2:
				ds, err := b.Receive(ctx, cfg.Name, ipc.ReceiveOptions{Max: 1 + rng.IntN(5)})
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, ds...)
			case 3:
				if len(held) > 0 {
					_ = b.AckAll(ctx, held[:1+rng.IntN(len(held))]) // ErrLost possible
					held = nil
				}
			case 4:
				if len(held) > 0 {
					_, _ = held[0].Nack(ctx, 0, "test")
					held = held[1:]
				}
			case 5:
				if rng.IntN(10) == 0 {
					if _, err := b.Redrive(ctx, cfg.Name, 0); err != nil && cfg.Overflow != ipc.Reject {
						t.Fatal(err)
					}
				}
			case 6:
				if rng.IntN(20) == 0 {
					if _, err := b.PurgeQueue(ctx, cfg.Name); err != nil {
						t.Fatal(err)
					}
				}
			}
			var depth, live int
			if err := st.View(ctx, func(tx *sql.Tx) error {
				if err := tx.QueryRow(`SELECT id, depth FROM ipc_queues WHERE name = ?`, cfg.Name).Scan(new(int64), &depth); err != nil {
					return err
				}
				return tx.QueryRow(`SELECT count(*) FROM ipc_messages m JOIN ipc_queues q ON q.id = m.qid WHERE q.name = ? AND m.dead = 0`, cfg.Name).Scan(&live)
			}); err != nil {
				t.Fatal(err)
			}
			if depth != live {
				t.Fatalf("%s step %d: depth %d, live rows %d", cfg.Name, step, depth, live)
			}
			if live > cfg.MaxSize {
				t.Fatalf("%s step %d: %d live messages, max size %d", cfg.Name, step, live, cfg.MaxSize)
			}
		}
	}
}

// A channel keeps its newest ipc.ChannelRetention messages: a durable
// subscriber away for longer resumes at the oldest one kept.
func TestChannelRetention(t *testing.T) {
	dir := t.TempDir()
	b := openBackend(t, dir)
	ctx := t.Context()
	sub, err := b.Subscribe(ctx, "c", ipc.SubscribeOptions{Durable: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	const extra = 5
	batch := make([]ipc.Outgoing, 0, 1000)
	for i := range ipc.ChannelRetention + extra {
		batch = append(batch, ipc.Outgoing{Body: fmt.Appendf(nil, "%d", i)})
		if len(batch) == cap(batch) || i == ipc.ChannelRetention+extra-1 {
			if _, err := b.Publish(ctx, "c", batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	cs, err := b.Channels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Stored != ipc.ChannelRetention || cs[0].Published != ipc.ChannelRetention+extra ||
		len(cs[0].Subscribers) != 1 || cs[0].Subscribers[0].Pending != ipc.ChannelRetention {
		t.Fatalf("Channels = %+v", cs)
	}
	sub, err = b.Subscribe(ctx, "c", ipc.SubscribeOptions{Durable: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	m, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Body) != fmt.Sprint(extra) {
		t.Fatalf("durable subscriber resumed at %q, want the oldest kept, %d", m.Body, extra)
	}
}
