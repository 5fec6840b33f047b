package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"time"
)

// A bell is an empty file whose modification time announces a change to
// processes waiting for it (a lock freed, a message queued): Ring touches
// it, BellTime reads it, WatchBell waits for the next ring without polling
// where the system allows. Bells are best effort: a waiter that misses a
// ring must look again after a while on its own.

// BellTime returns when the bell at path last rang (zero if it never did).
func BellTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// Ring rings the bell at path, creating it (0600, its directory 0700) when
// needed. Errors are ignored: see the package note on bells.
func Ring(path string) {
	now := time.Now()
	if err := os.Chtimes(path, now, now); err == nil || !errors.Is(err, os.ErrNotExist) {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
		_ = os.Chtimes(path, now, now)
	}
}
