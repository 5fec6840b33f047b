package transfer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
)

// tempMarker is part of every temporary file name; listings skip such files
// so sync never copies or deletes another run's temporary file.
const tempMarker = ".netops-tmp-"

// IsTemp reports whether a base name is a netops temporary file.
func IsTemp(base string) bool {
	return strings.HasPrefix(base, ".") && strings.Contains(base, tempMarker)
}

func tempName(final string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return path.Join(path.Dir(final), "."+path.Base(final)+tempMarker+hex.EncodeToString(b[:]))
}

// segmentSize is how much of an upload goes out between two journal
// checkpoints: a killed upload re-sends at most this much. It is also how
// far behind the transfer the server's hash of a verified upload runs (see
// StreamHasher).
const segmentSize = 32 << 20

// journalMin is the size from which a file is journaled as soon as it
// starts, so even a killed run (no chance to clean up) leaves the next one
// a temporary file to resume (a download's local temporary file is its
// own record of progress, written in order).
const journalMin = 16 << 20

// fileJob is one file to copy.
type fileJob struct {
	Rel     string // shown in receipts and messages
	Src     string // path in the source FS
	Dst     string // final path in the destination FS
	Info    Info   // the source as listed
	Expect  string // expected SHA-256 of the source ("" none)
	Journal string // journal key ("" no journal)
}

// attemptState carries what one attempt leaves for the next: the temporary
// file and how much of it is known good.
type attemptState struct {
	temp    string
	offset  int64
	srcSize int64
	srcMod  time.Time
	// validator of an HTTP source's first response (If-Range).
	validator string
	// keep is set when the temporary file is worth keeping for a resume.
	keep bool
}

// copier copies single files between two connections.
type copier struct {
	src, dst *conn
	o        *Options
	limit    *limiter
	journal  *journal
}

// Verification methods in receipts.
const (
	VerifiedRemote = "remote-sha256sum"
	// VerifiedStream: an upload hashed on the server as it landed (read
	// back from the server's file a segment behind the transfer, one
	// openssl dgst or sha256sum over the whole file), overlapping it.
	VerifiedStream = "remote-sha256sum-stream"
	// VerifiedSource: a download into a local file; the source was hashed
	// on its server (openssl or sha256sum over SSH exec) while the data
	// moved, and matched the SHA-256 of the bytes written to the local file.
	VerifiedSource   = "source-sha256sum"
	VerifiedReadBack = "read-back"
	VerifiedNone     = "none"
)

// copyFile copies one file with retries; it returns the receipt (Error set on
// failure) and the error.
func (c *copier) copyFile(ctx context.Context, j fileJob) (Receipt, error) {
	start := time.Now()
	rec := Receipt{Path: j.Rel, Op: OpCopy, Size: j.Info.Size, ResumedFrom: -1}
	st := &attemptState{}
	if j.Journal != "" && c.journal != nil {
		if e, ok := c.journal.load(j.Journal); ok && e.Src == j.Src && e.Dst == j.Dst &&
			e.SrcSize == j.Info.Size && e.SrcModTime.Equal(j.Info.ModTime) {
			st.temp, st.offset, st.srcSize, st.srcMod, st.validator = e.Temp, e.Offset, e.SrcSize, e.SrcModTime, e.Validator
		}
	}
	var err error
	for attempt := 0; ; attempt++ {
		rec.Attempts = attempt + 1
		var sent, from int64
		sent, from, err = c.attempt(ctx, j, st, &rec)
		rec.BytesSent += sent
		if from > 0 && rec.ResumedFrom < 0 {
			rec.ResumedFrom = from
		}
		if err == nil {
			break
		}
		if !c.retryable(err) || attempt >= c.o.Retries || ctx.Err() != nil {
			break
		}
		c.emit(Event{Kind: EventRetry, Path: j.Rel, Err: err, Attempt: attempt + 1})
		if d := backoff(c.o.Backoff, attempt); sleepCtx(ctx, d) != nil {
			err = ctx.Err()
			break
		}
	}
	if rec.ResumedFrom < 0 {
		rec.ResumedFrom = 0
	}
	rec.Duration = time.Since(start)
	if err != nil {
		c.abandon(ctx, j, st, err)
		rec.Error = err.Error()
		return rec, err
	}
	if c.journal != nil && j.Journal != "" {
		c.journal.remove(j.Journal)
	}
	return rec, nil
}

// abandon cleans up after a failed file: the temporary file is removed
// unless it holds a resumable prefix (a connection failure or an
// interruption), in which case it and its journal entry stay for the next
// run.
func (c *copier) abandon(ctx context.Context, j fileJob, st *attemptState, err error) {
	if st.temp == "" {
		return
	}
	keep := st.keep && st.offset > 0 && c.journal != nil && j.Journal != "" &&
		(c.retryable(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
	if keep {
		c.journal.save(j.Journal, journalEntry{Src: j.Src, Dst: j.Dst, Temp: st.temp, Offset: st.offset,
			SrcSize: st.srcSize, SrcModTime: st.srcMod, Validator: st.validator})
		return
	}
	if c.journal != nil && j.Journal != "" {
		c.journal.remove(j.Journal)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if dfs, _, derr := c.dst.get(cctx); derr == nil {
		_ = dfs.(WritableFS).Remove(cctx, st.temp)
	}
	st.temp = ""
}

// attempt is one try at a file. It returns the bytes moved and the offset
// it resumed from.
func (c *copier) attempt(ctx context.Context, j fileJob, st *attemptState, rec *Receipt) (sent, resumedFrom int64, err error) {
	sfs, sgen, err := c.src.get(ctx)
	if err != nil {
		return 0, 0, err
	}
	dfsAny, dgen, err := c.dst.get(ctx)
	if err != nil {
		return 0, 0, err
	}
	dfs := dfsAny.(WritableFS)
	defer func() {
		if err != nil && isConnErr(err) {
			c.src.reset(sgen)
			c.dst.reset(dgen)
		}
	}()
	offset := st.offset
	if st.temp == "" {
		st.temp, st.offset, offset = tempName(j.Dst), 0, 0
	} else {
		// Is the kept prefix still there? A local destination's file is
		// written in order, so its size is the prefix; a remote one holds
		// at least the journaled offset.
		ti, serr := dfs.Stat(ctx, st.temp)
		switch {
		case serr != nil:
			offset = 0
		case isLocal(dfs):
			offset = ti.Size
		case ti.Size < offset:
			offset = ti.Size
		}
	}
	if offset > 0 && isHTTP(sfs) && st.validator == "" {
		offset = 0 // without ETag or Last-Modified a resume could splice two versions
	}
	r, err := openSource(ctx, sfs, j.Src, offset, st.validator)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", j.Src, err)
	}
	defer r.Close()
	if offset > 0 && !isHTTP(sfs) && (r.Size != st.srcSize || !r.ModTime.Equal(st.srcMod)) {
		// The source changed since the prefix was sent: start over.
		r.Close()
		offset = 0
		if r, err = sfs.Open(ctx, j.Src, 0); err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", j.Src, err)
		}
		defer r.Close()
	}
	if r.Offset < offset {
		offset = r.Offset // the server sent more than asked (HTTP 200): take it all
	}
	st.srcSize, st.srcMod = r.Size, r.ModTime
	if r.Offset == 0 {
		st.validator = r.Validator
	}
	h := sha256.New()
	prefixFromDest := false
	if offset > 0 {
		// Rebuild the streaming SHA-256 state for the prefix from whichever
		// side is local (no network traffic). With neither (SFTP to SFTP,
		// HTTP to SFTP), read the source's prefix again to hash it: that
		// costs reading it, not sending it again; the destination's prefix
		// is checked by the final hash of the landed file.
		switch {
		case isLocal(sfs):
			err = hashPrefix(ctx, sfs, j.Src, offset, h)
		case isLocal(dfs):
			err = hashPrefix(ctx, dfs, st.temp, offset, h)
			prefixFromDest = true
		default:
			err = hashPrefix(ctx, sfs, j.Src, offset, h)
		}
		if err != nil {
			h.Reset()
			prefixFromDest = false
			r.Close()
			offset = 0
			if r, err = sfs.Open(ctx, j.Src, 0); err != nil {
				return 0, 0, fmt.Errorf("read %s: %w", j.Src, err)
			}
			defer r.Close()
		}
	}
	w, err := dfs.Create(ctx, st.temp, offset)
	if err != nil {
		st.temp = ""
		return 0, 0, fmt.Errorf("write %s: %w", j.Dst, destErr(err))
	}
	st.keep = true
	if c.journal != nil && j.Journal != "" && (r.Size < 0 || r.Size >= journalMin) {
		c.journal.checkpoint(j.Journal, journalEntry{Src: j.Src, Dst: j.Dst, Temp: st.temp, Offset: offset,
			SrcSize: st.srcSize, SrcModTime: st.srcMod, Validator: st.validator})
	}
	closed := false
	defer func() {
		if !closed {
			_ = w.Close()
		}
	}()
	c.emit(Event{Kind: EventFileStart, Path: j.Rel, Size: r.Size, Done: offset})
	srcSum := c.hashSourceBehind(ctx, sfs, dfs, j.Src, r.Size)
	defer srcSum.stop()
	prog := &progressCounter{c: c, path: j.Rel, size: r.Size, done: offset}
	n, feed, err := c.stream(ctx, dfs, r, w, h, prog, j, st, offset)
	if feed != nil {
		defer feed.Close() // no remote hash outlives the attempt
	}
	st.offset = w.Offset()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return n, offset, c.wrapStreamErr(j, err)
	}
	total := offset + n
	if r.Size >= 0 && total != r.Size {
		st.keep = false
		return n, offset, fmt.Errorf("read %s: got %d bytes, expected %d: %w", j.Src, total, r.Size, ErrSourceChanged)
	}
	rec.Size = total
	sum := hex.EncodeToString(h.Sum(nil))
	rec.SHA256 = sum
	// The landed copy is hashed (the last segment of a streamed hash, else
	// the whole file) while it is fsynced: the hash reads what the file
	// system holds (its cache), the fsync waits for the disk. A download
	// whose source was hashed on its server meanwhile uses that digest
	// instead. A streamed hash that failed or differs is only a missed
	// shortcut: the whole-file hash decides.
	var (
		got, how  string
		verifyErr error
	)
	verified := make(chan struct{})
	go func() {
		defer close(verified)
		if !c.o.Verify {
			return
		}
		if feed != nil {
			if s, err := feed.Sum(ctx); err == nil && s == sum {
				got, how = s, VerifiedStream
				return
			}
		}
		if got = srcSum.wait(); got != "" {
			how = VerifiedSource
			return
		}
		got, how, verifyErr = landedSHA256(ctx, dfs, st.temp, total)
	}()
	synced := w.Sync()
	<-verified
	if synced != nil && !errors.Is(synced, errors.ErrUnsupported) {
		return n, offset, fmt.Errorf("write %s: %w", j.Dst, destErr(synced))
	}
	closed = true
	if err := w.Close(); err != nil {
		return n, offset, fmt.Errorf("write %s: %w", j.Dst, destErr(err))
	}
	st.keep = false // from here on a failure means the data is wrong
	if j.Expect != "" && !strings.EqualFold(j.Expect, sum) {
		return n, offset, fmt.Errorf("%s: source SHA-256 is %s, expected %s: %w", j.Src, sum, strings.ToLower(j.Expect), ErrChecksum)
	}
	rec.Verified = VerifiedNone
	if c.o.Verify {
		if verifyErr != nil {
			return n, offset, fmt.Errorf("verify %s: %w", j.Dst, verifyErr)
		}
		if got != sum && how == VerifiedSource {
			return n, offset, fmt.Errorf("verify %s: %s landed, the source hashes to %s (changed while it was copied?): %w", j.Dst, sum, got, ErrChecksum)
		}
		if got != sum {
			return n, offset, fmt.Errorf("verify %s: read %s from the source, %s landed: %w", j.Dst, sum, got, ErrChecksum)
		}
		rec.Verified = how
		if prefixFromDest && how != VerifiedSource {
			// The prefix was hashed from our own copy: check the source itself
			// when its server can hash it. (HTTP has If-Range: a changed
			// entity is never spliced onto the prefix.)
			if hs, ok := sfs.(Hasher); ok {
				if ssum, err := hs.SHA256(ctx, j.Src); err == nil && ssum != sum {
					return n, offset, fmt.Errorf("verify %s: the source now hashes to %s, the copy to %s: %w", j.Src, ssum, sum, ErrChecksum)
				}
			}
		}
	}
	mode := j.Info.Mode
	if mode == 0 {
		mode = 0o644
	}
	mtime := r.ModTime
	if !j.Info.ModTime.IsZero() && !isHTTP(sfs) {
		mtime = j.Info.ModTime
	}
	if err := dfs.SetAttrs(ctx, st.temp, mode, mtime); err != nil {
		return n, offset, fmt.Errorf("write %s: %w", j.Dst, destErr(err))
	}
	if err := dfs.Replace(ctx, st.temp, j.Dst); err != nil {
		return n, offset, fmt.Errorf("write %s: %w", j.Dst, destErr(err))
	}
	st.temp = ""
	return n, offset, nil
}

// stream moves the data from r to w, hashing it on the way. Downloads from
// a source whose reader pipelines (sftp WriteTo) into a local file use
// WriteTo; everything else goes through Writer.WriteFrom, to a remote
// destination in segments: a journal checkpoint after each, and, when the
// server can hash a file as it lands (StreamHasher), each segment hashed
// there as soon as it is written. The returned HashFeed (nil when not used)
// gives that hash.
func (c *copier) stream(ctx context.Context, dfs FS, r *Reader, w Writer, h hash.Hash, prog *progressCounter, j fileJob, st *attemptState, from int64) (int64, HashFeed, error) {
	sink := io.Writer(h)
	extra := []io.Writer{prog, ctxWriter{ctx}}
	if wt, ok := r.Reader.(io.WriterTo); ok {
		if lw, ok := w.(io.Writer); ok {
			if c.limit != nil {
				extra = append(extra, limitWriter{ctx: ctx, l: c.limit})
			}
			// Large files: write and hash behind, in 1 MiB writes instead
			// of one per 32 KiB packet. Small ones: directly.
			if r.Size >= 0 && r.Size < 2*writeBehindSize {
				n, err := wt.WriteTo(io.MultiWriter(append([]io.Writer{lw, sink}, extra...)...))
				return n, nil, err
			}
			wb := newWriteBehind(lw, sink)
			n, err := wt.WriteTo(io.MultiWriter(append([]io.Writer{wb}, extra...)...))
			if cerr := wb.Close(); err == nil {
				err = cerr
			}
			return n, nil, err
		}
	}
	var in io.Reader = r.Reader
	if c.limit != nil {
		in = &limitReader{ctx: ctx, l: c.limit, r: in}
	}
	if isLocal(dfs) {
		return c.writeFrom(w, io.TeeReader(in, io.MultiWriter(append([]io.Writer{sink}, extra...)...)))
	}
	seg := int64(segmentSize)
	if c.o.segment > 0 {
		seg = c.o.segment
	}
	var feed HashFeed
	if sh, ok := dfs.(StreamHasher); ok && c.o.Verify && seg%hashBlock == 0 && from%hashBlock == 0 &&
		(r.Size < 0 || r.Size-from > seg) {
		if f, err := sh.HashStream(ctx, st.temp); err == nil {
			feed = f
			if from > 0 && feed.Add(from) != nil { // the prefix sent by an earlier attempt
				feed.Close()
				feed = nil
			}
		}
	}
	journaled := c.journal != nil && j.Journal != ""
	if feed == nil && r.Size >= 0 && r.Size <= 2*readAheadChunk {
		// A small file: reading ahead would cost more than it saves.
		return c.writeFrom(w, io.TeeReader(in, io.MultiWriter(append([]io.Writer{sink}, extra...)...)))
	}
	ra := newReadAhead(in, io.MultiWriter(append([]io.Writer{sink}, extra...)...))
	defer ra.Close()
	if !journaled && feed == nil {
		return c.writeFrom(w, ra)
	}
	var total int64
	for {
		n, err := w.WriteFrom(io.LimitReader(ra, seg))
		total += n
		if err != nil {
			if feed != nil {
				feed.Close()
			}
			return total, nil, err
		}
		if n < seg {
			return total, feed, nil
		}
		if feed != nil && feed.Add(n) != nil {
			// The server's hash is gone: the whole-file hash at the end.
			feed.Close()
			feed = nil
		}
		if journaled {
			c.journal.checkpoint(j.Journal, journalEntry{Src: j.Src, Dst: j.Dst, Temp: st.temp, Offset: w.Offset(),
				SrcSize: st.srcSize, SrcModTime: st.srcMod, Validator: st.validator})
		}
	}
}

func (c *copier) writeFrom(w Writer, r io.Reader) (int64, HashFeed, error) {
	n, err := w.WriteFrom(r)
	return n, nil, err
}

func (c *copier) wrapStreamErr(j fileJob, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("copy %s: %w", j.Rel, err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == j.Src {
		return fmt.Errorf("read %s: %w", j.Src, err)
	}
	return fmt.Errorf("copy %s -> %s: %w", j.Src, j.Dst, destErr(err))
}

func (c *copier) emit(e Event) {
	if c.o.Progress != nil {
		c.o.Progress(e)
	}
}

// sourceHash is the SHA-256 of a download's source, computed on its server
// in the background while the data moves.
type sourceHash struct {
	done   chan struct{}
	cancel context.CancelFunc
	sum    string
}

// hashSourceBehind starts hashing a download's source where it lives, so
// the check costs no pass over the landed copy after the transfer: for a
// local destination, a source that hashes remotely, files of remoteHashMin
// and more. It returns nil otherwise.
func (c *copier) hashSourceBehind(ctx context.Context, sfs, dfs FS, p string, size int64) *sourceHash {
	hs, ok := sfs.(Hasher)
	if !c.o.Verify || !ok || !isLocal(dfs) || isLocal(sfs) || size < remoteHashMin {
		return nil
	}
	hctx, cancel := context.WithCancel(ctx)
	h := &sourceHash{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(h.done)
		if s, err := hs.SHA256(hctx, p); err == nil {
			h.sum = s
		}
	}()
	return h
}

// wait returns the source's SHA-256, or "" when it could not be computed
// (no exec, no sh, an error): the landed copy is read back then.
func (h *sourceHash) wait() string {
	if h == nil {
		return ""
	}
	<-h.done
	return h.sum
}

// stop cancels the hash (a failed attempt) and waits for it.
func (h *sourceHash) stop() {
	if h != nil {
		h.cancel()
		<-h.done
	}
}

// remoteHashMin is the size from which a landed file is hashed on the
// server (sha256sum over SSH exec) rather than read back: starting a remote
// command costs a session and a process (tens to hundreds of milliseconds
// on a busy server), reading back a small file over the open SFTP session
// costs a few round trips.
const remoteHashMin = 4 << 20

// landedSHA256 hashes a landed file of the given size the cheaper way.
func landedSHA256(ctx context.Context, f FS, p string, size int64) (sum, how string, err error) {
	if size < remoteHashMin {
		return readSHA256(ctx, f, p)
	}
	return fileSHA256(ctx, f, p)
}

// fileSHA256 hashes p where it lives when the FS can, else by reading it.
func fileSHA256(ctx context.Context, f FS, p string) (sum, how string, err error) {
	if hs, ok := f.(Hasher); ok {
		s, err := hs.SHA256(ctx, p)
		if err == nil {
			return s, VerifiedRemote, nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return "", "", err
		}
	}
	return readSHA256(ctx, f, p)
}

// readSHA256 hashes p by reading it.
func readSHA256(ctx context.Context, f FS, p string) (sum, how string, err error) {
	h := sha256.New()
	r, err := f.Open(ctx, p, 0)
	if err != nil {
		return "", "", err
	}
	defer r.Close()
	if _, err := copyCtx(ctx, h, r.Reader); err != nil {
		return "", "", err
	}
	return hex.EncodeToString(h.Sum(nil)), VerifiedReadBack, nil
}

func hashPrefix(ctx context.Context, f FS, p string, n int64, h hash.Hash) error {
	r, err := f.Open(ctx, p, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	got, err := copyCtx(ctx, h, io.LimitReader(r.Reader, n))
	if err != nil {
		return err
	}
	if got != n {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func copyCtx(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	if wt, ok := r.(io.WriterTo); ok {
		return wt.WriteTo(io.MultiWriter(w, ctxWriter{ctx}))
	}
	buf := make([]byte, copyBufSize)
	return io.CopyBuffer(io.MultiWriter(w, ctxWriter{ctx}), r, buf)
}

// ctxWriter fails writes once ctx is done, to stop a copy loop.
type ctxWriter struct{ ctx context.Context }

func (w ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// openSource opens a source file; HTTP resumes carry the validator.
func openSource(ctx context.Context, f FS, p string, offset int64, validator string) (*Reader, error) {
	if h, ok := f.(*HTTP); ok {
		return h.OpenRange(ctx, p, offset, validator)
	}
	return f.Open(ctx, p, offset)
}

func isLocal(f FS) bool {
	_, ok := f.(Local)
	return ok
}

func isHTTP(f FS) bool {
	_, ok := f.(*HTTP)
	return ok
}
