//go:build unix

package local

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// createLockFile creates path (mode 0600; it must not exist) and takes an
// exclusive flock on it, held until the returned file is closed: by the
// kernel too, when the process dies.
func createLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// fileHeld reports whether a live process holds the exclusive flock on the
// lock file at path. A missing file has no owner. When the file cannot be
// checked (permissions, I/O error), fileHeld answers true: a ticket is
// never declared dead on a doubt.
func fileHeld(path string) bool {
	if path == "" {
		return false
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	defer f.Close()
	// A shared lock does not conflict with other checkers or watchers,
	// only with the owner's exclusive lock.
	err = flock(f, unix.LOCK_SH|unix.LOCK_NB)
	return err != nil
}

// waitUnlocked blocks until nobody holds an exclusive flock on f.
func waitUnlocked(f *os.File) {
	_ = flock(f, unix.LOCK_SH)
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}
