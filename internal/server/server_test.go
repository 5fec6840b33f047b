package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func startTest(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:-1"
	}
	if o.StoreDir == "" {
		o.StoreDir = filepath.Join(t.TempDir(), "store")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func TestStartJetStream(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := startTest(t, Options{StoreDir: dir, ServerName: "n1"})

	u := s.ClientURL()
	if !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":-1") || strings.HasSuffix(u, ":4222") {
		t.Fatalf("ClientURL = %q, want nats://127.0.0.1:<random port>", u)
	}
	if s.Name() != "n1" {
		t.Errorf("Name = %q", s.Name())
	}
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t", Storage: jetstream.FileStorage, LimitMarkerTTL: time.Second})
	if err != nil {
		t.Fatalf("CreateKeyValue: %v", err)
	}
	if _, err := kv.Create(ctx, "k", []byte("v"), jetstream.KeyTTL(time.Second)); err != nil {
		t.Fatalf("Create with per-key TTL: %v", err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("Get = %v, %v", e, err)
	}

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir mode = %v, want 0700", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Errorf("no jetstream directory in the store: %v", err)
	}
	if !s.NATS().JetStreamEnabled() {
		t.Error("JetStream not enabled")
	}
	if got := s.NATS().JetStreamConfig(); got == nil || !s.opts.SyncAlways {
		t.Errorf("sync always not set (config %+v)", got)
	}
}

func TestStoreDirTightened(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	startTest(t, Options{StoreDir: dir})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir mode = %v, want 0700", fi.Mode().Perm())
	}
}

func TestPersistsAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put := func(write bool) string {
		s, err := Start(ctx, Options{Listen: "127.0.0.1:0", StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Shutdown(); s.WaitForShutdown() }()
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if write {
			if _, err := kv.Put(ctx, "k", []byte("kept")); err != nil {
				t.Fatal(err)
			}
			return ""
		}
		e, err := kv.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		return string(e.Value())
	}
	put(true)
	if got := put(false); got != "kept" {
		t.Fatalf("after restart k = %q", got)
	}
}

func TestListenBusy(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Start(ctx, Options{Listen: l.Addr().String(), StoreDir: t.TempDir()})
	if err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	if !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("error %q does not name the address", err)
	}
}

func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no store", Options{}, "store directory is required"},
		{"bad port", Options{StoreDir: dir, Listen: "127.0.0.1:99999"}, "bad port"},
		{"token and user", Options{StoreDir: dir, Token: "t", User: "u", Password: "p"}, "either a token"},
		{"user without password", Options{StoreDir: dir, User: "u"}, "needs a password"},
		{"cluster without name", Options{StoreDir: dir, Cluster: ClusterOptions{Listen: "127.0.0.1:-1"}}, "server name"},
		{"routes without listen", Options{StoreDir: dir, Cluster: ClusterOptions{Routes: []string{"nats-route://h:6222"}}}, "without a cluster listen"},
		{"cert without key", Options{StoreDir: dir, TLS: TLSOptions{Cert: "c.pem"}}, "certificate and a key"},
		{"missing cert file", Options{StoreDir: dir, TLS: TLSOptions{Cert: filepath.Join(dir, "nope.pem"), Key: filepath.Join(dir, "nope.key")}}, "TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSplitListen(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
	}{
		{"127.0.0.1:4222", "127.0.0.1", 4222},
		{":4333", "127.0.0.1", 4333},
		{"4444", "127.0.0.1", 4444},
		{"0.0.0.0:0", "0.0.0.0", -1},
		{"[::1]:-1", "::1", -1},
		{"localhost", "localhost", 4222},
	} {
		h, p, err := splitListen(tc.in, 4222)
		if err != nil || h != tc.host || p != tc.port {
			t.Errorf("splitListen(%q) = %q, %d, %v; want %q, %d", tc.in, h, p, err, tc.host, tc.port)
		}
	}
}

func TestTokenAuth(t *testing.T) {
	s := startTest(t, Options{Token: "s3cret"})
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("connected without the token")
	}
	nc, err := nats.Connect(s.ClientURL(), nats.Token("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream with token auth: %v", err)
	}
}

// syncBuffer is a goroutine-safe writer for the slog handler.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogger(t *testing.T) {
	var buf syncBuffer
	s := startTest(t, Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	s.Shutdown()
	s.WaitForShutdown()
	if out := buf.String(); !strings.Contains(out, "Server is ready") || !strings.Contains(out, "component=nats-server") {
		t.Errorf("log output lacks the ready line:\n%s", out)
	}
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster formation takes a few seconds")
	}
	// Reserve three route ports so every node can list the others.
	var ports []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().String())
		l.Close()
	}
	var nodes []*Server
	for i := range 3 {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, "nats-route://"+p)
			}
		}
		nodes = append(nodes, startTest(t, Options{
			ServerName: "n" + string(rune('1'+i)),
			Cluster:    ClusterOptions{Listen: ports[i], Routes: routes},
		}))
	}
	if got := nodes[0].ClusterURL(); got != "nats-route://"+ports[0] {
		t.Errorf("ClusterURL = %q, want nats-route://%s", got, ports[0])
	}
	nc, err := nats.Connect(nodes[0].ClientURL() + "," + nodes[1].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The meta leader is elected once the routes are up: retry until then.
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = js.CreateKeyValue(actx, jetstream.KeyValueConfig{Bucket: "r3", Replicas: 3})
		acancel()
		if err == nil {
			break
		}
		t.Logf("create: %v", err)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("R3 bucket: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
