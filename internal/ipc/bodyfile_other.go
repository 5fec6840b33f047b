//go:build !linux

package ipc

import "os"

// bodyFile returns a file holding body, positioned at its start, for a
// handler's stdin (see the Linux version).
func bodyFile(body []byte) (*os.File, error) { return tempBodyFile(body) }
