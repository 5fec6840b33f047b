package local_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/lock"
	"github.com/netops-dev/netops/internal/lock/local"
	"github.com/netops-dev/netops/internal/store"
)

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func exclusive(name, owner string) lock.Request {
	return lock.Request{Name: name, Mode: lock.Exclusive, Holder: lock.Holder{Owner: owner, Host: "h", PID: 42}}
}

func sqlExec(t *testing.T, st *store.Store, query string, args ...any) {
	t.Helper()
	err := st.Update(t.Context(), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(t.Context(), query, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// lockFiles lists the lock files in state (bells left out).
func lockFiles(t *testing.T, state string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(state, local.LocksDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".bell") {
			names = append(names, de.Name())
		}
	}
	return names
}

func TestLockFilesPermissionsAndRemoval(t *testing.T) {
	state := t.TempDir()
	l := openLocker(t, state)
	ctx := t.Context()
	r := exclusive("job", "a")
	r.Session = true
	if _, err := l.Acquire(ctx, r); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(state, local.LocksDir)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("locks dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	files := lockFiles(t, state)
	if len(files) != 1 || !strings.HasPrefix(files[0], "job.") || !strings.HasSuffix(files[0], ".lock") {
		t.Fatalf("lock files %v; want one job.*.lock", files)
	}
	fi, err = os.Stat(filepath.Join(dir, files[0]))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if err := l.Release(ctx, "job", "a"); err != nil {
		t.Fatal(err)
	}
	if files := lockFiles(t, state); len(files) != 0 {
		t.Fatalf("lock files after release: %v", files)
	}
	// A lease without session has no file; a waiter has one while it waits.
	if _, err := l.Acquire(ctx, exclusive("job", "a")); err != nil {
		t.Fatal(err)
	}
	if files := lockFiles(t, state); len(files) != 0 {
		t.Fatalf("lock files of a lease without session: %v", files)
	}
	w := exclusive("job", "b")
	w.Wait = 50 * time.Millisecond
	if _, err := l.Acquire(ctx, w); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Acquire = %v, want ErrTimeout", err)
	}
	if files := lockFiles(t, state); len(files) != 0 {
		t.Fatalf("lock files after a timed out wait: %v", files)
	}
}

func TestErrorMessages(t *testing.T) {
	state := t.TempDir()
	l := openLocker(t, state)
	ctx := t.Context()
	if _, err := l.Acquire(ctx, exclusive("backup", "cron-1")); err != nil {
		t.Fatal(err)
	}
	err := l.Release(ctx, "backup", "cron-2")
	want := `lock not held by this owner: lock "backup" is not held by "cron-2"; held by "cron-1" (pid 42 on h)`
	if !errors.Is(err, lock.ErrNotHeld) || err.Error() != want {
		t.Fatalf("Release by another owner:\n got %v\nwant %s", err, want)
	}
	_, err = l.Acquire(ctx, exclusive("backup", "cron-2"))
	want = `lock not acquired within the wait: lock "backup" is held by "cron-1" (pid 42 on h)`
	if !errors.Is(err, lock.ErrTimeout) || err.Error() != want {
		t.Fatalf("no-wait Acquire:\n got %v\nwant %s", err, want)
	}
	r := exclusive("backup", "cron-2")
	r.Wait = 10 * time.Millisecond
	_, err = l.Acquire(ctx, r)
	want = `lock not acquired within the wait: lock "backup" is held by "cron-1" (pid 42 on h); gave up after 10ms`
	if !errors.Is(err, lock.ErrTimeout) || err.Error() != want {
		t.Fatalf("Acquire with a wait:\n got %v\nwant %s", err, want)
	}
	// Behind a waiting writer.
	ch := make(chan error, 1)
	go func() {
		r := exclusive("backup", "writer")
		r.Wait = lock.WaitForever
		_, err := l.Acquire(ctx, r)
		ch <- err
	}()
	waitForWaiters(t, l, "backup", 1)
	r = exclusive("backup", "reader")
	r.Mode = lock.Shared
	_, err = l.Acquire(ctx, r)
	want = `lock not acquired within the wait: lock "backup" is held by "cron-1" (pid 42 on h) (1 other request waiting)`
	if !errors.Is(err, lock.ErrTimeout) || err.Error() != want {
		t.Fatalf("no-wait Acquire behind a waiter:\n got %v\nwant %s", err, want)
	}
	// The same owner asking for another mode.
	r = exclusive("backup", "cron-1")
	r.Mode = lock.Shared
	if _, err := l.Acquire(ctx, r); !errors.Is(err, lock.ErrInvalid) || !strings.Contains(err.Error(), `"backup" is held by "cron-1" in exclusive mode`) {
		t.Fatalf("Acquire in another mode = %v; want ErrInvalid", err)
	}
	if err := l.Renew(ctx, &lock.Lease{Name: "backup", Owner: "cron-1", Token: 999}); !errors.Is(err, lock.ErrLost) ||
		!strings.Contains(err.Error(), `lock "backup"`) {
		t.Fatalf("Renew of a wrong token = %v; want ErrLost naming the lock", err)
	}
	if err := l.Release(ctx, "backup", "cron-1"); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// Close frees session grants and waiting tickets of its process, not the
// leases granted without session (`lock acquire` keeps them until release).
func TestCloseFreesSessionGrants(t *testing.T) {
	state := t.TempDir()
	l1, l2 := openLocker(t, state), openLocker(t, state)
	ctx := t.Context()
	s := exclusive("session", "a")
	s.Session = true
	if _, err := l1.Acquire(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := l1.Acquire(ctx, exclusive("lease", "a")); err != nil {
		t.Fatal(err)
	}
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l1.Acquire(ctx, exclusive("other", "a")); err == nil {
		t.Fatal("Acquire after Close succeeded")
	}
	if _, err := l2.Acquire(ctx, exclusive("session", "b")); err != nil {
		t.Fatalf("session grant not freed by Close: %v", err)
	}
	if _, err := l2.Acquire(ctx, exclusive("lease", "b")); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("lease freed by Close: %v", err)
	}
	if err := l2.Release(ctx, "lease", "a"); err != nil {
		t.Fatal(err)
	}
}

// A session grant lives as long as its flock, whatever its expiry says (like
// flock(1)); once the holder lets go of the file, the lock is free.
func TestExpiredSessionGrant(t *testing.T) {
	state := t.TempDir()
	st := openStore(t, state)
	l1, l2 := local.New(st, state), openLocker(t, state)
	t.Cleanup(func() { l1.Close() })
	ctx := t.Context()
	s := exclusive("job", "a")
	s.Session = true
	a, err := l1.Acquire(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	sqlExec(t, st, "UPDATE lock_tickets SET expires_ns = ? WHERE id = ?", time.Now().Add(-time.Second).UnixNano(), a.Token)
	if _, err := l2.Acquire(ctx, exclusive("job", "b")); !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Acquire while the expired session grant's file is held = %v; want ErrTimeout", err)
	}
	if err := l1.Renew(ctx, a); err != nil {
		t.Fatalf("Renew of a live session grant = %v", err)
	}
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := l2.Acquire(ctx, exclusive("job", "b"))
	if err != nil {
		t.Fatalf("Acquire after the holder let go: %v", err)
	}
	if b.Token <= a.Token {
		t.Fatalf("token %d after %d", b.Token, a.Token)
	}
}

// A waiter behind a lease without session (no process to watch) wakes when
// another process releases that lease.
func TestReleaseByAnotherProcessWakesWaiter(t *testing.T) {
	state := t.TempDir()
	l1, l2, l3 := openLocker(t, state), openLocker(t, state), openLocker(t, state)
	ctx := t.Context()
	if _, err := l1.Acquire(ctx, exclusive("job", "script")); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() {
		r := exclusive("job", "b")
		r.Wait = 20 * time.Second
		_, err := l2.Acquire(ctx, r)
		ch <- err
	}()
	waitForWaiters(t, l3, "job", 1)
	if err := l3.Release(ctx, "job", "script"); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

func TestCleanupExpiredAndOrphans(t *testing.T) {
	state := t.TempDir()
	st := openStore(t, state)
	l := local.New(st, state)
	t.Cleanup(func() { l.Close() })
	ctx := t.Context()
	now := time.Now()
	sqlExec(t, st, `INSERT INTO lock_tickets (name, mode, owner, host, pid, state, ttl_ns, created_ns, granted_ns, expires_ns)
		VALUES ('old', 'exclusive', 'gone', 'h', 7, 'held', ?, ?, ?, ?)`,
		int64(time.Minute), now.Add(-time.Hour).UnixNano(), now.Add(-time.Hour).UnixNano(), now.Add(-10*time.Minute).UnixNano())
	// A live session grant whose file is old: not an orphan.
	s := exclusive("live", "a")
	s.Session = true
	if _, err := l.Acquire(ctx, s); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(state, local.LocksDir)
	old := now.Add(-2 * time.Hour)
	for _, f := range lockFiles(t, state) {
		if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"orphan.0001.lock", "fresh.0002.lock"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(dir, "orphan.0001.lock"), old, old); err != nil {
		t.Fatal(err)
	}

	cl, err := l.Cleanup(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.ExpiredLeases)+len(cl.DeadWaiters) != 0 {
		t.Fatalf("Cleanup(1h) = %+v; the lease expired 10 minutes ago", cl)
	}
	cl, err = l.Cleanup(ctx, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.ExpiredLeases) != 1 || cl.ExpiredLeases[0].Lock != "old" || cl.ExpiredLeases[0].Owner != "gone" || len(cl.DeadWaiters) != 0 {
		t.Fatalf("Cleanup(5m) = %+v; want the lease of gone on old", cl)
	}
	files := lockFiles(t, state)
	if len(files) != 2 || !strings.HasPrefix(files[0], "fresh.") || !strings.HasPrefix(files[1], "live.") {
		t.Fatalf("lock files after cleanup: %v; want fresh.* and live.*", files)
	}
	// Cleanup rang the bell of "old"; once silent for long, it goes too.
	bell := filepath.Join(dir, "old.bell")
	if err := os.Chtimes(bell, old, old); err != nil {
		t.Fatalf("bell of the cleaned lock: %v", err)
	}
	if _, err := l.Cleanup(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bell); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old bell not removed: %v", err)
	}
	st1 := status1(t, l, "live")
	if len(st1.Holders) != 1 {
		t.Fatalf("Cleanup removed a live grant: %+v", st1)
	}
	if _, err := l.Cleanup(ctx, -time.Second); !errors.Is(err, lock.ErrInvalid) {
		t.Fatalf("Cleanup(-1s) = %v; want ErrInvalid", err)
	}
}

// A damaged row naming a file outside the locks directory does not make
// netops touch that file; the ticket, which no process can vouch for, is
// removed.
func TestDamagedFileNameInTicket(t *testing.T) {
	state := t.TempDir()
	st := openStore(t, state)
	l := local.New(st, state)
	t.Cleanup(func() { l.Close() })
	victim := filepath.Join(state, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	sqlExec(t, st, `INSERT INTO lock_tickets (name, mode, owner, session, file, state, ttl_ns, created_ns)
		VALUES ('job', 'exclusive', 'x', 0, '../victim', 'waiting', ?, ?)`, int64(time.Minute), time.Now().UnixNano())
	if _, err := l.Acquire(t.Context(), exclusive("job", "a")); err != nil {
		t.Fatalf("Acquire behind a damaged ticket: %v", err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Fatalf("file outside the locks directory touched: %v", err)
	}
}

func TestAcquireCancelledWhileStoreBusy(t *testing.T) {
	state := t.TempDir()
	st := openStore(t, state)
	l := local.New(st, state)
	t.Cleanup(func() { l.Close() })
	// Hold the write lock of the database from another connection.
	other := openStore(t, state)
	release := make(chan struct{})
	locked := make(chan struct{})
	go func() {
		_ = other.Update(context.Background(), func(tx *sql.Tx) error {
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	defer close(release)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, exclusive("job", "a")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire while the database is locked = %v; want DeadlineExceeded", err)
	}
}

// A release grants the next tickets in its own transaction: the moment it
// returns, the status shows the waiter as the holder, before the waiter has
// woken to look (its lease comes from that grant).
func TestReleaseGrantsNextTicket(t *testing.T) {
	state := t.TempDir()
	l1, l2, l3 := openLocker(t, state), openLocker(t, state), openLocker(t, state)
	ctx := t.Context()
	r1 := exclusive("job", "first")
	r1.Session = true
	if _, err := l1.Acquire(ctx, r1); err != nil {
		t.Fatal(err)
	}
	got := make(chan *lock.Lease, 1)
	go func() {
		r := exclusive("job", "second")
		r.Session = true
		r.Wait = 20 * time.Second
		lease, err := l2.Acquire(ctx, r)
		if err != nil {
			t.Error(err)
		}
		got <- lease
	}()
	waitForWaiters(t, l3, "job", 1)
	if err := l1.Release(ctx, "job", "first"); err != nil {
		t.Fatal(err)
	}
	st, err := l3.Status(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	var holders []string
	for _, s := range st {
		for _, h := range s.Holders {
			holders = append(holders, h.Owner)
		}
	}
	if len(holders) != 1 || holders[0] != "second" {
		t.Fatalf("right after the release, holders are %q, want the waiter %q", holders, "second")
	}
	lease := <-got
	if lease == nil || lease.Owner != "second" || lease.Acquired.IsZero() {
		t.Fatalf("waiter's lease = %+v", lease)
	}
	if err := l2.Release(ctx, "job", "second"); err != nil {
		t.Fatal(err)
	}
}
