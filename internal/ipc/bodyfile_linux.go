//go:build linux

package ipc

import (
	"os"

	"golang.org/x/sys/unix"
)

// bodyFile returns a file holding body, positioned at its start, for a
// handler's stdin: the handler reads the whole body even if the consumer
// dies meanwhile (with a pipe fed by the consumer, a killed consumer would
// hand the handler a truncated body). On Linux it is a memfd: no disk.
func bodyFile(body []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("netops-message", unix.MFD_CLOEXEC)
	if err != nil {
		return tempBodyFile(body)
	}
	return fillBodyFile(os.NewFile(uintptr(fd), "netops-message"), body)
}
