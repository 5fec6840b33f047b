package local_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/ipc/local"
)

// benchQueue opens a backend with an unbounded queue "bench" and returns it
// with its context.
func benchQueue(b *testing.B) (*local.Backend, context.Context) {
	be := openBackend(b, b.TempDir())
	ctx := b.Context()
	if err := be.CreateQueue(ctx, ipc.QueueConfig{Name: "bench", MaxSize: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	return be, ctx
}

// sendN sends n messages in batches of 1000, as `ipc send --lines` does.
func sendN(b *testing.B, be *local.Backend, ctx context.Context, n int) {
	batch := make([]ipc.Outgoing, 1000)
	for i := range batch {
		batch[i] = ipc.Outgoing{Sender: "bench", Body: fmt.Appendf(nil, "message %d from the ipc benchmark", i)}
	}
	for sent := 0; sent < n; sent += len(batch) {
		if _, err := be.Send(ctx, "bench", batch[:min(len(batch), n-sent)]); err != nil {
			b.Fatal(err)
		}
	}
}

// receiveN receives and acknowledges n messages in batches of 500
// (Receive, then AckAll).
func receiveN(b *testing.B, be *local.Backend, ctx context.Context, n int) {
	for got := 0; got < n; {
		ds, err := be.Receive(ctx, "bench", ipc.ReceiveOptions{Max: 500})
		if err != nil || len(ds) == 0 {
			b.Fatalf("Receive: %d, %v", len(ds), err)
		}
		if err := be.AckAll(ctx, ds); err != nil {
			b.Fatal(err)
		}
		got += len(ds)
	}
}

// BenchmarkSendReceive measures one message through a queue, sent and
// received in batches of 1000 and 500.
func BenchmarkSendReceive(b *testing.B) {
	be, ctx := benchQueue(b)
	b.ResetTimer()
	sendN(b, be, ctx, b.N)
	receiveN(b, be, ctx, b.N)
}

// BenchmarkReceiveOnly measures Receive+AckAll alone (the queue is filled
// before the timer starts).
func BenchmarkReceiveOnly(b *testing.B) {
	be, ctx := benchQueue(b)
	sendN(b, be, ctx, b.N)
	b.ResetTimer()
	receiveN(b, be, ctx, b.N)
}

// BenchmarkSendOnly measures Send in batches of 1000, as `ipc send --lines`.
func BenchmarkSendOnly(b *testing.B) {
	be, ctx := benchQueue(b)
	b.ResetTimer()
	sendN(b, be, ctx, b.N)
}

// BenchmarkAckAndReceive measures the receive loop of `ipc recv`: batches
// of 1000, each acknowledged in the transaction that takes the next (the
// queue is filled before the timer starts).
func BenchmarkAckAndReceive(b *testing.B) {
	be, ctx := benchQueue(b)
	sendN(b, be, ctx, b.N)
	b.ResetTimer()
	var prev []ipc.Delivery
	for got := 0; got < b.N; {
		ds, err := ipc.AckAndReceive(ctx, be, "bench", prev, ipc.ReceiveOptions{Max: 1000})
		if err != nil || len(ds) == 0 {
			b.Fatalf("AckAndReceive: %d, %v", len(ds), err)
		}
		prev = ds
		got += len(ds)
	}
	if err := be.AckAll(ctx, prev); err != nil {
		b.Fatal(err)
	}
}
