package local_test

import (
	"sync"
	"testing"

	"github.com/netops-dev/netops/internal/lock"
	"github.com/netops-dev/netops/internal/lock/local"
	"github.com/netops-dev/netops/internal/lock/locktest"
	"github.com/netops-dev/netops/internal/store"
)

// openLocker opens the store in dir and a Locker on it, both closed when t
// ends (the Locker first: cleanups run last-registered first).
func openLocker(t testing.TB, dir string) *local.Locker {
	t.Helper()
	st, err := store.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return local.New(st, dir)
}

func TestConformance(t *testing.T) {
	// Every Locker of one subtest opens the same state directory, as
	// separate processes on the host would.
	var mu sync.Mutex
	dirs := map[*testing.T]string{}
	locktest.Run(t, func(t *testing.T) lock.Locker {
		mu.Lock()
		dir, ok := dirs[t]
		if !ok {
			dir = t.TempDir()
			dirs[t] = dir
		}
		mu.Unlock()
		return openLocker(t, dir)
	})
}
