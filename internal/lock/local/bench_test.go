package local_test

import (
	"sync"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/lock"
)

// BenchmarkAcquireRelease measures an uncontended acquire + release in one
// process: a lease (`lock acquire`), and a session grant with its lock file
// (`lock run`).
func BenchmarkAcquireRelease(b *testing.B) {
	for _, session := range []bool{false, true} {
		name := "lease"
		if session {
			name = "session"
		}
		b.Run(name, func(b *testing.B) {
			state := b.TempDir()
			l := openLocker(b, state)
			ctx := b.Context()
			r := lock.Request{Name: "bench", Mode: lock.Exclusive, Holder: lock.Holder{Owner: "b"}, Session: session}
			for b.Loop() {
				if _, err := l.Acquire(ctx, r); err != nil {
					b.Fatal(err)
				}
				if err := l.Release(ctx, r.Name, r.Owner); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acquire+release/s")
		})
	}
}

// BenchmarkHandoff measures a contended exclusive lock: two Lockers (as two
// processes) take turns, each waiting for the other's release; the time per
// grant includes the waiter's wake-up.
func BenchmarkHandoff(b *testing.B) {
	state := b.TempDir()
	ls := []lock.Locker{openLocker(b, state), openLocker(b, state)}
	ctx := b.Context()
	var wg sync.WaitGroup
	turns := make(chan struct{}, b.N)
	for range b.N {
		turns <- struct{}{}
	}
	close(turns)
	start := time.Now()
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := lock.Request{Name: "bench", Mode: lock.Exclusive, Holder: lock.Holder{Owner: string(rune('a' + i))},
				Session: true, Wait: lock.WaitForever}
			for range turns {
				if _, err := l.Acquire(ctx, r); err != nil {
					b.Error(err)
					return
				}
				if err := l.Release(ctx, r.Name, r.Owner); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "grants/s")
}

// BenchmarkWakeAfterRelease measures how soon a waiter holds the lock after
// the holder's Release starts: behind a session grant (the waiter blocks on
// the holder's lock file) and behind a lease without session (no process to
// watch: the waiter polls, backing off to 50 ms).
func BenchmarkWakeAfterRelease(b *testing.B) {
	for _, session := range []bool{true, false} {
		name := "session"
		if !session {
			name = "lease"
		}
		b.Run(name, func(b *testing.B) {
			state := b.TempDir()
			holder, waiter := openLocker(b, state), openLocker(b, state)
			ctx := b.Context()
			h := lock.Request{Name: "bench", Mode: lock.Exclusive, Holder: lock.Holder{Owner: "h"}, Session: session}
			w := lock.Request{Name: "bench", Mode: lock.Exclusive, Holder: lock.Holder{Owner: "w"}, Wait: lock.WaitForever}
			var total time.Duration
			for b.Loop() {
				if _, err := holder.Acquire(ctx, h); err != nil {
					b.Fatal(err)
				}
				done := make(chan time.Time, 1)
				go func() {
					if _, err := waiter.Acquire(ctx, w); err != nil {
						b.Error(err)
					}
					done <- time.Now()
				}()
				for {
					sts, err := holder.Status(ctx, "bench")
					if err != nil {
						b.Fatal(err)
					}
					if len(sts[0].Waiters) == 1 {
						break
					}
					time.Sleep(time.Millisecond)
				}
				// Let the waiter settle into its wait (and its poll back off).
				time.Sleep(100 * time.Millisecond)
				start := time.Now()
				if err := holder.Release(ctx, h.Name, h.Owner); err != nil {
					b.Fatal(err)
				}
				total += (<-done).Sub(start)
				if err := waiter.Release(ctx, w.Name, w.Owner); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-to-grant")
		})
	}
}
