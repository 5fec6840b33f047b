package probe

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/server"
)

func TestNATSProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), ServerName: "probe-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })

	// A server without JetStream: netops cannot use it.
	plain, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go plain.Start()
	if !plain.ReadyForConnections(10 * time.Second) {
		t.Fatal("plain nats-server not ready")
	}
	t.Cleanup(plain.Shutdown)

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name    string
		address string
		rule    config.Rule
		status  Status
		reason  string
		message string
	}{
		{"jetstream", srv.ClientURL(), config.Rule{}, OK, "", "probe-test (nats-server "},
		{"too few servers", srv.ClientURL(), config.Rule{MinAlive: 3}, Warning, ReasonThreshold, "1 servers < min_alive 3"},
		{"no jetstream", plain.ClientURL(), config.Rule{}, Critical, ReasonMismatch, "JetStream is not enabled"},
		{"refused", "nats://" + closed, config.Rule{}, Critical, ReasonRefused, "cannot reach NATS at nats://" + closed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := NATS(ctx, Target{Name: "n", Type: config.TargetService, Address: tc.address}, tc.rule)
			if res.Status != tc.status || res.Reason != tc.reason || !strings.Contains(res.Message, tc.message) {
				t.Fatalf("got %s/%s %q, want %s/%s containing %q", res.Status, res.Reason, res.Message, tc.status, tc.reason, tc.message)
			}
			if tc.status != Critical || tc.reason == ReasonMismatch {
				if _, ok := res.Metric(MetricRTT); !ok {
					t.Errorf("no rtt metric: %+v", res.Metrics)
				}
			}
		})
	}
}
