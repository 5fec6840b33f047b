// Command natspub is the anchor of the NATS half of bench/ipc.sh: the raw
// nats.go JetStream loops that `netops ipc send --lines` and `netops ipc
// recv` are compared with, against the same server in the same run.
//
//	natspub -url nats://127.0.0.1:4222 -n 100000 publish   # async publish loop
//	natspub -url nats://127.0.0.1:4222 -n 100000 consume   # pull fetch + ack loop
//
// publish creates (or resets) the stream "natspub" (work queue, file
// storage, like a netops queue) and publishes n messages "message N" with
// PublishAsync, waiting for every acknowledgement; consume then reads them
// back with Fetch batches and acknowledges each with AckSync semantics
// batched like netops (acks sent, then all confirmations awaited). Each
// prints one line: "<mode> <n> messages in <seconds> s: <rate> msg/s".
// It talks to the given URL only (loopback in the bench).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	url := flag.String("url", "nats://127.0.0.1:4222", "NATS server URL")
	n := flag.Int("n", 100000, "messages")
	batch := flag.Int("batch", 1000, "consume: messages per fetch")
	flag.Parse()
	if flag.NArg() != 1 || (flag.Arg(0) != "publish" && flag.Arg(0) != "consume") {
		fmt.Fprintln(os.Stderr, "usage: natspub [-url URL] [-n N] publish|consume")
		os.Exit(64)
	}
	if err := run(flag.Arg(0), *url, *n, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "natspub:", err)
		os.Exit(1)
	}
}

func run(mode, url string, n, batch int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	const stream, subject = "natspub", "natspub.normal"
	start := time.Now()
	switch mode {
	case "publish":
		_ = js.DeleteStream(ctx, stream)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: stream, Subjects: []string{"natspub.*"}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, MaxMsgs: int64(n), Discard: jetstream.DiscardNew,
		}); err != nil {
			return err
		}
		start = time.Now()
		for i := range n {
			if _, err := js.PublishAsync(subject, []byte("message "+strconv.Itoa(i)), jetstream.WithStallWait(time.Minute)); err != nil {
				return err
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			return ctx.Err()
		}
		si, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		if got := si.CachedInfo().State.Msgs; got != uint64(n) {
			return fmt.Errorf("stream has %d messages, want %d", got, n)
		}
	case "consume":
		c, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable: "natspub", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: subject, MaxAckPending: -1,
		})
		if err != nil {
			return err
		}
		start = time.Now()
		got := 0
		for got < n {
			b, err := c.Fetch(min(batch, n-got), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return err
			}
			var msgs []jetstream.Msg
			for m := range b.Messages() {
				msgs = append(msgs, m)
			}
			if err := b.Error(); err != nil && len(msgs) == 0 {
				return err
			}
			if len(msgs) == 0 {
				return fmt.Errorf("no message after %d of %d", got, n)
			}
			var wg sync.WaitGroup
			errs := make(chan error, len(msgs))
			sem := make(chan struct{}, 256)
			for _, m := range msgs {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if err := m.DoubleAck(ctx); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				return err
			}
			got += len(msgs)
		}
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("%s %d messages in %.3f s: %.0f msg/s\n", mode, n, secs, float64(n)/secs)
	return nil
}
