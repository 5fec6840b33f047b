package local_test

import (
	"fmt"
	"testing"

	"github.com/netops-dev/netops/internal/ipc"
)

// BenchmarkSendReceive measures one message through a queue, sent and
// received in batches of 1000 and 500 as `ipc send --lines` and `ipc recv`
// do.
func BenchmarkSendReceive(b *testing.B) {
	be := openBackend(b, b.TempDir())
	ctx := b.Context()
	if err := be.CreateQueue(ctx, ipc.QueueConfig{Name: "bench", MaxSize: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	batch := make([]ipc.Outgoing, 1000)
	for i := range batch {
		batch[i] = ipc.Outgoing{Sender: "bench", Body: fmt.Appendf(nil, "message %d from the ipc benchmark", i)}
	}
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(batch) {
		if _, err := be.Send(ctx, "bench", batch[:min(len(batch), b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	for got := 0; got < b.N; {
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

// BenchmarkReceiveOnly measures Receive+AckAll alone (the queue is filled
// before the timer starts).
func BenchmarkReceiveOnly(b *testing.B) {
	be := openBackend(b, b.TempDir())
	ctx := b.Context()
	if err := be.CreateQueue(ctx, ipc.QueueConfig{Name: "bench", MaxSize: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	batch := make([]ipc.Outgoing, 1000)
	for i := range batch {
		batch[i] = ipc.Outgoing{Sender: "bench", Body: fmt.Appendf(nil, "message %d from the ipc benchmark", i)}
	}
	for sent := 0; sent < b.N; sent += len(batch) {
		if _, err := be.Send(ctx, "bench", batch[:min(len(batch), b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for got := 0; got < b.N; {
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

// BenchmarkSendOnly measures Send in batches of 1000, as `ipc send --lines`.
func BenchmarkSendOnly(b *testing.B) {
	be := openBackend(b, b.TempDir())
	ctx := b.Context()
	if err := be.CreateQueue(ctx, ipc.QueueConfig{Name: "bench", MaxSize: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	batch := make([]ipc.Outgoing, 1000)
	for i := range batch {
		batch[i] = ipc.Outgoing{Sender: "bench", Body: fmt.Appendf(nil, "message %d from the ipc benchmark", i)}
	}
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(batch) {
		if _, err := be.Send(ctx, "bench", batch[:min(len(batch), b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAckAndReceive measures the receive loop of `ipc recv`: batches
// of 1000, each acknowledged in the transaction that takes the next (the
// queue is filled before the timer starts).
func BenchmarkAckAndReceive(b *testing.B) {
	be := openBackend(b, b.TempDir())
	ctx := b.Context()
	if err := be.CreateQueue(ctx, ipc.QueueConfig{Name: "bench", MaxSize: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	batch := make([]ipc.Outgoing, 1000)
	for i := range batch {
		batch[i] = ipc.Outgoing{Sender: "bench", Body: fmt.Appendf(nil, "message %d from the ipc benchmark", i)}
	}
	for sent := 0; sent < b.N; sent += len(batch) {
		if _, err := be.Send(ctx, "bench", batch[:min(len(batch), b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
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
