package natsbackend_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/natsbackend"
	"github.com/netops-dev/netops/internal/server"
)

// BenchmarkIPCSendReceive sends b.N messages in batches of 1000 (as `netops
// ipc send --lines` does) and receives and acknowledges them in batches.
func BenchmarkIPCSendReceive(b *testing.B) {
	s := startServer(b, server.Options{})
	be := openIPC(b, s.ClientURL())
	defer be.Close()
	benchSendReceive(b, be)
}

// BenchmarkClusterIPCSendReceive is BenchmarkIPCSendReceive on a 3-node
// cluster with R3 streams (bench/fleet.sh prints the ratio).
func BenchmarkClusterIPCSendReceive(b *testing.B) {
	urls := startCluster(b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	be, err := natsbackend.OpenIPC(ctx, backend(urls[0]+","+urls[1]+","+urls[2]), "netops-bench", natsbackend.IPCOptions{Replicas: 3})
	if err != nil {
		b.Fatalf("OpenIPC: %v", err)
	}
	defer be.Close()
	benchSendReceive(b, be)
}

func benchSendReceive(b *testing.B, be ipc.Backend) {
	ctx := b.Context()
	if err := be.CreateQueue(ctx, ipc.QueueConfig{Name: "bench", MaxSize: b.N + 1}); err != nil {
		b.Fatal(err)
	}
	batch := make([]ipc.Outgoing, 0, 1000)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		batch = append(batch, ipc.Outgoing{Body: fmt.Appendf(nil, "message %d", i)})
		if len(batch) == cap(batch) || i == b.N-1 {
			if _, err := be.Send(ctx, "bench", batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	sent := time.Since(start)
	start = time.Now()
	for got := 0; got < b.N; {
		ds, err := be.Receive(ctx, "bench", ipc.ReceiveOptions{Max: 1000})
		if err != nil || len(ds) == 0 {
			b.Fatalf("receive after %d: %v", got, err)
		}
		if err := be.AckAll(ctx, ds); err != nil {
			b.Fatal(err)
		}
		got += len(ds)
	}
	b.ReportMetric(float64(b.N)/sent.Seconds(), "sent/s")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "received/s")
}

// BenchmarkRawPublish is the anchor: a plain JetStream async publish loop
// into a work-queue stream on the same kind of server.
func BenchmarkRawPublish(b *testing.B) {
	s := startServer(b, server.Options{})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "raw", Subjects: []string{"raw.*"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := js.PublishAsync("raw.normal", fmt.Appendf(nil, "message %d", i), jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sent/s")
}
