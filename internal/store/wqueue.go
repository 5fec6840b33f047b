package store

import (
	"context"
	"os"
	"time"
)

// WriterQueueSuffix names the file, beside the database, whose kernel lock
// queues the write transactions of netops processes (see writerQueue).
const WriterQueueSuffix = "-writers"

// maxQueueWait bounds a wait in the writer queue. Past it the writer goes
// on without the queue and meets SQLite's own locking (busy_timeout), so a
// stuck process holding the queue costs others this much, not a failure.
const maxQueueWait = 10 * time.Second

// writerQueue lines up the write transactions of the netops processes that
// share a database on an exclusive kernel file lock. SQLite's busy handler
// waits for its write lock by sleeping 1, 2, 5, 10, 15, 20... ms between
// tries, so under contention a hand-off between processes took 5-25 ms of
// sleep for a transaction of a fraction of a millisecond; a writer blocked
// in flock(2) is woken the moment the holder unlocks. The queue is only an
// accelerator: correctness rests on SQLite's locking alone, so a writer
// that cannot use the queue (no lock file, a wait past maxQueueWait, a
// cancelled context) goes on without it.
//
// The file is opened (created, 0600) by the first write, so processes that
// only read never touch it. enter runs one at a time per Store (under its
// wsem), close after the last.
type writerQueue struct {
	path   string
	opened bool
	f      *os.File // nil: no queue
}

// openWriterQueue returns the queue of the database at dbPath. Without its
// file the store works as before, only slower under load.
func openWriterQueue(dbPath string) *writerQueue {
	return &writerQueue{path: dbPath + WriterQueueSuffix}
}

// enter waits for the queue, at most until ctx is done or maxQueueWait
// passes, and returns the function that leaves it.
func (q *writerQueue) enter(ctx context.Context) (leave func()) {
	noop := func() {}
	if q == nil {
		return noop
	}
	if !q.opened {
		q.opened = true
		if f, err := os.OpenFile(q.path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
			q.f = f
		}
	}
	if q.f == nil {
		return noop
	}
	fd := q.f.Fd()
	if tryLockFile(fd) {
		return func() { unlockFile(fd) }
	}
	got := make(chan bool, 1)
	go func() { got <- lockFile(fd) }()
	t := time.NewTimer(maxQueueWait)
	defer t.Stop()
	select {
	case ok := <-got:
		if !ok {
			return noop
		}
		return func() { unlockFile(fd) }
	case <-ctx.Done():
	case <-t.C:
	}
	// Given up: leave the queue as soon as the pending lock is granted.
	go func() {
		if <-got {
			unlockFile(fd)
		}
	}()
	return noop
}

func (q *writerQueue) close() error {
	if q == nil || q.f == nil {
		return nil
	}
	return q.f.Close()
}
