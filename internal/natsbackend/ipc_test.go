package natsbackend_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/ipc/ipctest"
	"github.com/netops-dev/netops/internal/natsbackend"
	"github.com/netops-dev/netops/internal/server"
)

// openIPC returns an ipc backend with its own connection (as a separate
// process would have).
func openIPC(tb testing.TB, url string) *natsbackend.IPC {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbackend.OpenIPC(ctx, backend(url), "netops-ipc-test", natsbackend.IPCOptions{})
	if err != nil {
		tb.Fatalf("OpenIPC: %v", err)
	}
	return b
}

func TestIPCConformance(t *testing.T) {
	s := startServer(t, server.Options{})
	ipctest.Run(t, func(t *testing.T) ipc.Backend { return openIPC(t, s.ClientURL()) })
}

// An unreachable server: ipc.ErrUnavailable, naming the URL.
func TestIPCUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := natsbackend.OpenIPC(ctx, backend("nats://127.0.0.1:1"), "netops-ipc-test", natsbackend.IPCOptions{})
	if !errors.Is(err, ipc.ErrUnavailable) || !strings.Contains(err.Error(), "nats://127.0.0.1:1") {
		t.Fatalf("err = %v, want ipc.ErrUnavailable naming the URL", err)
	}
}

// A queue deleted by another process while this one has it cached: Send
// and Receive say it is unknown; re-created, it works again.
func TestIPCQueueDeletedMeanwhile(t *testing.T) {
	s := startServer(t, server.Options{})
	a, b := openIPC(t, s.ClientURL()), openIPC(t, s.ClientURL())
	defer a.Close()
	defer b.Close()
	ctx := t.Context()
	if err := a.CreateQueue(ctx, ipc.QueueConfig{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, "gone", []ipc.Outgoing{{Body: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteQueue(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, "gone", []ipc.Outgoing{{Body: []byte("y")}}); !errors.Is(err, ipc.ErrNotFound) {
		t.Fatalf("Send to a deleted queue: %v", err)
	}
	if _, err := a.Receive(ctx, "gone", ipc.ReceiveOptions{}); !errors.Is(err, ipc.ErrNotFound) {
		t.Fatalf("Receive from a deleted queue: %v", err)
	}
	if err := b.CreateQueue(ctx, ipc.QueueConfig{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, "gone", []ipc.Outgoing{{Body: []byte("z")}}); err != nil {
		t.Fatalf("Send to the re-created queue: %v", err)
	}
	ds, err := a.Receive(ctx, "gone", ipc.ReceiveOptions{Max: 5})
	if err != nil || len(ds) != 1 || string(ds[0].Message().Body) != "z" {
		t.Fatalf("Receive from the re-created queue: %d deliveries, %v", len(ds), err)
	}
	if err := a.AckAll(ctx, ds); err != nil {
		t.Fatal(err)
	}
}

// Senders racing to a full drop-oldest queue: the queue keeps its bound
// and every message is either stored or counted as dropped.
func TestIPCConcurrentDropOldest(t *testing.T) {
	s := startServer(t, server.Options{})
	ctx := t.Context()
	admin := openIPC(t, s.ClientURL())
	defer admin.Close()
	if err := admin.CreateQueue(ctx, ipc.QueueConfig{Name: "bounded", MaxSize: 20}); err != nil {
		t.Fatal(err)
	}
	const senders, each = 4, 50
	var wg sync.WaitGroup
	var dropped atomic.Int64
	for w := range senders {
		b := openIPC(t, s.ClientURL())
		defer b.Close()
		wg.Go(func() {
			for i := range each {
				res, err := b.Send(ctx, "bounded", []ipc.Outgoing{{Body: fmt.Appendf(nil, "%d-%d", w, i)}})
				if err != nil {
					t.Error(err)
					return
				}
				dropped.Add(int64(res.Dropped))
			}
		})
	}
	wg.Wait()
	st, err := admin.QueueStats(ctx, "bounded")
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 20 || st.Sent != senders*each || int64(st.Dropped) != dropped.Load() || st.Dropped != senders*each-20 {
		t.Fatalf("stats: ready %d sent %d dropped %d (senders counted %d)", st.Ready, st.Sent, st.Dropped, dropped.Load())
	}
}

// TestIPCCountersUnderContention: many senders on one queue make the
// compare-and-swap of the queue's counters collide; every send must still
// succeed and be counted exactly once.
func TestIPCCountersUnderContention(t *testing.T) {
	s := startServer(t, server.Options{})
	ctx := t.Context()
	admin := openIPC(t, s.ClientURL())
	defer admin.Close()
	if err := admin.CreateQueue(ctx, ipc.QueueConfig{Name: "busy", MaxSize: 10000}); err != nil {
		t.Fatal(err)
	}
	const senders, each = 8, 25
	var wg sync.WaitGroup
	for w := range senders {
		b := openIPC(t, s.ClientURL())
		defer b.Close()
		wg.Go(func() {
			for i := range each {
				if _, err := b.Send(ctx, "busy", []ipc.Outgoing{{Body: fmt.Appendf(nil, "%d-%d", w, i)}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := admin.QueueStats(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != senders*each || st.Ready != senders*each {
		t.Fatalf("stats: sent %d ready %d, want %d", st.Sent, st.Ready, senders*each)
	}
}
