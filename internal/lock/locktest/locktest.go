// Package locktest is the conformance suite every lock backend runs, so that
// "exclusive", "shared", "FIFO", "fencing token" and "lease" mean the same
// thing on every backend:
//
//	func TestConformance(t *testing.T) {
//		locktest.Run(t, func(t *testing.T) lock.Locker { ... })
//	}
package locktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/lock"
)

// within bounds every wait of the suite for something that should happen
// (a grant, a waiter showing in the status): generous, so that a slow CI
// machine does not fail, yet a lost wake-up still fails the test.
const within = 15 * time.Second

// expirySkew is how much earlier than Lease.Expires a backend may free an
// expired lease (server and client clocks differ a little).
const expirySkew = 250 * time.Millisecond

// Run runs the conformance suite, one subtest per behaviour.
//
// newLocker returns a Locker on the backend under test. Within one subtest
// (one t) it may be called more than once, and every Locker it returns for
// that t must share the same lock state, as separate processes (or hosts)
// using the same state directory or server would; Lockers are also used
// after another one for the same t was closed, to check that state (fencing
// tokens) survives a restart. Different subtests may share state or not: the
// suite uses lock names unique to each subtest. Run closes each Locker it
// gets exactly once, before the cleanups newLocker registered with t run.
//
// Some requests set Session; a backend without per-process liveness may
// ignore it. Beyond the Locker interface documentation, the suite checks
// that:
//   - Acquire, Release and Status reject invalid names with lock.ErrInvalid;
//   - an Acquire ended by ctx returns an error matching ctx.Err();
//   - Renew updates l.Expires;
//   - Status of a lock nobody holds or waits for returns no Status or one
//     with no holders and no waiters; Status("") includes every lock that
//     has holders or waiters; holders come in token order and waiters in
//     queue order with Position 1, 2, ...
//
// The whole suite takes about 5 s (one test waits for a MinTTL lease to
// expire).
func Run(t *testing.T, newLocker func(t *testing.T) lock.Locker) {
	s := &suite{newLocker: newLocker}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"InvalidRequests", s.testInvalidRequests},
		{"ExclusiveExcludes", s.testExclusiveExcludes},
		{"IndependentNames", s.testIndependentNames},
		{"SharedHoldersTogether", s.testSharedHoldersTogether},
		{"ExclusiveWaitsForShared", s.testExclusiveWaitsForShared},
		{"NoWriterStarvation", s.testNoWriterStarvation},
		{"Semaphore", s.testSemaphore},
		{"FIFOOrder", s.testFIFOOrder},
		{"NoWaitTimeout", s.testNoWaitTimeout},
		{"WaitTimeoutLeavesNoTicket", s.testWaitTimeoutLeavesNoTicket},
		{"CancelLeavesNoTicket", s.testCancelLeavesNoTicket},
		{"FencingTokens", s.testFencingTokens},
		{"FencingTokensAcrossReopen", s.testFencingTokensAcrossReopen},
		{"Reentrant", s.testReentrant},
		{"ReleaseNotHeld", s.testReleaseNotHeld},
		{"Renew", s.testRenew},
		{"Status", s.testStatus},
		{"LeaseExpiry", s.testLeaseExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	newLocker func(t *testing.T) lock.Locker
}

// open returns a Locker closed when t ends.
func (s *suite) open(t *testing.T) lock.Locker {
	l, _ := s.openClose(t)
	return l
}

// openClose returns a Locker and a function closing it (once; also called
// when t ends).
func (s *suite) openClose(t *testing.T) (lock.Locker, func()) {
	t.Helper()
	l := s.newLocker(t)
	if l == nil {
		t.Fatal("newLocker returned nil")
	}
	var once sync.Once
	closeFn := func() {
		once.Do(func() {
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(closeFn)
	return l, closeFn
}

// lockName returns a valid lock name unique to this run of t.
func lockName(t *testing.T, suffix string) string {
	base := t.Name()
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[i+1:]
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, base) + "-" + suffix + "-" + hex.EncodeToString(b)
	if len(n) > lock.MaxNameLen {
		n = n[len(n)-lock.MaxNameLen:]
	}
	return n
}

func req(name, owner string, mode lock.Mode, wait time.Duration) lock.Request {
	return lock.Request{
		Name: name,
		Mode: mode,
		Holder: lock.Holder{
			Owner:   owner,
			Host:    "host-" + owner,
			PID:     1000 + len(owner),
			Command: "cmd " + owner,
		},
		Wait: wait,
	}
}

func mustAcquire(t *testing.T, l lock.Locker, r lock.Request) *lock.Lease {
	t.Helper()
	ls, err := l.Acquire(t.Context(), r)
	if err != nil {
		t.Fatalf("Acquire(%s, %s, %s): %v", r.Name, r.Owner, r.Mode, err)
	}
	checkLease(t, ls, r)
	return ls
}

func checkLease(t *testing.T, ls *lock.Lease, r lock.Request) {
	t.Helper()
	if ls == nil {
		t.Fatalf("Acquire(%s, %s): nil lease, nil error", r.Name, r.Owner)
	}
	if ls.Name != r.Name || ls.Mode != r.Mode || ls.Owner != r.Owner || ls.Token == 0 {
		t.Fatalf("Acquire(%s, %s, %s) = %+v: wrong name, mode or owner, or zero token", r.Name, r.Owner, r.Mode, *ls)
	}
	if ls.Acquired.IsZero() || !ls.Expires.After(ls.Acquired) || ls.TTL <= 0 {
		t.Fatalf("Acquire(%s, %s) = %+v: want Acquired set, Expires after it and a positive TTL", r.Name, r.Owner, *ls)
	}
	wantTTL := r.TTL
	if wantTTL == 0 {
		wantTTL = lock.DefaultTTL
	}
	if ls.TTL != wantTTL {
		t.Fatalf("Acquire(%s, %s): TTL %s, want %s", r.Name, r.Owner, ls.TTL, wantTTL)
	}
}

func mustRelease(t *testing.T, l lock.Locker, name, owner string) {
	t.Helper()
	if err := l.Release(t.Context(), name, owner); err != nil {
		t.Fatalf("Release(%s, %s): %v", name, owner, err)
	}
}

// wantTimeout checks that a no-wait Acquire fails with ErrTimeout.
func wantTimeout(t *testing.T, l lock.Locker, r lock.Request) {
	t.Helper()
	r.Wait = 0
	ls, err := l.Acquire(t.Context(), r)
	if !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Acquire(%s, %s, %s, no wait) = %+v, %v; want ErrTimeout", r.Name, r.Owner, r.Mode, ls, err)
	}
	if ls != nil {
		t.Fatalf("Acquire(%s, %s) returned a lease with an error: %+v", r.Name, r.Owner, *ls)
	}
}

type result struct {
	owner string
	lease *lock.Lease
	err   error
}

// acquireAsync runs Acquire in a goroutine and sends its result on ch (or a
// new channel when ch is nil, which it returns). The goroutine ends before
// the Lockers of t are closed: t's context is cancelled first.
func acquireAsync(t *testing.T, ctx context.Context, l lock.Locker, r lock.Request, ch chan result) chan result {
	t.Helper()
	if ch == nil {
		ch = make(chan result, 1)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ls, err := l.Acquire(ctx, r)
		ch <- result{owner: r.Owner, lease: ls, err: err}
	}()
	t.Cleanup(func() { <-done })
	return ch
}

func recv(t *testing.T, ch chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("%s: no result after %s", what, within)
		return result{}
	}
}

func recvGrant(t *testing.T, ch chan result, r lock.Request) *lock.Lease {
	t.Helper()
	res := recv(t, ch, fmt.Sprintf("Acquire(%s, %s)", r.Name, r.Owner))
	if res.err != nil {
		t.Fatalf("Acquire(%s, %s): %v", r.Name, r.Owner, res.err)
	}
	if res.owner != r.Owner {
		t.Fatalf("lock %s granted to %s, want %s next", r.Name, res.owner, r.Owner)
	}
	checkLease(t, res.lease, r)
	return res.lease
}

// notYet checks that no result arrived on ch, after giving a wrongly woken
// waiter a moment to show up.
func notYet(t *testing.T, ch chan result, why string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: Acquire by %s returned %+v, %v; want it still waiting", why, r.owner, r.lease, r.err)
	case <-time.After(50 * time.Millisecond):
	}
}

// status returns the status of one lock (empty when nobody holds or waits).
func status(t *testing.T, l lock.Locker, name string) lock.Status {
	t.Helper()
	sts, err := l.Status(t.Context(), name)
	if err != nil {
		t.Fatalf("Status(%s): %v", name, err)
	}
	switch len(sts) {
	case 0:
		return lock.Status{Name: name}
	case 1:
		if sts[0].Name != name {
			t.Fatalf("Status(%s) returned lock %q", name, sts[0].Name)
		}
		return sts[0]
	default:
		t.Fatalf("Status(%s) returned %d locks", name, len(sts))
		return lock.Status{}
	}
}

// waitWaiters waits until the status of name shows n waiters.
func waitWaiters(t *testing.T, l lock.Locker, name string, n int) lock.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := status(t, l, name)
		if len(st.Waiters) == n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status(%s): %d waiters after %s, want %d: %+v", name, len(st.Waiters), within, n, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func owners(es []lock.Entry) []string {
	var o []string
	for _, e := range es {
		o = append(o, e.Owner)
	}
	return o
}

func wantOwners(t *testing.T, what string, es []lock.Entry, want ...string) {
	t.Helper()
	got := owners(es)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: owners %v, want %v", what, got, want)
	}
}

func (s *suite) testInvalidRequests(t *testing.T) {
	l := s.open(t)
	ctx := t.Context()
	good := req(lockName(t, "x"), "a", lock.Exclusive, 0)
	bad := map[string]lock.Request{}
	for _, n := range []string{"", "a/b", "../x", "a*", "x?", ".hidden", "a b", strings.Repeat("n", lock.MaxNameLen+1)} {
		r := good
		r.Name = n
		bad["name "+n] = r
	}
	r := good
	r.Mode = "both"
	bad["mode"] = r
	r = good
	r.Owner = ""
	bad["owner"] = r
	r = good
	r.TTL = time.Second
	bad["ttl below MinTTL"] = r
	r = good
	r.Wait = -5 * time.Second
	bad["negative wait"] = r
	r = good
	r.Slots = 2
	bad["exclusive semaphore"] = r
	r = good
	r.Mode, r.Slots = lock.Shared, -1
	bad["negative slots"] = r
	for what, r := range bad {
		ls, err := l.Acquire(ctx, r)
		if !errors.Is(err, lock.ErrInvalid) || ls != nil {
			t.Errorf("Acquire with bad %s = %+v, %v; want ErrInvalid", what, ls, err)
		}
	}
	for _, n := range []string{"a/b", "*", ".x"} {
		if err := l.Release(ctx, n, "a"); !errors.Is(err, lock.ErrInvalid) {
			t.Errorf("Release(%q) = %v; want ErrInvalid", n, err)
		}
		if _, err := l.Status(ctx, n); !errors.Is(err, lock.ErrInvalid) {
			t.Errorf("Status(%q) = %v; want ErrInvalid", n, err)
		}
	}
	// Nothing was left behind by the rejected requests.
	mustAcquire(t, l, good)
}

func (s *suite) testExclusiveExcludes(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "x")
	a := mustAcquire(t, l1, req(name, "a", lock.Exclusive, 0))
	wantTimeout(t, l2, req(name, "b", lock.Exclusive, 0))
	wantTimeout(t, l2, req(name, "c", lock.Shared, 0))
	wantTimeout(t, l1, req(name, "d", lock.Exclusive, 0))
	st := status(t, l2, name)
	wantOwners(t, "holders", st.Holders, "a")
	wantOwners(t, "waiters", st.Waiters)
	mustRelease(t, l1, name, "a")
	b := mustAcquire(t, l2, req(name, "b", lock.Exclusive, 0))
	if b.Token <= a.Token {
		t.Fatalf("token %d after token %d: want strictly increasing", b.Token, a.Token)
	}
}

func (s *suite) testIndependentNames(t *testing.T) {
	l := s.open(t)
	n1, n2 := lockName(t, "one"), lockName(t, "two")
	mustAcquire(t, l, req(n1, "a", lock.Exclusive, 0))
	mustAcquire(t, l, req(n2, "b", lock.Exclusive, 0))
	wantTimeout(t, l, req(n1, "c", lock.Shared, 0))
	mustRelease(t, l, n2, "b")
	wantTimeout(t, l, req(n1, "c", lock.Shared, 0))
}

func (s *suite) testSharedHoldersTogether(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "s")
	var want []string
	for i := range 5 {
		owner := fmt.Sprintf("s%d", i)
		l := l1
		if i%2 == 1 {
			l = l2
		}
		mustAcquire(t, l, req(name, owner, lock.Shared, 0))
		want = append(want, owner)
	}
	st := status(t, l1, name)
	wantOwners(t, "holders", st.Holders, want...)
	for _, h := range st.Holders {
		if h.Mode != lock.Shared {
			t.Fatalf("holder %s has mode %q, want shared", h.Owner, h.Mode)
		}
	}
	wantTimeout(t, l2, req(name, "x", lock.Exclusive, 0))
	for _, o := range want {
		mustRelease(t, l1, name, o)
	}
	mustAcquire(t, l2, req(name, "x", lock.Exclusive, 0))
}

func (s *suite) testExclusiveWaitsForShared(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "ws")
	s1r := req(name, "s1", lock.Shared, 0)
	s1r.Session = true
	s1 := mustAcquire(t, l1, s1r)
	s2 := mustAcquire(t, l1, req(name, "s2", lock.Shared, 0))
	xr := req(name, "x", lock.Exclusive, lock.WaitForever)
	xch := acquireAsync(t, t.Context(), l2, xr, nil)
	waitWaiters(t, l1, name, 1)
	mustRelease(t, l1, name, "s1")
	notYet(t, xch, "one shared holder left")
	mustRelease(t, l1, name, "s2")
	x := recvGrant(t, xch, xr)
	if x.Token <= s1.Token || x.Token <= s2.Token {
		t.Fatalf("exclusive token %d not above shared tokens %d, %d", x.Token, s1.Token, s2.Token)
	}
	st := status(t, l1, name)
	wantOwners(t, "holders", st.Holders, "x")
	wantOwners(t, "waiters", st.Waiters)
}

// A shared request that comes after a waiting exclusive one queues behind it
// (no writer starvation); shared waiters that become first are granted
// together.
func (s *suite) testNoWriterStarvation(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "ns")
	mustAcquire(t, l1, req(name, "s1", lock.Shared, 0))
	xr := req(name, "x", lock.Exclusive, lock.WaitForever)
	xr.Session = true
	xch := acquireAsync(t, t.Context(), l2, xr, nil)
	waitWaiters(t, l1, name, 1)

	// A shared request does not overtake the waiting writer.
	wantTimeout(t, l1, req(name, "s2", lock.Shared, 0))
	ch := make(chan result, 2)
	s2r := req(name, "s2", lock.Shared, lock.WaitForever)
	acquireAsync(t, t.Context(), l1, s2r, ch)
	waitWaiters(t, l1, name, 2)
	s3r := req(name, "s3", lock.Shared, lock.WaitForever)
	acquireAsync(t, t.Context(), l2, s3r, ch)
	st := waitWaiters(t, l1, name, 3)
	wantOwners(t, "waiters", st.Waiters, "x", "s2", "s3")
	notYet(t, ch, "an exclusive request waits ahead")

	mustRelease(t, l1, name, "s1")
	x := recvGrant(t, xch, xr)
	notYet(t, ch, "the exclusive request holds the lock")
	mustRelease(t, l2, name, "x")
	// Both shared waiters get the lock, together.
	got := map[string]*lock.Lease{}
	for range 2 {
		r := recv(t, ch, "shared waiters")
		if r.err != nil {
			t.Fatalf("Acquire(%s): %v", r.owner, r.err)
		}
		got[r.owner] = r.lease
	}
	if got["s2"] == nil || got["s3"] == nil {
		t.Fatalf("grants: %v, want s2 and s3", got)
	}
	if got["s2"].Token <= x.Token || got["s3"].Token <= got["s2"].Token {
		t.Fatalf("tokens x=%d s2=%d s3=%d: want increasing in queue order", x.Token, got["s2"].Token, got["s3"].Token)
	}
	st = status(t, l2, name)
	wantOwners(t, "holders", st.Holders, "s2", "s3")
	wantOwners(t, "waiters", st.Waiters)
}

// A semaphore of 2 slots: two holders at once, the third waits in FIFO
// order and gets a slot when one is released; an exclusive request still
// waits for all of them.
func (s *suite) testSemaphore(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "sem")
	sem := func(owner string, wait time.Duration) lock.Request {
		r := req(name, owner, lock.Shared, wait)
		r.Slots = 2
		return r
	}
	a := mustAcquire(t, l1, sem("a", 0))
	if a.Slots != 2 {
		t.Fatalf("lease slots = %d, want 2", a.Slots)
	}
	mustAcquire(t, l2, sem("b", 0))
	wantTimeout(t, l1, sem("c", 0))
	cr := sem("c", lock.WaitForever)
	cch := acquireAsync(t, t.Context(), l1, cr, nil)
	waitWaiters(t, l2, name, 1)
	xr := req(name, "x", lock.Exclusive, lock.WaitForever)
	xch := acquireAsync(t, t.Context(), l2, xr, nil)
	st := waitWaiters(t, l2, name, 2)
	wantOwners(t, "holders", st.Holders, "a", "b")
	wantOwners(t, "waiters", st.Waiters, "c", "x")
	if st.Holders[0].Slots != 2 || st.Waiters[0].Slots != 2 {
		t.Errorf("status slots = %d, %d; want 2", st.Holders[0].Slots, st.Waiters[0].Slots)
	}
	notYet(t, cch, "both slots are taken")

	mustRelease(t, l1, name, "a")
	c := recvGrant(t, cch, cr)
	notYet(t, xch, "the semaphore holders b and c remain")
	st = status(t, l1, name)
	wantOwners(t, "holders", st.Holders, "b", "c")
	mustRelease(t, l2, name, "b")
	notYet(t, xch, "c still holds a slot")
	mustRelease(t, l1, name, "c")
	x := recvGrant(t, xch, xr)
	if x.Token <= c.Token {
		t.Fatalf("exclusive token %d not above semaphore token %d", x.Token, c.Token)
	}
	// While the exclusive holder has it, a semaphore request waits.
	wantTimeout(t, l1, sem("d", 0))
}

func (s *suite) testFIFOOrder(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "fifo")
	first := mustAcquire(t, l1, req(name, "h", lock.Exclusive, 0))
	ch := make(chan result, 8)
	var reqs []lock.Request
	for i := range 6 {
		l := l1
		if i%2 == 0 {
			l = l2
		}
		r := req(name, fmt.Sprintf("w%d", i+1), lock.Exclusive, lock.WaitForever)
		if i%3 == 1 {
			r.Wait = time.Minute
		}
		r.Session = i%2 == 1
		reqs = append(reqs, r)
		acquireAsync(t, t.Context(), l, r, ch)
		// Wait for each ticket before the next, so that the queue order is
		// the order of the requests.
		waitWaiters(t, l1, name, i+1)
	}
	st := status(t, l2, name)
	wantOwners(t, "waiters", st.Waiters, "w1", "w2", "w3", "w4", "w5", "w6")
	for i, w := range st.Waiters {
		if w.Position != i+1 {
			t.Fatalf("waiter %s at position %d, want %d", w.Owner, w.Position, i+1)
		}
	}
	prev := first.Token
	holder, holderLocker := "h", l1
	for _, r := range reqs {
		mustRelease(t, holderLocker, name, holder)
		ls := recvGrant(t, ch, r)
		if ls.Token <= prev {
			t.Fatalf("%s got token %d after %d: want strictly increasing", r.Owner, ls.Token, prev)
		}
		prev = ls.Token
		holder = r.Owner
		holderLocker = l2 // any Locker sharing the state may release
	}
	mustRelease(t, l1, name, holder)
	st = status(t, l1, name)
	wantOwners(t, "holders", st.Holders)
	wantOwners(t, "waiters", st.Waiters)
}

func (s *suite) testNoWaitTimeout(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "nw")
	mustAcquire(t, l1, req(name, "a", lock.Shared, 0))
	start := time.Now()
	wantTimeout(t, l2, req(name, "b", lock.Exclusive, 0))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("no-wait Acquire took %s", d)
	}
	st := status(t, l1, name)
	wantOwners(t, "holders", st.Holders, "a")
	wantOwners(t, "waiters", st.Waiters)
	// The failed request left nothing that blocks a shared request.
	mustAcquire(t, l1, req(name, "c", lock.Shared, 0))
}

func (s *suite) testWaitTimeoutLeavesNoTicket(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "wt")
	mustAcquire(t, l1, req(name, "a", lock.Exclusive, 0))
	const wait = 300 * time.Millisecond
	start := time.Now()
	ls, err := l2.Acquire(t.Context(), req(name, "b", lock.Exclusive, wait))
	if !errors.Is(err, lock.ErrTimeout) || ls != nil {
		t.Fatalf("Acquire(wait %s) = %+v, %v; want ErrTimeout", wait, ls, err)
	}
	if d := time.Since(start); d < wait {
		t.Fatalf("Acquire(wait %s) gave up after %s", wait, d)
	}
	if !strings.Contains(err.Error(), name) {
		t.Errorf("timeout error %q does not name the lock %s", err, name)
	}
	st := status(t, l1, name)
	wantOwners(t, "waiters after timeout", st.Waiters)
	// A shared waiter that times out behind an exclusive one, too.
	xch := acquireAsync(t, t.Context(), l2, req(name, "x", lock.Exclusive, lock.WaitForever), nil)
	waitWaiters(t, l1, name, 1)
	if _, err := l2.Acquire(t.Context(), req(name, "s", lock.Shared, wait)); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("shared Acquire(wait %s) = %v; want ErrTimeout", wait, err)
	}
	st = status(t, l1, name)
	wantOwners(t, "waiters", st.Waiters, "x")

	mustRelease(t, l1, name, "a")
	recvGrant(t, xch, req(name, "x", lock.Exclusive, lock.WaitForever))
	mustRelease(t, l2, name, "x")
	// No ticket of b or s blocks a new no-wait request.
	mustAcquire(t, l1, req(name, "c", lock.Exclusive, 0))
}

func (s *suite) testCancelLeavesNoTicket(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "cancel")
	mustAcquire(t, l1, req(name, "a", lock.Exclusive, 0))
	for _, mode := range []lock.Mode{lock.Exclusive, lock.Shared} {
		ctx, cancel := context.WithCancel(t.Context())
		ch := acquireAsync(t, ctx, l2, req(name, "b", mode, lock.WaitForever), nil)
		waitWaiters(t, l1, name, 1)
		cancel()
		r := recv(t, ch, "cancelled Acquire")
		if !errors.Is(r.err, context.Canceled) || r.lease != nil {
			t.Fatalf("%s Acquire after cancel = %+v, %v; want context.Canceled", mode, r.lease, r.err)
		}
		st := status(t, l1, name)
		wantOwners(t, "waiters after cancel", st.Waiters)
	}
	// A context that ends before Acquire starts.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l2.Acquire(ctx, req(name, "c", lock.Exclusive, lock.WaitForever)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled context = %v; want context.Canceled", err)
	}
	// A deadline while waiting with a longer Wait.
	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := l2.Acquire(ctx, req(name, "d", lock.Exclusive, time.Minute)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past the context deadline = %v; want context.DeadlineExceeded", err)
	}
	st := status(t, l1, name)
	wantOwners(t, "waiters", st.Waiters)
	mustRelease(t, l1, name, "a")
	mustAcquire(t, l2, req(name, "e", lock.Exclusive, 0))
}

func (s *suite) testFencingTokens(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name, other := lockName(t, "f"), lockName(t, "g")
	var prev uint64
	for i := range 8 {
		l, mode := l1, lock.Exclusive
		if i%2 == 1 {
			l = l2
		}
		if i%3 == 2 {
			mode = lock.Shared
		}
		owner := fmt.Sprintf("o%d", i)
		ls := mustAcquire(t, l, req(name, owner, mode, 0))
		if ls.Token <= prev {
			t.Fatalf("grant %d: token %d after %d, want strictly increasing", i, ls.Token, prev)
		}
		prev = ls.Token
		// Activity on another lock does not disturb the order.
		mustAcquire(t, l, req(other, owner, lock.Exclusive, 0))
		mustRelease(t, l, other, owner)
		mustRelease(t, l, name, owner)
	}
}

func (s *suite) testFencingTokensAcrossReopen(t *testing.T) {
	name := lockName(t, "r")
	l1, close1 := s.openClose(t)
	a := mustAcquire(t, l1, req(name, "a", lock.Exclusive, 0))
	mustRelease(t, l1, name, "a")
	b := mustAcquire(t, l1, req(name, "b", lock.Shared, 0))
	mustRelease(t, l1, name, "b")
	close1()
	l2 := s.open(t)
	c := mustAcquire(t, l2, req(name, "c", lock.Exclusive, 0))
	if !(a.Token < b.Token && b.Token < c.Token) {
		t.Fatalf("tokens %d, %d, then %d after reopening: want strictly increasing", a.Token, b.Token, c.Token)
	}
}

func (s *suite) testReentrant(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	for _, mode := range []lock.Mode{lock.Exclusive, lock.Shared} {
		name := lockName(t, string(mode))
		r := req(name, "a", mode, 0)
		a := mustAcquire(t, l1, r)
		// Behind a waiting exclusive request, too.
		xch := acquireAsync(t, t.Context(), l2, req(name, "x", lock.Exclusive, lock.WaitForever), nil)
		waitWaiters(t, l1, name, 1)
		for _, l := range []lock.Locker{l1, l2} {
			again := mustAcquire(t, l, r)
			if again.Token != a.Token {
				t.Fatalf("%s re-acquire: token %d, want the held token %d", mode, again.Token, a.Token)
			}
		}
		st := status(t, l2, name)
		wantOwners(t, "holders", st.Holders, "a")
		// One release frees it.
		mustRelease(t, l1, name, "a")
		recvGrant(t, xch, req(name, "x", lock.Exclusive, lock.WaitForever))
		if err := l1.Release(t.Context(), name, "a"); !errors.Is(err, lock.ErrNotHeld) {
			t.Fatalf("second Release = %v; want ErrNotHeld", err)
		}
		mustRelease(t, l2, name, "x")
	}
}

func (s *suite) testReleaseNotHeld(t *testing.T) {
	l := s.open(t)
	name := lockName(t, "nh")
	if err := l.Release(t.Context(), name, "a"); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Release of a free lock = %v; want ErrNotHeld", err)
	}
	mustAcquire(t, l, req(name, "a", lock.Exclusive, 0))
	err := l.Release(t.Context(), name, "b")
	if !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Release by a non-holder = %v; want ErrNotHeld", err)
	}
	if !strings.Contains(err.Error(), name) {
		t.Errorf("ErrNotHeld message %q does not name the lock %s", err, name)
	}
	// The holder still holds it.
	st := status(t, l, name)
	wantOwners(t, "holders", st.Holders, "a")
	// A waiter does not hold the lock either.
	wch := acquireAsync(t, t.Context(), l, req(name, "w", lock.Exclusive, lock.WaitForever), nil)
	waitWaiters(t, l, name, 1)
	if err := l.Release(t.Context(), name, "w"); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Release by a waiter = %v; want ErrNotHeld", err)
	}
	mustRelease(t, l, name, "a")
	recvGrant(t, wch, req(name, "w", lock.Exclusive, lock.WaitForever))
}

func (s *suite) testRenew(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name := lockName(t, "renew")
	r := req(name, "a", lock.Exclusive, 0)
	r.TTL = lock.MinTTL
	a := mustAcquire(t, l1, r)
	before := a.Expires
	st := status(t, l2, name)
	if len(st.Holders) != 1 || st.Holders[0].Expires.IsZero() {
		t.Fatalf("status %+v: want one holder with an expiry", st)
	}
	statusBefore := st.Holders[0].Expires
	time.Sleep(20 * time.Millisecond) // let the clock move
	if err := l1.Renew(t.Context(), a); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if !a.Expires.After(before) {
		t.Fatalf("Renew: Expires %v, was %v; want later", a.Expires, before)
	}
	st = status(t, l2, name)
	if len(st.Holders) != 1 || !st.Holders[0].Expires.After(statusBefore) {
		t.Fatalf("status after Renew %+v: want the expiry after %v", st, statusBefore)
	}
	mustRelease(t, l1, name, "a")
	if err := l1.Renew(t.Context(), a); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Renew after Release = %v; want ErrLost", err)
	}
	// A lease taken over by a new holder is lost for the old one.
	mustAcquire(t, l2, req(name, "a", lock.Exclusive, 0))
	if err := l1.Renew(t.Context(), a); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Renew of an old grant = %v; want ErrLost", err)
	}
}

func (s *suite) testStatus(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name, other := lockName(t, "st"), lockName(t, "other")
	before := time.Now().Add(-time.Second)
	s1r, s2r := req(name, "s1", lock.Shared, 0), req(name, "s2", lock.Shared, 0)
	s1r.TTL = time.Minute
	s2r.Session = true
	s1 := mustAcquire(t, l1, s1r)
	s2 := mustAcquire(t, l2, s2r)
	xr := req(name, "x", lock.Exclusive, lock.WaitForever)
	acquireAsync(t, t.Context(), l2, xr, nil)
	waitWaiters(t, l1, name, 1)
	yr := req(name, "y", lock.Shared, time.Minute)
	acquireAsync(t, t.Context(), l1, yr, nil)
	waitWaiters(t, l1, name, 2)
	mustAcquire(t, l1, req(other, "o", lock.Exclusive, 0))

	st := status(t, l2, name)
	wantOwners(t, "holders", st.Holders, "s1", "s2")
	wantOwners(t, "waiters", st.Waiters, "x", "y")
	for i, h := range st.Holders {
		ls, r := s1, s1r
		if i == 1 {
			ls, r = s2, s2r
		}
		if h.Token != ls.Token || h.Mode != lock.Shared || h.Host != r.Host || h.PID != r.PID || h.Command != r.Command {
			t.Errorf("holder %d = %+v; want token %d, shared, host %s, pid %d, command %q", i, h, ls.Token, r.Host, r.PID, r.Command)
		}
		if h.Since.Before(before) || h.Expires.Before(h.Since) || h.Position != 0 {
			t.Errorf("holder %d = %+v: want Since now, Expires after it, no position", i, h)
		}
	}
	if d := st.Holders[0].Expires.Sub(s1.Acquired); d < 50*time.Second || d > 70*time.Second {
		t.Errorf("holder s1 expires %s after its grant, want its TTL of 1m", d)
	}
	for i, w := range st.Waiters {
		r := []lock.Request{xr, yr}[i]
		if w.Position != i+1 || w.Mode != r.Mode || w.Host != r.Host || w.PID != r.PID || w.Command != r.Command || w.Since.Before(before) {
			t.Errorf("waiter %d = %+v; want position %d, mode %s, host %s, pid %d, command %q, Since now", i, w, i+1, r.Mode, r.Host, r.PID, r.Command)
		}
	}

	all, err := l1.Status(t.Context(), "")
	if err != nil {
		t.Fatalf("Status(\"\"): %v", err)
	}
	found := map[string]lock.Status{}
	for _, s := range all {
		found[s.Name] = s
	}
	if len(found[name].Holders) != 2 || len(found[name].Waiters) != 2 || len(found[other].Holders) != 1 {
		t.Fatalf("Status(\"\") = %+v; want %s with 2 holders and 2 waiters and %s with 1 holder", all, name, other)
	}
	// A lock nobody holds or waits for.
	free := status(t, l1, lockName(t, "free"))
	if len(free.Holders)+len(free.Waiters) != 0 {
		t.Fatalf("status of a free lock: %+v", free)
	}
}

// An exclusive lease that is not renewed expires and the lock goes to the
// next waiter; the old holder's Renew and Release fail. Cleanup removes
// expired leases and leaves live ones alone.
func (s *suite) testLeaseExpiry(t *testing.T) {
	l1, l2 := s.open(t), s.open(t)
	name, other := lockName(t, "exp"), lockName(t, "exp2")
	ar := req(name, "a", lock.Exclusive, 0)
	ar.TTL = lock.MinTTL
	a := mustAcquire(t, l1, ar)
	cr := req(other, "c", lock.Shared, 0)
	cr.TTL = lock.MinTTL
	mustAcquire(t, l1, cr)
	live := req(other, "live", lock.Shared, 0) // default TTL: does not expire during the test
	mustAcquire(t, l2, live)

	br := req(name, "b", lock.Exclusive, lock.WaitForever)
	bch := acquireAsync(t, t.Context(), l2, br, nil)
	b := recvGrant(t, bch, br)
	if b.Token <= a.Token {
		t.Fatalf("token %d after expired token %d", b.Token, a.Token)
	}
	// The grant waited for the expiry (give or take a clock skew between
	// client and server, for backends that expire leases server-side).
	if now := time.Now(); now.Before(a.Acquired.Add(a.TTL - expirySkew)) {
		t.Fatalf("lock granted to b at %v, before a's lease (granted %v, TTL %s) expired", now, a.Acquired, a.TTL)
	}
	if err := l1.Renew(t.Context(), a); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Renew of an expired lease = %v; want ErrLost", err)
	}
	if err := l1.Release(t.Context(), name, "a"); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Release of an expired lease = %v; want ErrNotHeld", err)
	}
	st := status(t, l1, name)
	wantOwners(t, "holders", st.Holders, "b")

	// c's lease on the other lock has expired too, by now.
	cl, err := l1.Cleanup(t.Context(), 0)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	for _, e := range append(cl.ExpiredLeases, cl.DeadWaiters...) {
		if e.Owner != "c" {
			t.Fatalf("Cleanup removed %+v, a live lease or waiter", e)
		}
	}
	st = status(t, l2, other)
	wantOwners(t, "holders after cleanup", st.Holders, "live")
	st = status(t, l2, name)
	wantOwners(t, "holders after cleanup", st.Holders, "b")
	mustRelease(t, l2, name, "b")
	mustRelease(t, l2, other, "live")
}
