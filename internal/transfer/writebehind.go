package transfer

import (
	"io"
	"sync/atomic"
)

// Write-behind for downloads into a local file: pkg/sftp's WriteTo hands
// the data to one writer goroutine in order; copying it into 1 MiB buffers
// there and writing and hashing them in another goroutine lets the network
// side go on while the disk and the SHA-256 work. Memory: at most
// writeBehindBufs x writeBehindSize per file.
const (
	writeBehindSize = 1 << 20
	writeBehindBufs = 4
)

type writeBehind struct {
	file io.Writer // the local file: what lands there is the prefix
	hash io.Writer // then the hash of exactly what landed

	ch        chan []byte
	free      chan []byte
	allocated int
	buf       []byte
	done      chan struct{}
	failed    atomic.Bool
	err       error // set by the writer goroutine before done closes
	closed    bool
}

func newWriteBehind(file, hash io.Writer) *writeBehind {
	b := &writeBehind{file: file, hash: hash, ch: make(chan []byte, writeBehindBufs),
		free: make(chan []byte, writeBehindBufs), done: make(chan struct{})}
	go b.run()
	return b
}

func (b *writeBehind) run() {
	defer close(b.done)
	for buf := range b.ch {
		if b.err == nil {
			if _, err := b.file.Write(buf); err != nil {
				b.err = err
				b.failed.Store(true)
			} else {
				_, _ = b.hash.Write(buf)
			}
		}
		b.free <- buf[:0]
	}
}

// Write queues p; it fails once the file could not be written.
func (b *writeBehind) Write(p []byte) (int, error) {
	if b.failed.Load() {
		return 0, b.wait()
	}
	n := len(p)
	for len(p) > 0 {
		if b.buf == nil {
			if b.allocated < writeBehindBufs {
				select {
				case b.buf = <-b.free:
				default:
					b.buf = make([]byte, 0, writeBehindSize)
					b.allocated++
				}
			} else {
				b.buf = <-b.free
			}
		}
		k := copy(b.buf[len(b.buf):cap(b.buf)], p)
		b.buf = b.buf[:len(b.buf)+k]
		p = p[k:]
		if len(b.buf) == cap(b.buf) {
			b.ch <- b.buf
			b.buf = nil
		}
	}
	return n, nil
}

// Close writes what is queued (in order: it is valid data even when the
// source failed after it) and returns the first write error.
func (b *writeBehind) Close() error {
	if !b.closed {
		b.closed = true
		if len(b.buf) > 0 {
			b.ch <- b.buf
			b.buf = nil
		}
		close(b.ch)
	}
	return b.wait()
}

func (b *writeBehind) wait() error {
	if !b.closed {
		// A write error while queueing: stop the writer and wait for it.
		b.closed = true
		close(b.ch)
	}
	<-b.done
	return b.err
}
