//go:build unix

package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// Two queues on one file stand for two processes: flock(2) locks belong to
// the open file description, so they exclude each other in one process too.
func TestWriterQueueExcludesAndHandsOver(t *testing.T) {
	db := filepath.Join(t.TempDir(), FileName)
	a, b := openWriterQueue(db), openWriterQueue(db)
	defer a.close()
	defer b.close()
	leaveA := a.enter(context.Background())
	if a.f == nil {
		t.Fatal("queue file not opened by the first write")
	}
	entered := make(chan func())
	go func() { entered <- b.enter(context.Background()) }()
	select {
	case <-entered:
		t.Fatal("second writer entered the queue while the first held it")
	case <-time.After(50 * time.Millisecond):
	}
	leaveA()
	leaveB := <-entered // must come once A left; a hang fails the test by timeout
	leaveB()
}

func TestWriterQueueGivesUpWithContext(t *testing.T) {
	db := filepath.Join(t.TempDir(), FileName)
	a, b, c := openWriterQueue(db), openWriterQueue(db), openWriterQueue(db)
	defer a.close()
	defer b.close()
	defer c.close()
	leaveA := a.enter(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		b.enter(ctx)() // gives up: returns without the lock
		close(done)
	}()
	cancel()
	<-done
	leaveA()
	// B's pending lock, granted after A left, must be let go by itself.
	c.enter(context.Background())() // opens c's file
	for deadline := time.Now().Add(10 * time.Second); !tryLockFile(c.f.Fd()); {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned wait kept the queue locked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	unlockFile(c.f.Fd())
}

func TestStoreWithoutQueueFileStillWorks(t *testing.T) {
	q := &writerQueue{}
	q.enter(context.Background())()
	if err := q.close(); err != nil {
		t.Fatal(err)
	}
	var nilq *writerQueue
	nilq.enter(context.Background())()
}
