package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Child processes of the tests are this test binary started again with
// childEnv set to a mode; TestMain runs them instead of the tests.
const (
	childEnv    = "NETOPS_STORE_TEST_CHILD"
	childDirEnv = "NETOPS_STORE_TEST_DIR"
	childIDEnv  = "NETOPS_STORE_TEST_ID"

	childTxs = 50 // transactions per writer child
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}

func runChild(mode string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := os.Getenv(childDirEnv)
	switch mode {
	case "writer":
		if err := childWriter(ctx, dir, os.Getenv(childIDEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "open":
		// Report Open's error on stdout, for the parent to inspect.
		s, err := Open(ctx, dir)
		if err != nil {
			fmt.Println(err)
			return 0
		}
		s.Close()
		fmt.Println("ok")
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, mode)
	return 2
}

// childWriter waits for its stdin to close (so that all children start
// together), opens the store and runs childTxs transactions, each
// inserting a run and counting the runs.
func childWriter(ctx context.Context, dir, id string) error {
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return err
	}
	s, err := Open(ctx, dir)
	if err != nil {
		return err
	}
	defer s.Close()
	for i := range childTxs {
		err := s.Update(ctx, func(tx *sql.Tx) error {
			return insertAndCount(ctx, tx, "child", id+"-"+strconv.Itoa(i))
		})
		if err != nil {
			return fmt.Errorf("child %s tx %d: %w", id, i, err)
		}
	}
	return s.Close()
}

func insertAndCount(ctx context.Context, tx *sql.Tx, kind, name string) error {
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO runs (kind, name, status, started_ns) VALUES (?, ?, 'ok', ?)`,
		kind, name, time.Now().UnixNano()); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM runs`).Scan(&n); err != nil {
		return err
	}
	if n < 1 {
		return errors.New("count after insert is 0")
	}
	return nil
}

// openTest opens a store in a fresh temporary directory.
func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func countRuns(t testing.TB, s *Store) int64 {
	t.Helper()
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.Runs
}

func TestMigrationsMatchSchemaLatest(t *testing.T) {
	if got := len(migrations()); got != SchemaLatest {
		t.Fatalf("len(migrations()) = %d, SchemaLatest = %d", got, SchemaLatest)
	}
}

func TestOpenFreshAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	for i := range 2 { // second time: already migrated
		s, err := Open(t.Context(), dir)
		if err != nil {
			t.Fatalf("open #%d: %v", i+1, err)
		}
		v, err := s.SchemaVersion(t.Context())
		if err != nil || v != SchemaLatest {
			t.Fatalf("open #%d: SchemaVersion = %d, %v; want %d", i+1, v, err, SchemaLatest)
		}
		if err := s.Check(t.Context()); err != nil {
			t.Fatalf("open #%d: Check: %v", i+1, err)
		}
		info, err := s.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(dir, FileName)
		if info.Path != want || s.Path() != want || info.JournalMode != "wal" ||
			info.SchemaVersion != SchemaLatest || info.SizeBytes <= 0 || info.Runs != 0 {
			t.Fatalf("open #%d: Info = %+v, Path() = %q", i+1, info, s.Path())
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A directory name with URI metacharacters must not leak into the DSN.
func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b=c#d%2e f&_pragma=x")
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.RecordRun(t.Context(), Run{Kind: "diag"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatalf("database not at the expected path: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 1 {
		t.Fatalf("files created outside the state dir: %v", entries)
	}
}

func TestUpdateAndView(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	errFn := errors.New("fn failed")

	if err := s.Update(ctx, func(tx *sql.Tx) error {
		if err := insertAndCount(ctx, tx, "diag", "a"); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errFn)
	}); !errors.Is(err, errFn) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if n := countRuns(t, s); n != 0 {
		t.Fatalf("failed Update left %d rows", n)
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic in fn did not propagate")
			}
		}()
		s.Update(ctx, func(tx *sql.Tx) error { panic("boom") })
	}()
	// The panicking transaction must not keep the write lock.
	shortCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Update(shortCtx, func(tx *sql.Tx) error { return insertAndCount(ctx, tx, "diag", "b") }); err != nil {
		t.Fatalf("Update after panic: %v", err)
	}

	var n int
	if err := s.View(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, "SELECT count(*) FROM runs").Scan(&n)
	}); err != nil || n != 1 {
		t.Fatalf("View count = %d, %v; want 1", n, err)
	}
	if err := s.View(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO runs (kind, started_ns) VALUES ('diag', 1)`)
		return err
	}); err == nil {
		t.Fatal("write inside View succeeded")
	}
	if n := countRuns(t, s); n != 1 {
		t.Fatalf("rows = %d after write attempt in View, want 1", n)
	}
}

// While another process holds the write lock, Update waits until its
// context is done and then reports the context's error, not SQLITE_BUSY.
func TestUpdateWaitsForLockUntilContextDone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	a, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(t.Context(), dir) // separate pool: like another process
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	locked, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- a.Update(t.Context(), func(tx *sql.Tx) error {
			if err := insertAndCount(t.Context(), tx, "diag", "holder"); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = b.Update(ctx, func(tx *sql.Tx) error { return insertAndCount(ctx, tx, "diag", "waiter") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Update under a held lock: %v, want context.DeadlineExceeded", err)
	}
	assertNoBusy(t, err.Error())
	if !strings.Contains(err.Error(), "in use by another netops process") || !strings.Contains(err.Error(), b.Path()) {
		t.Errorf("message %q should name the database and say another process is using it", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Update ignored its deadline: returned after %v", el)
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Once released, b gets the lock.
	if err := b.Update(t.Context(), func(tx *sql.Tx) error { return insertAndCount(t.Context(), tx, "diag", "after") }); err != nil {
		t.Fatal(err)
	}
	if n := countRuns(t, b); n != 2 {
		t.Fatalf("rows = %d, want 2", n)
	}
}
