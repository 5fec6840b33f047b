package transfer

import (
	"io"
	"sync"
)

// Read-ahead for uploads: pkg/sftp sends from a single goroutine that reads
// the source, encrypts and writes each packet. Reading and hashing the
// source in another goroutine takes them off that path, so on a machine
// with more than one core the SHA-256 costs no wall time. Memory per file:
// (readAheadDepth + 2) x readAheadChunk.
const (
	readAheadChunk = 256 << 10
	readAheadDepth = 4
)

type raChunk struct {
	b   []byte
	err error
}

// readAhead reads r in its own goroutine and writes every chunk to sink
// (the whole-file hash, progress, bandwidth limit) before handing it on.
type readAhead struct {
	ch   chan raChunk
	free chan []byte
	stop chan struct{}
	done chan struct{}
	once sync.Once

	cur     []byte
	curBuf  []byte
	pending error

	allocated int // buffers made so far (producer only)
}

func newReadAhead(r io.Reader, sink io.Writer) *readAhead {
	ra := &readAhead{
		ch:   make(chan raChunk, readAheadDepth),
		free: make(chan []byte, readAheadDepth+2),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go ra.produce(r, sink)
	return ra
}

func (ra *readAhead) produce(r io.Reader, sink io.Writer) {
	defer close(ra.done)
	defer close(ra.ch)
	for {
		var buf []byte
		if ra.allocated < readAheadDepth+2 {
			// Buffers are made as needed: a short file never gets them all.
			select {
			case buf = <-ra.free:
			default:
				buf = make([]byte, readAheadChunk)
				ra.allocated++
			}
		} else {
			select {
			case buf = <-ra.free:
			case <-ra.stop:
				return
			}
		}
		n, err := io.ReadFull(r, buf)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if n > 0 {
			if _, werr := sink.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		select {
		case ra.ch <- raChunk{b: buf[:n], err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.pending != nil {
			return 0, ra.pending
		}
		if ra.curBuf != nil {
			ra.free <- ra.curBuf[:cap(ra.curBuf)]
			ra.curBuf = nil
		}
		c, ok := <-ra.ch
		if !ok {
			return 0, io.EOF
		}
		ra.cur, ra.curBuf, ra.pending = c.b, c.b, c.err
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the producer and waits for it.
func (ra *readAhead) Close() {
	ra.once.Do(func() { close(ra.stop) })
	<-ra.done
}
