package transfer

import (
	"context"
	"sync"
)

// RangeHasher is an optional FS capability: the SHA-256 of n bytes of p from
// off (off a multiple of block), computed where p lives. n may run past the
// end of the file (the last segment).
type RangeHasher interface {
	SHA256Range(ctx context.Context, p string, off, n, block int64) (string, error)
}

// hashBlock is the block size of range hashes: segments are multiples of it.
const hashBlock = 1 << 20

// segmentVerifier verifies an upload over a slow link (see fastLinkRate)
// while it runs: every segment the server has acknowledged is hashed on the
// server in the background and compared with the SHA-256 of the same bytes
// as read from the source, so verification overlaps the transfer instead of
// being a second pass at the end. It is an optimization only: any error or mismatch sends the caller to
// the whole-file check, which decides.
type segmentVerifier struct {
	hs   RangeHasher
	path string
	sem  chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	failed bool
	bytes  int64 // verified so far
}

func newSegmentVerifier(hs RangeHasher, p string) *segmentVerifier {
	return &segmentVerifier{hs: hs, path: p, sem: make(chan struct{}, 2)}
}

// check hashes [off, off+n) on the server in the background.
func (v *segmentVerifier) check(ctx context.Context, off, n int64, wantHex string) {
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		select {
		case v.sem <- struct{}{}:
		case <-ctx.Done():
			v.fail()
			return
		}
		defer func() { <-v.sem }()
		v.mu.Lock()
		failed := v.failed
		v.mu.Unlock()
		if failed {
			return
		}
		got, err := v.hs.SHA256Range(ctx, v.path, off, n, hashBlock)
		if err != nil || got != wantHex {
			v.fail()
			return
		}
		v.mu.Lock()
		v.bytes += n
		v.mu.Unlock()
	}()
}

func (v *segmentVerifier) fail() {
	v.mu.Lock()
	v.failed = true
	v.mu.Unlock()
}

// wait returns whether every segment checked so far matched, and how many
// bytes they cover.
func (v *segmentVerifier) wait() (ok bool, verified int64) {
	v.wg.Wait()
	v.mu.Lock()
	defer v.mu.Unlock()
	return !v.failed, v.bytes
}
