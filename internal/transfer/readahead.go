package transfer

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"sync"
	"sync/atomic"
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

// readAhead reads r in its own goroutine, writes every chunk to sink (the
// whole-file hash, progress, bandwidth limit) before handing it on, and,
// when seg > 0, keeps the SHA-256 of each seg-sized segment (seg a multiple
// of readAheadChunk).
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
	noSums    atomic.Bool

	mu   sync.Mutex
	sums []string
}

func newReadAhead(r io.Reader, sink io.Writer, seg int64) *readAhead {
	ra := &readAhead{
		ch:   make(chan raChunk, readAheadDepth),
		free: make(chan []byte, readAheadDepth+2),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go ra.produce(r, sink, seg)
	return ra
}

func (ra *readAhead) produce(r io.Reader, sink io.Writer, seg int64) {
	defer close(ra.done)
	defer close(ra.ch)
	var sh hash.Hash
	if seg > 0 {
		sh = sha256.New()
	}
	var off int64
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
		if sh != nil && ra.noSums.Load() {
			sh = nil
		}
		if n > 0 {
			if _, werr := sink.Write(buf[:n]); werr != nil {
				err = werr
			}
			for rem := buf[:n]; sh != nil && len(rem) > 0; {
				take := min(int64(len(rem)), seg-off%seg)
				sh.Write(rem[:take])
				off += take
				rem = rem[take:]
				if off%seg == 0 {
					ra.addSum(sh)
				}
			}
		}
		if err == io.EOF && sh != nil && off%seg != 0 {
			ra.addSum(sh)
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

func (ra *readAhead) addSum(h hash.Hash) {
	ra.mu.Lock()
	ra.sums = append(ra.sums, hex.EncodeToString(h.Sum(nil)))
	ra.mu.Unlock()
	h.Reset()
}

// stopSegmentSums stops hashing segments (no range checks will want them).
func (ra *readAhead) stopSegmentSums() { ra.noSums.Store(true) }

// segmentSum returns the SHA-256 of segment k once the producer has read it.
func (ra *readAhead) segmentSum(k int) (string, bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if k < len(ra.sums) {
		return ra.sums[k], true
	}
	return "", false
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
