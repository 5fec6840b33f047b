package natsbackend_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/lock"
	"github.com/netops-dev/netops/internal/lock/locktest"
	"github.com/netops-dev/netops/internal/natsbackend"
	"github.com/netops-dev/netops/internal/server"
)

// startServer starts an in-process nats-server with JetStream on a random
// loopback port, stopped when tb ends.
func startServer(tb testing.TB, o server.Options) *server.Server {
	tb.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:-1"
	}
	if o.StoreDir == "" {
		o.StoreDir = filepath.Join(tb.TempDir(), "nats")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := server.Start(ctx, o)
	if err != nil {
		tb.Fatalf("start nats-server: %v", err)
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func backend(url string) config.Backend {
	return config.Backend{Kind: config.BackendNATS, URL: url}
}

// open returns a Locker with its own connection (as a separate process
// would have), closed when tb ends.
func open(tb testing.TB, url string, o natsbackend.Options) *natsbackend.Locker {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := natsbackend.Open(ctx, backend(url), "netops-test", o)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

func req(name, owner string, mode lock.Mode, wait time.Duration) lock.Request {
	return lock.Request{Name: name, Mode: mode, Holder: lock.Holder{Owner: owner, Host: "h", PID: 1}, Wait: wait}
}

func TestConformance(t *testing.T) {
	s := startServer(t, server.Options{})
	locktest.Run(t, func(t *testing.T) lock.Locker {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := natsbackend.Open(ctx, backend(s.ClientURL()), "netops-conformance", natsbackend.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return l
	})
}

// A holder that stops renewing (its process was killed: here its
// connection just goes away) frees the lock within TTL + 1 s.
func TestCrashFreedWithinTTL(t *testing.T) {
	s := startServer(t, server.Options{})
	holder := open(t, s.ClientURL(), natsbackend.Options{})
	waiter := open(t, s.ClientURL(), natsbackend.Options{})

	r := req("crash", "victim", lock.Exclusive, 0)
	r.TTL = lock.MinTTL
	ctx := t.Context()
	start := time.Now()
	victim, err := holder.Acquire(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	_ = holder.Close() // "SIGKILL": no release, no renewal

	got, err := waiter.Acquire(ctx, req("crash", "next", lock.Exclusive, 10*time.Second))
	if err != nil {
		t.Fatalf("waiter: %v", err)
	}
	elapsed := time.Since(start)
	if elapsed < lock.MinTTL-100*time.Millisecond {
		t.Fatalf("lock freed after %s, before the %s TTL", elapsed, lock.MinTTL)
	}
	if elapsed > lock.MinTTL+time.Second {
		t.Fatalf("lock freed after %s, want within TTL + 1s = %s", elapsed, lock.MinTTL+time.Second)
	}
	if got.Token <= victim.Token {
		t.Fatalf("token %d after %d", got.Token, victim.Token)
	}
	t.Logf("freed %s after the crashed holder's grant (TTL %s)", elapsed, lock.MinTTL)

	// The crashed holder, back, has lost its lease.
	again := open(t, s.ClientURL(), natsbackend.Options{})
	if err := again.Renew(ctx, victim); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Renew after expiry = %v; want ErrLost", err)
	}
}

// A waiter that is killed loses its place within TTL: the next waiter does
// not stay stuck behind it.
func TestCrashedWaiterExpires(t *testing.T) {
	t.Parallel()
	s := startServer(t, server.Options{})
	h := open(t, s.ClientURL(), natsbackend.Options{})
	dead := open(t, s.ClientURL(), natsbackend.Options{})
	ctx := t.Context()
	if _, err := h.Acquire(ctx, req("cw", "holder", lock.Exclusive, 0)); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithCancel(ctx)
	dr := req("cw", "dead", lock.Exclusive, lock.WaitForever)
	dr.TTL = lock.MinTTL
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = dead.Acquire(dctx, dr)
	}()
	waitFor(t, func() bool {
		st, err := h.Status(ctx, "cw")
		return err == nil && len(st) == 1 && len(st[0].Waiters) == 1
	})
	_ = dead.Close() // the waiter's connection dies before it can clean up
	cancel()
	<-done

	// If the dead waiter's ticket survived, it would be granted first.
	next := make(chan error, 1)
	go func() {
		_, err := open(t, s.ClientURL(), natsbackend.Options{}).Acquire(ctx, req("cw", "next", lock.Exclusive, 15*time.Second))
		next <- err
	}()
	if err := h.Release(ctx, "cw", "holder"); err != nil {
		t.Fatal(err)
	}
	if err := <-next; err != nil {
		t.Fatalf("next waiter: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachable(t *testing.T) {
	url := "nats://" + closedPort(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := natsbackend.Connect(ctx, backend(url), "t")
	if !errors.Is(err, lock.ErrUnavailable) {
		t.Fatalf("Connect to a closed port = %v; want ErrUnavailable", err)
	}
	want := "cannot reach NATS at " + url + ": "
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %q; want it to start with %q and say why", err, want)
	}
	// Several dead servers: all are named.
	url2 := "nats://" + closedPort(t)
	_, err = natsbackend.Open(ctx, backend(url+", "+url2), "t", natsbackend.Options{})
	if !errors.Is(err, lock.ErrUnavailable) || !strings.Contains(err.Error(), url+", "+url2) {
		t.Fatalf("Open with two dead servers = %v; want ErrUnavailable naming both", err)
	}
	// A context that ends first.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := natsbackend.Connect(cctx, backend(url), "t"); !errors.Is(err, lock.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect with a cancelled context = %v", err)
	}
}

func TestFailover(t *testing.T) {
	s := startServer(t, server.Options{})
	dead := "nats://" + closedPort(t)
	for _, urls := range []string{dead + "," + s.ClientURL(), s.ClientURL() + " , " + dead} {
		l := open(t, urls, natsbackend.Options{})
		ls, err := l.Acquire(t.Context(), req("fo", "a", lock.Exclusive, 0))
		if err != nil {
			t.Fatalf("%s: %v", urls, err)
		}
		if err := l.Release(t.Context(), ls.Name, ls.Owner); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuth(t *testing.T) {
	s := startServer(t, server.Options{Token: "s3cret"})
	ctx := t.Context()
	cfg := backend(s.ClientURL())
	cfg.Token = "s3cret"
	nc, err := natsbackend.Connect(ctx, cfg, "t")
	if err != nil {
		t.Fatalf("Connect with the token: %v", err)
	}
	nc.Close()
	cfg.Token = "wrong"
	_, err = natsbackend.Connect(ctx, cfg, "t")
	if !errors.Is(err, lock.ErrUnavailable) || !strings.Contains(err.Error(), "refused the credentials") || !strings.Contains(err.Error(), s.ClientURL()) {
		t.Fatalf("Connect with a wrong token = %v", err)
	}
	// Passwords in URLs are not shown.
	_, err = natsbackend.Connect(ctx, backend("nats://u:hunter2@"+strings.TrimPrefix(s.ClientURL(), "nats://")), "t")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error shows the password or no error: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for name, cfg := range map[string]config.Backend{
		"creds":        {URL: "nats://127.0.0.1:1", Creds: missing},
		"ca":           {URL: "nats://127.0.0.1:1", TLS: config.TLS{CA: missing}},
		"cert":         {URL: "nats://127.0.0.1:1", TLS: config.TLS{Cert: missing, Key: missing}},
		"cert w/o key": {URL: "nats://127.0.0.1:1", TLS: config.TLS{Cert: missing}},
		"two methods":  {URL: "nats://127.0.0.1:1", Token: "t", User: "u", Password: "p"},
	} {
		_, err := natsbackend.Connect(t.Context(), cfg, "t")
		if !errors.Is(err, natsbackend.ErrConfig) {
			t.Errorf("%s: err = %v; want ErrConfig", name, err)
		}
	}
}

func TestSetupErrors(t *testing.T) {
	s := startServer(t, server.Options{})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = natsbackend.NewLocker(ctx, nc, natsbackend.Options{Bucket: "bad name"})
	if !errors.Is(err, lock.ErrUnavailable) || !strings.Contains(err.Error(), s.ClientURL()) {
		t.Fatalf("NewLocker with a bad bucket name = %v", err)
	}
	_, err = natsbackend.NewLocker(ctx, nc, natsbackend.Options{Replicas: 9})
	if !errors.Is(err, natsbackend.ErrConfig) {
		t.Fatalf("NewLocker with 9 replicas = %v; want ErrConfig", err)
	}
	// More replicas than servers.
	_, err = natsbackend.NewLocker(ctx, nc, natsbackend.Options{Bucket: "r3", Replicas: 3})
	if !errors.Is(err, lock.ErrUnavailable) || !strings.Contains(err.Error(), "r3") {
		t.Fatalf("NewLocker with 3 replicas on one server = %v", err)
	}
}

func TestJetStreamDisabled(t *testing.T) {
	// A plain NATS server without JetStream, from nats-server directly.
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = natsbackend.Open(ctx, backend(ns.ClientURL()), "t", natsbackend.Options{})
	if !errors.Is(err, natsbackend.ErrUnsupported) || !errors.Is(err, lock.ErrUnavailable) || !strings.Contains(err.Error(), "JetStream is not enabled") {
		t.Fatalf("Open on a server without JetStream = %v", err)
	}
}

// oldServer speaks just enough of the NATS protocol to accept a client
// while announcing an old version: no nats-server 2.10 binary is at hand.
func oldServer(t *testing.T, version string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				port := ln.Addr().(*net.TCPAddr).Port
				fmt.Fprintf(c, "INFO {\"server_id\":\"OLD\",\"server_name\":\"old\",\"version\":%q,\"proto\":1,\"host\":\"127.0.0.1\",\"port\":%d,\"headers\":true,\"max_payload\":1048576}\r\n", version, port)
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "PING") {
						fmt.Fprint(c, "PONG\r\n")
					}
				}
			}()
		}
	}()
	return "nats://" + ln.Addr().String()
}

func TestOldServer(t *testing.T) {
	url := oldServer(t, "2.10.22")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := natsbackend.Open(ctx, backend(url), "t", natsbackend.Options{})
	want := "NATS server 2.10.22 at " + url + " does not support per-key TTL (needs nats-server >= 2.11)"
	if !errors.Is(err, natsbackend.ErrUnsupported) || !errors.Is(err, lock.ErrUnavailable) || err.Error() != want {
		t.Fatalf("Open on nats-server 2.10 = %v; want %q", err, want)
	}
}

func TestBucketWithoutMarkerTTL(t *testing.T) {
	s := startServer(t, server.Options{})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "old_locks"}); err != nil {
		t.Fatal(err)
	}
	l, err := natsbackend.NewLocker(ctx, nc, natsbackend.Options{Bucket: "old_locks"})
	if err != nil {
		t.Fatalf("NewLocker on a bucket without LimitMarkerTTL: %v", err)
	}
	kv, _ := js.KeyValue(ctx, "old_locks")
	st, _ := kv.Status(ctx)
	if st.LimitMarkerTTL() == 0 {
		t.Fatal("LimitMarkerTTL still off")
	}
	r := req("x", "a", lock.Exclusive, 0)
	r.TTL = lock.MinTTL
	if _, err := l.Acquire(ctx, r); err != nil {
		t.Fatal(err)
	}
	// The bucket the locker made has the documented settings.
	open(t, s.ClientURL(), natsbackend.Options{})
	kv, err = js.KeyValue(ctx, natsbackend.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, _ = kv.Status(ctx)
	bs := st.(*jetstream.KeyValueBucketStatus)
	cfg := bs.StreamInfo().Config
	if st.History() != 1 || cfg.Storage != jetstream.FileStorage || !cfg.AllowMsgTTL || st.LimitMarkerTTL() != natsbackend.DefaultMarkerTTL || cfg.Replicas != 1 {
		t.Fatalf("bucket config %+v", cfg)
	}
}

// Lock names with dots map to one key token: "a", "a.b", "a..b" and "a."
// are different locks.
func TestNamesWithDots(t *testing.T) {
	s := startServer(t, server.Options{})
	l := open(t, s.ClientURL(), natsbackend.Options{})
	ctx := t.Context()
	names := []string{"a", "a.b", "a..b", "a.", "a.b.c", "a=b"[:1] + "-b"}
	for _, n := range names {
		if _, err := l.Acquire(ctx, req(n, "o", lock.Exclusive, 0)); err != nil {
			t.Fatalf("Acquire(%q): %v", n, err)
		}
	}
	all, err := l.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range all {
		got = append(got, st.Name)
		if len(st.Holders) != 1 {
			t.Errorf("%s: %d holders", st.Name, len(st.Holders))
		}
	}
	if len(got) != len(names) {
		t.Fatalf("Status(\"\") names %q, want %q", got, names)
	}
	for _, n := range names {
		st, err := l.Status(ctx, n)
		if err != nil || len(st) != 1 || st[0].Name != n {
			t.Fatalf("Status(%q) = %+v, %v", n, st, err)
		}
	}
}

// Many clients, each on its own connection, take turns: no two exclusive
// holders overlap, tokens increase, the counter is exact.
func TestMutualExclusion(t *testing.T) {
	t.Parallel()
	s := startServer(t, server.Options{})
	const workers, rounds = 8, 15
	var (
		inside    atomic.Int32
		counter   int
		lastToken uint64
		mu        sync.Mutex
		wg        sync.WaitGroup
		errs      = make(chan error, workers)
	)
	for w := range workers {
		l := open(t, s.ClientURL(), natsbackend.Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("w%d", w)
			for range rounds {
				ls, err := l.Acquire(t.Context(), req("mx", owner, lock.Exclusive, lock.WaitForever))
				if err != nil {
					errs <- err
					return
				}
				if n := inside.Add(1); n != 1 {
					errs <- fmt.Errorf("%d holders at once", n)
				}
				mu.Lock()
				if ls.Token <= lastToken {
					errs <- fmt.Errorf("token %d after %d", ls.Token, lastToken)
				}
				lastToken = ls.Token
				c := counter
				mu.Unlock()
				time.Sleep(time.Millisecond)
				mu.Lock()
				counter = c + 1
				mu.Unlock()
				inside.Add(-1)
				if err := l.Release(t.Context(), "mx", owner); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if counter != workers*rounds {
		t.Fatalf("counter %d, want %d", counter, workers*rounds)
	}
}

// Tokens keep increasing across a server restart on the same store.
func TestTokensAcrossServerRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	ctx := t.Context()
	s1, err := server.Start(ctx, server.Options{Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l := open(t, s1.ClientURL(), natsbackend.Options{})
	var last uint64
	for i := range 3 {
		ls, err := l.Acquire(ctx, req("restart", fmt.Sprint(i), lock.Exclusive, 0))
		if err != nil {
			t.Fatal(err)
		}
		last = ls.Token
		if err := l.Release(ctx, "restart", ls.Owner); err != nil {
			t.Fatal(err)
		}
	}
	s1.Shutdown()
	s1.WaitForShutdown()
	s2 := startServer(t, server.Options{StoreDir: dir})
	l2 := open(t, s2.ClientURL(), natsbackend.Options{})
	ls, err := l2.Acquire(ctx, req("restart", "after", lock.Exclusive, 0))
	if err != nil {
		t.Fatal(err)
	}
	if ls.Token <= last {
		t.Fatalf("token %d after restart, last before %d", ls.Token, last)
	}
}

// With the server gone, Renew says "unavailable", not "lost": the lease may
// still be valid, and `lock run` keeps trying until the TTL runs out.
func TestRenewUnavailable(t *testing.T) {
	t.Parallel()
	s := startServer(t, server.Options{})
	l := open(t, s.ClientURL(), natsbackend.Options{})
	ls, err := l.Acquire(t.Context(), req("down", "a", lock.Exclusive, 0))
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	err = l.Renew(ctx, ls)
	if !errors.Is(err, lock.ErrUnavailable) || errors.Is(err, lock.ErrLost) {
		t.Fatalf("Renew with the server down = %v; want ErrUnavailable, not ErrLost", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err = l.Status(ctx, "down"); !errors.Is(err, lock.ErrUnavailable) || !strings.Contains(err.Error(), s.ClientURL()) {
		t.Fatalf("Status with the server down = %v; want ErrUnavailable naming %s", err, s.ClientURL())
	}
	ctx, cancel = context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err = l.Acquire(ctx, req("down2", "a", lock.Exclusive, 0)); !errors.Is(err, lock.ErrUnavailable) {
		t.Fatalf("Acquire with the server down = %v; want ErrUnavailable", err)
	}
}

// Cleanup removes entries the server keeps (unreadable ones, or tickets
// without a TTL) and waiting tickets of dead processes on this host.
func TestCleanup(t *testing.T) {
	s := startServer(t, server.Options{})
	l := open(t, s.ClientURL(), natsbackend.Options{})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	kv, err := js.KeyValue(ctx, natsbackend.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	// An unreadable entry blocks the lock like an exclusive holder.
	if _, err := kv.Put(ctx, "junk.xyz", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, req("junk", "a", lock.Shared, 0)); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Acquire behind an unreadable entry = %v; want ErrTimeout", err)
	}
	st, err := l.Status(ctx, "junk")
	if err != nil || len(st) != 1 || len(st[0].Holders) != 1 || st[0].Holders[0].Owner != "?" {
		t.Fatalf("Status with an unreadable entry = %+v, %v", st, err)
	}

	// A waiting ticket of a process of this host that is gone.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	host, _ := os.Hostname()
	val, _ := json.Marshal(map[string]any{
		"v": 1, "name": "dead", "owner": "ghost", "host": host, "pid": cmd.Process.Pid,
		"mode": "exclusive", "queued": time.Now(), "ttl_ms": 30000, "expires": time.Now().Add(30 * time.Second),
	})
	if _, err := kv.Create(ctx, "dead.ghost", val, jetstream.KeyTTL(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	live, err := l.Acquire(ctx, req("alive", "me", lock.Exclusive, 0))
	if err != nil {
		t.Fatal(err)
	}

	// A negative olderThan makes the fresh unreadable entry count as
	// expired, not the others (30s TTL).
	cl, err := l.Cleanup(ctx, -10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.ExpiredLeases) != 1 || cl.ExpiredLeases[0].Owner != "?" || cl.ExpiredLeases[0].Lock != "junk" {
		t.Errorf("expired leases removed: %+v", cl.ExpiredLeases)
	}
	if len(cl.DeadWaiters) != 1 || cl.DeadWaiters[0].Owner != "ghost" || cl.DeadWaiters[0].Lock != "dead" {
		t.Errorf("dead waiters removed: %+v", cl.DeadWaiters)
	}
	if _, err := l.Acquire(ctx, req("junk", "a", lock.Shared, 0)); err != nil {
		t.Fatalf("Acquire after cleanup: %v", err)
	}
	if err := l.Renew(ctx, live); err != nil {
		t.Fatalf("a live lease was cleaned up: %v", err)
	}
}

// Two Lockers of the same owner waiting at once share one ticket; an owner
// cannot hold a lock in both modes.
func TestSameOwner(t *testing.T) {
	s := startServer(t, server.Options{})
	l1 := open(t, s.ClientURL(), natsbackend.Options{})
	l2 := open(t, s.ClientURL(), natsbackend.Options{})
	ctx := t.Context()
	if _, err := l1.Acquire(ctx, req("so", "h", lock.Exclusive, 0)); err != nil {
		t.Fatal(err)
	}
	res := make(chan *lock.Lease, 2)
	for _, l := range []*natsbackend.Locker{l1, l2} {
		go func() {
			ls, err := l.Acquire(ctx, req("so", "w", lock.Exclusive, 10*time.Second))
			if err != nil {
				t.Error(err)
			}
			res <- ls
		}()
	}
	waitFor(t, func() bool {
		st, err := l1.Status(ctx, "so")
		return err == nil && len(st) == 1 && len(st[0].Waiters) == 1
	})
	if err := l1.Release(ctx, "so", "h"); err != nil {
		t.Fatal(err)
	}
	a, b := <-res, <-res
	if a == nil || b == nil || a.Token != b.Token {
		t.Fatalf("same-owner grants %+v and %+v; want one ticket", a, b)
	}
	if _, err := l2.Acquire(ctx, req("so", "w", lock.Shared, 0)); !errors.Is(err, lock.ErrInvalid) {
		t.Fatalf("shared Acquire by the exclusive holder = %v; want ErrInvalid", err)
	}
}

// BenchmarkAcquireRelease is one uncontended acquire + release on an
// in-process server (3 writes, each synced to disk).
func BenchmarkAcquireRelease(b *testing.B) {
	s := startServer(b, server.Options{})
	l := open(b, s.ClientURL(), natsbackend.Options{})
	ctx := context.Background()
	r := req("bench", "b", lock.Exclusive, 0)
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Acquire(ctx, r); err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx, "bench", "b"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcquireReleaseNewOwner uses a new owner each time, as separate
// `lock run` processes do: every release leaves a purge marker for 1s, and
// the reads of the lock's keys grow with them at high rates.
func BenchmarkAcquireReleaseNewOwner(b *testing.B) {
	s := startServer(b, server.Options{})
	l := open(b, s.ClientURL(), natsbackend.Options{})
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		r := req("bench", fmt.Sprint("b", i), lock.Exclusive, 0)
		if _, err := l.Acquire(ctx, r); err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx, "bench", r.Owner); err != nil {
			b.Fatal(err)
		}
	}
}

// writeTLSFiles writes a CA and a server certificate for 127.0.0.1 signed
// by it (PEM files in dir).
func writeTLSFiles(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "netops test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

func TestTLS(t *testing.T) {
	ca, cert, key := writeTLSFiles(t, t.TempDir())
	s := startServer(t, server.Options{TLS: server.TLSOptions{Cert: cert, Key: key}})
	u := s.ClientURL()
	if !strings.HasPrefix(u, "tls://") {
		t.Fatalf("ClientURL = %q, want tls://", u)
	}
	cfg := backend(u)
	cfg.TLS.CA = ca
	l, err := natsbackend.Open(t.Context(), cfg, "t", natsbackend.Options{})
	if err != nil {
		t.Fatalf("Open over TLS with the CA: %v", err)
	}
	defer l.Close()
	if _, err := l.Acquire(t.Context(), req("tls", "a", lock.Exclusive, 0)); err != nil {
		t.Fatal(err)
	}
	// Without the CA the server certificate is not trusted.
	_, err = natsbackend.Connect(t.Context(), backend(u), "t")
	if !errors.Is(err, lock.ErrUnavailable) || !strings.Contains(err.Error(), u) {
		t.Fatalf("Connect without the CA = %v; want ErrUnavailable naming %s", err, u)
	}
}

// On a 3-node cluster with a 3-replica bucket, locks keep working when a
// node goes away, and clients fail over to the others.
func TestCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("cluster formation takes a few seconds")
	}
	var routes []string
	for range 3 {
		routes = append(routes, closedPort(t))
	}
	var nodes []*server.Server
	var urls []string
	for i := range 3 {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats-route://"+r)
			}
		}
		n := startServer(t, server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Cluster:    server.ClusterOptions{Listen: routes[i], Routes: others},
		})
		nodes = append(nodes, n)
		urls = append(urls, n.ClientURL())
	}
	all := strings.Join(urls, ",")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The first Open waits for the JetStream meta leader.
	var l1 *natsbackend.Locker
	for {
		octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
		l, err := natsbackend.Open(octx, backend(all), "t", natsbackend.Options{Replicas: 3})
		ocancel()
		if err == nil {
			l1 = l
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Open on the cluster: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() { _ = l1.Close() })
	l2 := open(t, all, natsbackend.Options{Replicas: 3})

	a, err := l1.Acquire(ctx, req("c", "a", lock.Exclusive, 0))
	if err != nil {
		t.Fatal(err)
	}
	bch := make(chan *lock.Lease, 1)
	go func() {
		b, err := l2.Acquire(ctx, req("c", "b", lock.Exclusive, lock.WaitForever))
		if err != nil {
			t.Error(err)
		}
		bch <- b
	}()
	waitFor(t, func() bool {
		st, err := l1.Status(ctx, "c")
		return err == nil && len(st) == 1 && len(st[0].Waiters) == 1
	})
	// A node goes away; the lock state survives on the other two.
	nodes[2].Shutdown()
	nodes[2].WaitForShutdown()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		err := l1.Renew(rctx, a)
		rcancel()
		if err == nil {
			break
		}
		if errors.Is(err, lock.ErrLost) || ctx.Err() != nil {
			t.Fatalf("Renew after losing a node: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		err := l1.Release(rctx, "c", "a")
		rcancel()
		if err == nil {
			break
		}
		if errors.Is(err, lock.ErrNotHeld) || ctx.Err() != nil {
			t.Fatalf("Release after losing a node: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case b := <-bch:
		if b == nil || b.Token <= a.Token {
			t.Fatalf("b got %+v after a's token %d", b, a.Token)
		}
	case <-ctx.Done():
		t.Fatal("the waiter was not granted the lock")
	}
}
