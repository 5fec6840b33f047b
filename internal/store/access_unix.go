//go:build unix

package store

import "syscall"

// checkWritable reports whether this process may create files in dir.
func checkWritable(dir string) error {
	const wOK, xOK = 0x2, 0x1 // access(2) W_OK, X_OK
	return syscall.Access(dir, wOK|xOK)
}
