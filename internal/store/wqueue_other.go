//go:build !unix

package store

// Without flock(2) there is no writer queue: writers meet SQLite's locking.
func tryLockFile(uintptr) bool { return false }
func lockFile(uintptr) bool    { return false }
func unlockFile(uintptr)       {}
