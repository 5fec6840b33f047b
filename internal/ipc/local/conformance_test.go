package local_test

import (
	"sync"
	"testing"

	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/ipc/ipctest"
	"github.com/netops-dev/netops/internal/ipc/local"
	"github.com/netops-dev/netops/internal/store"
)

// openBackend opens the store in dir and a Backend on it, both closed when
// t ends.
func openBackend(t testing.TB, dir string) *local.Backend {
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
	// Every Backend of one subtest opens the same state directory, as
	// separate processes on the host would.
	var mu sync.Mutex
	dirs := map[*testing.T]string{}
	ipctest.Run(t, func(t *testing.T) ipc.Backend {
		mu.Lock()
		dir, ok := dirs[t]
		if !ok {
			dir = t.TempDir()
			dirs[t] = dir
		}
		mu.Unlock()
		return openBackend(t, dir)
	})
}
