//go:build linux

package fsutil

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// WatchBell returns a channel closed when the bell at path rings after
// rung (its BellTime when the caller read it, before its own look at the
// state the bell guards), and a
// function that stops the watch. On Linux it uses inotify: no polling, and
// the read is cancellable because the inotify descriptor goes through the
// runtime's poller. It returns a nil channel when inotify is not available;
// the caller then polls.
//
// Closing an inotify descriptor waits for the kernel to destroy its watch
// (an RCU grace period, often milliseconds), so stop closes it in a
// goroutine instead of delaying the waiter's next look; that goroutine and
// the reading one end as soon as the close is done.
func WatchBell(path string, rung time.Time) (<-chan struct{}, func()) {
	// The watch needs the file.
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, func() {}
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_ATTRIB|unix.IN_MODIFY|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF); err != nil {
		unix.Close(fd)
		return nil, func() {}
	}
	f := os.NewFile(uintptr(fd), "inotify "+path) // non-blocking: pollable
	rang := make(chan struct{})
	// A ring between the caller's read of the bell and the watch.
	if !BellTime(path).Equal(rung) {
		go f.Close()
		close(rang)
		return rang, func() {}
	}
	go func() {
		buf := make([]byte, 4096)
		if n, err := f.Read(buf); err == nil && n > 0 {
			close(rang)
		}
	}()
	return rang, func() {
		go f.Close() // also ends the Read
	}
}
