//go:build unix

package store

import (
	"errors"
	"syscall"
)

func tryLockFile(fd uintptr) bool {
	return syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

func lockFile(fd uintptr) bool {
	for {
		err := syscall.Flock(int(fd), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err == nil
		}
	}
}

func unlockFile(fd uintptr) { _ = syscall.Flock(int(fd), syscall.LOCK_UN) }
