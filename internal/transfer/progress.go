package transfer

import (
	"context"
	"io"
	"sync"
	"time"
)

// EventKind tells what an Event reports.
type EventKind int

// Event kinds.
const (
	// EventPlan: the run knows its work: TotalFiles files, TotalBytes bytes.
	EventPlan EventKind = iota
	// EventFileStart: a file starts (Done > 0 when it resumes).
	EventFileStart
	// EventFileProgress: Done bytes of the file are through.
	EventFileProgress
	// EventFileDone: a file finished; Err set when it failed.
	EventFileDone
	// EventRetry: a file failed with Err and is tried again (Attempt).
	EventRetry
)

// Event is a progress report. Progress callbacks are called from several
// goroutines; they must be quick and safe for concurrent use.
type Event struct {
	Kind       EventKind
	Path       string
	Size       int64 // file size, -1 unknown
	Done       int64 // bytes of the file done
	Delta      int64 // bytes since the last event of this file
	TotalFiles int
	TotalBytes int64
	Attempt    int
	Err        error
}

// progressCounter is an io.Writer on the data path that reports progress
// at most every 64 KiB.
type progressCounter struct {
	c       *copier
	path    string
	size    int64
	done    int64
	pending int64
}

func (p *progressCounter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	p.pending += int64(len(b))
	if p.pending >= 64<<10 || (p.size >= 0 && p.done >= p.size) {
		p.c.emit(Event{Kind: EventFileProgress, Path: p.path, Size: p.size, Done: p.done, Delta: p.pending})
		p.pending = 0
	}
	return len(b), nil
}

// limiter paces the bytes of one run to rate bytes per second (shared by
// its workers), with a burst of 100 ms worth.
type limiter struct {
	rate int64
	mu   sync.Mutex
	tat  time.Time // theoretical arrival time of the next byte
}

func newLimiter(rate int64) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{rate: rate}
}

func (l *limiter) wait(ctx context.Context, n int) error {
	l.mu.Lock()
	now := time.Now()
	if l.tat.Before(now) {
		l.tat = now
	}
	l.tat = l.tat.Add(time.Duration(float64(n) / float64(l.rate) * float64(time.Second)))
	d := l.tat.Sub(now) - 100*time.Millisecond
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return sleepCtx(ctx, d)
}

// limitWriter is an io.Writer on the data path that blocks to keep the rate.
type limitWriter struct {
	ctx context.Context
	l   *limiter
}

func (w limitWriter) Write(b []byte) (int, error) {
	if err := w.l.wait(w.ctx, len(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// limitReader paces reads: each Read returns at most a tenth of a second's
// worth (at least 1 KiB), after waiting for it, so a limited transfer moves
// steadily instead of in bursts.
type limitReader struct {
	ctx context.Context
	l   *limiter
	r   io.Reader
}

func (lr *limitReader) Read(p []byte) (int, error) {
	if max := max(lr.l.rate/10, 1<<10); int64(len(p)) > max {
		p = p[:max]
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.wait(lr.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
