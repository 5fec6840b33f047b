package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Connection settings. busy_timeout comes first (the driver runs it before
// the other pragmas) so that the journal_mode switch waits for locks too.
const (
	rwParams = "_txlock=immediate" +
		"&_pragma=busy_timeout(10000)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(1)"
	// The read pool never changes the file: no journal_mode switch, and
	// query_only makes any write in View fail.
	roParams = "_pragma=busy_timeout(10000)" +
		"&_pragma=foreign_keys(1)" +
		"&_query_only=1"
)

// Backoff between retries of a transaction that met SQLITE_BUSY.
const (
	minBackoff = 2 * time.Millisecond
	maxBackoff = 250 * time.Millisecond
)

// Store is an open state database. It is safe for concurrent use by many
// goroutines; other processes may have the same database open.
type Store struct {
	path string
	rw   *sql.DB // writes: BEGIN IMMEDIATE
	ro   *sql.DB // View: query_only connections
	// wsem serialises Update within this process, so goroutines queue here
	// (honouring their contexts) instead of polling the file lock.
	wsem chan struct{}
	// wq serialises Update across processes (see writerQueue).
	wq *writerQueue
}

// Open opens the database FileName in dir, creating dir (0700) and the file
// (0600) as needed, and migrates its schema to SchemaLatest. A database from
// a newer netops gives a *TooNewError and is not modified; a file that is
// not a database gives an error matching ErrCorrupt.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := EnsureDir(dir); err != nil {
		return nil, err
	}
	path, err := filepath.Abs(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("state database in %s: %w", dir, err)
	}
	if err := createFile(path); err != nil {
		return nil, err
	}

	rw, err := sql.Open("sqlite", dsn(path, rwParams))
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	ro, err := sql.Open("sqlite", dsn(path, roParams))
	if err != nil {
		rw.Close()
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	s := &Store{path: path, rw: rw, ro: ro, wsem: make(chan struct{}, 1), wq: openWriterQueue(path)}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// createFile creates the database file with mode 0600 before SQLite opens
// it: SQLite gives the -wal and -shm files the mode of the database file.
// An existing file readable by others is tightened to 0600 when we own it.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create state database %s: %w", path, bare(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("state database %s: %w", path, bare(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("state database %s is not a regular file: move it aside or use another --state-dir", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := f.Chmod(perm &^ 0o077); err != nil && !errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("restrict permissions of state database %s to 0600: %w", path, bare(err))
		}
	}
	return nil
}

// dsn builds a modernc.org/sqlite DSN. The path goes in a file: URI with
// '?', '#' and '%' escaped, so that no directory name can be mistaken for
// parameters; the driver reads the parameters it knows, SQLite ignores them.
func dsn(path, params string) string {
	return "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath() + "?" + params
}

// Close closes the database. The Store must not be used afterwards.
func (s *Store) Close() error {
	return errors.Join(s.ro.Close(), s.rw.Close(), s.wq.close())
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// DB returns the underlying read-write pool, for callers that need more than
// Update and View. Statements run on it directly get none of Update's
// retries: they can fail with SQLITE_BUSY when other processes write.
func (s *Store) DB() *sql.DB { return s.rw }

// Update runs fn in a write transaction started with BEGIN IMMEDIATE and
// commits it when fn returns nil; when fn returns an error, the transaction
// is rolled back and that error returned. While another connection or
// process holds the write lock (SQLITE_BUSY, SQLITE_LOCKED), Update retries
// the whole transaction, with jittered backoff, until ctx is done, so fn may
// run more than once and must have no effects outside tx. fn must not call
// Update. Updates of one Store run one at a time.
func (s *Store) Update(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.update(ctx, "update", true, fn)
}

// update is Update for the package's own operations; op names the operation
// in errors. With passFnErr, errors from fn are returned as fn made them
// (unless the database is corrupt); otherwise they are wrapped like others.
func (s *Store) update(ctx context.Context, op string, passFnErr bool, fn func(tx *sql.Tx) error) error {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return s.waitErr(ctx, op)
	}
	defer func() { <-s.wsem }()
	leave := s.wq.enter(ctx)
	defer leave()
	return s.run(ctx, op, passFnErr, s.rw, nil, fn)
}

// View runs fn in a read-only transaction: it sees one consistent snapshot,
// does not wait for writers, and any write in it fails. Like Update it
// retries on SQLITE_BUSY (which a reader meets only in rare moments, such as
// WAL recovery), so fn may run more than once.
func (s *Store) View(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.view(ctx, "read", true, fn)
}

// view is View for the package's own operations, as update is for Update.
func (s *Store) view(ctx context.Context, op string, passFnErr bool, fn func(tx *sql.Tx) error) error {
	return s.run(ctx, op, passFnErr, s.ro, &sql.TxOptions{ReadOnly: true}, fn)
}

// run runs fn in a transaction on db, retrying it while it meets BUSY.
func (s *Store) run(ctx context.Context, op string, passFnErr bool, db *sql.DB, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	return s.retry(ctx, op, func() (step, error) { return attempt(ctx, db, opts, passFnErr, fn) })
}

// step tells where an attempt failed.
type step int

const (
	stepBegin step = iota // connecting or BEGIN: waiting for the lock
	stepFn                // in the caller's fn, whose error is to be wrapped
	stepPass              // in the caller's fn, whose error is to be passed on
	stepCommit
)

// retry calls attempt until it succeeds, fails with an error other than
// SQLITE_BUSY or SQLITE_LOCKED, or ctx is done. Errors from a stepPass
// failure come back as they are, unless the database is corrupt; others are
// wrapped to name op and the database.
func (s *Store) retry(ctx context.Context, op string, attempt func() (step, error)) error {
	backoff := minBackoff
	for {
		at, err := attempt()
		switch {
		case err == nil:
			return nil
		case isBusy(err):
			// Another connection held the lock longer than busy_timeout,
			// or SQLite refused to wait (it does while a new database
			// switches to WAL): start over after a jittered pause.
		case at == stepPass && !isCorrupt(err):
			return err
		case at == stepBegin && ctx.Err() != nil:
			// The driver's busy handler gave up waiting for the lock.
			return s.waitErr(ctx, op)
		case ctx.Err() != nil:
			// Cancelled mid-transaction: database/sql rolled it back and
			// reports "transaction has already been committed or rolled
			// back"; the cause the caller can act on is the context.
			return fmt.Errorf("%s on %s: %w", op, s.path, ctx.Err())
		default:
			return s.wrap(op, err)
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return s.waitErr(ctx, op)
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (s *Store) waitErr(ctx context.Context, op string) error {
	return fmt.Errorf("%s: gave up waiting for state database %s, in use by another netops process: %w", op, s.path, ctx.Err())
}

// attempt runs one transaction.
func attempt(ctx context.Context, db *sql.DB, opts *sql.TxOptions, passFnErr bool, fn func(tx *sql.Tx) error) (step, error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return stepBegin, err
	}
	// Also releases the lock if fn panics; a no-op after Commit.
	defer tx.Rollback() //nolint:errcheck
	if err := fn(tx); err != nil {
		if passFnErr {
			return stepPass, err
		}
		return stepFn, err
	}
	if opts != nil && opts.ReadOnly {
		return stepCommit, tx.Rollback()
	}
	return stepCommit, tx.Commit()
}
