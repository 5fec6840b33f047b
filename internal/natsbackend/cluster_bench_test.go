package natsbackend_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/lock"
	"github.com/netops-dev/netops/internal/natsbackend"
	"github.com/netops-dev/netops/internal/server"
)

// startCluster starts n in-process nats-servers on loopback that form one
// JetStream cluster through routes, and returns their client URLs.
func startCluster(tb testing.TB, n int) []string {
	tb.Helper()
	routes := make([]string, n)
	for i := range routes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		routes[i] = ln.Addr().String()
		ln.Close()
	}
	urls := make([]string, n)
	for i := range n {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats-route://"+r)
			}
		}
		s := startServer(tb, server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			StoreDir:   filepath.Join(tb.TempDir(), "nats"),
			Cluster:    server.ClusterOptions{Listen: routes[i], Routes: others},
		})
		urls[i] = s.ClientURL()
	}
	return urls
}

// BenchmarkClusterAcquireRelease is BenchmarkAcquireRelease on a 3-node
// cluster with an R3 bucket: each write is committed by a majority of the
// nodes, each synced to disk.
func BenchmarkClusterAcquireRelease(b *testing.B) {
	urls := startCluster(b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var l *natsbackend.Locker
	var err error
	// Opening waits for the cluster's JetStream leader (openBucketRetry).
	l, err = natsbackend.Open(ctx, backend(urls[0]+","+urls[1]+","+urls[2]), "netops-bench", natsbackend.Options{Replicas: 3})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	b.Cleanup(func() { _ = l.Close() })
	r := req("bench", "b", lock.Exclusive, 0)
	bg := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Acquire(bg, r); err != nil {
			b.Fatal(err)
		}
		if err := l.Release(bg, "bench", "b"); err != nil {
			b.Fatal(err)
		}
	}
}
