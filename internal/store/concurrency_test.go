package store

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func assertNoBusy(t testing.TB, s string) {
	t.Helper()
	for _, bad := range []string{"BUSY", "locked"} {
		if strings.Contains(s, bad) {
			t.Errorf("lock contention reached the caller (%q): %s", bad, s)
		}
	}
}

// 16 processes open one brand-new database at the same moment (racing to
// switch it to WAL and to migrate it) and then write to it concurrently.
func TestConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 16 processes")
	}
	const procs = 16
	dir := filepath.Join(t.TempDir(), "state")

	type child struct {
		cmd    *exec.Cmd
		stderr bytes.Buffer
		stdin  interface{ Close() error }
	}
	children := make([]*child, procs)
	for i := range children {
		c := &child{cmd: exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")}
		c.cmd.Env = append(os.Environ(),
			childEnv+"=writer", childDirEnv+"="+dir, childIDEnv+"="+strconv.Itoa(i))
		c.cmd.Stderr = &c.stderr
		stdin, err := c.cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		c.stdin = stdin
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}
	// Release them all at once.
	for _, c := range children {
		c.stdin.Close()
	}
	for i, c := range children {
		err := c.cmd.Wait()
		stderr := c.stderr.String()
		if err != nil || stderr != "" {
			t.Errorf("child %d: %v, stderr:\n%s", i, err, stderr)
		}
		assertNoBusy(t, stderr)
	}
	if t.Failed() {
		return
	}

	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := countRuns(t, s); n != procs*childTxs {
		t.Fatalf("rows = %d, want %d", n, procs*childTxs)
	}
	// Every child's every transaction is there exactly once.
	var distinct int
	if err := s.View(t.Context(), func(tx *sql.Tx) error {
		return tx.QueryRow(`SELECT count(DISTINCT name) FROM runs`).Scan(&distinct)
	}); err != nil || distinct != procs*childTxs {
		t.Fatalf("distinct names = %d, %v; want %d", distinct, err, procs*childTxs)
	}
	if v, err := s.SchemaVersion(t.Context()); err != nil || v != SchemaLatest {
		t.Fatalf("SchemaVersion = %d, %v", v, err)
	}
}

// Goroutines of one process, sharing a Store or each with their own (which
// contend on the file lock like processes do), never see SQLITE_BUSY.
func TestConcurrentGoroutines(t *testing.T) {
	const (
		stores     = 4
		perStore   = 4
		txsPerGoro = 25
	)
	dir := filepath.Join(t.TempDir(), "state")
	var opened []*Store
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, stores*perStore)
	for si := range stores {
		wg.Go(func() {
			s, err := Open(t.Context(), dir) // racing opens of a new database
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			opened = append(opened, s)
			mu.Unlock()
			var inner sync.WaitGroup
			for gi := range perStore {
				inner.Go(func() {
					for i := range txsPerGoro {
						name := fmt.Sprintf("%d-%d-%d", si, gi, i)
						if i%5 == 0 {
							if _, err := s.RecordRun(t.Context(), Run{Kind: "diag", Name: name}); err != nil {
								errs <- err
								return
							}
						} else if err := s.Update(t.Context(), func(tx *sql.Tx) error {
							return insertAndCount(t.Context(), tx, "diag", name)
						}); err != nil {
							errs <- err
							return
						}
						if _, err := s.Runs(t.Context(), "diag", 3); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			inner.Wait()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
		assertNoBusy(t, err.Error())
	}
	defer func() {
		for _, s := range opened {
			s.Close()
		}
	}()
	if t.Failed() {
		return
	}
	if n := countRuns(t, opened[0]); n != stores*perStore*txsPerGoro {
		t.Fatalf("rows = %d, want %d", n, stores*perStore*txsPerGoro)
	}
}

func BenchmarkUpdate(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	for b.Loop() {
		if err := s.Update(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO runs (kind, name, status, started_ns) VALUES ('bench', 'x', 'ok', 1)`)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}
