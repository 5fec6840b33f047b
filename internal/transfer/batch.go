package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/transfer/plan"
)

// The batch path for many small files to an SFTP server. Per file it costs
// six SFTP requests (open, mode, write, close; set times, rename; the mode
// again only when the temporary file needed a narrower one), 4 x Workers
// files in flight on the one connection, each file read whole and hashed
// in memory. Per batch of minBatchFiles to batchFiles files it costs one
// remote command (syncSumScript):
//
//   - `sync -f -- DIR/TEMP ...`, one path per directory of the batch:
//     syncfs(2) of each file system the batch touches, one journal commit
//     instead of one fsync per file;
//   - `sha256sum -- TEMP1 ... TEMPn`: every temporary file hashed by the
//     server and compared with the SHA-256 computed while reading the
//     source.
//
// A server that cannot run it (no exec, no sh, no `sync -f`) is found out
// by the first batch; its files, and any uploaded before that was known,
// go the single-file way, and later files get fsync@openssh.com each
// before they are closed and one `sha256sum` per batch (no exec: each file
// read back).
//
// Only files that are durable and verified are renamed to their final
// names; a mismatch fails that file alone and removes its temporary file.
// Any other failure hands the file to the single-file path (with its
// retries and its error messages), so the batch path decides no error on
// its own except a checksum mismatch.
const (
	// smallMax is the largest file the batch path takes; it holds the whole
	// file in memory while it is uploaded (bounded by the files in flight).
	smallMax = 256 << 10
	// batchFiles is the most files one remote command covers: starting a
	// remote command costs a session, a login shell (with whatever its rc
	// files do) and a process, so batches are large, at least
	// minBatchFiles.
	batchFiles    = 1024
	minBatchFiles = 256
	// batchArgBytes bounds the length of a batch's command line (the remote
	// shell gets it as one argument: Linux allows 128 KiB).
	batchArgBytes = 100 << 10
	// tempExtra is what a temporary name and its quoting add to a path.
	tempExtra = len(tempMarker) + 12 + 8
	// batchesFinishing is how many uploaded batches may wait for their
	// remote commands and renames while the next batch uploads.
	batchesFinishing = 2
)

// smallItem is one file of a batch.
type smallItem struct {
	a     plan.Action
	j     fileJob
	temp  string // "" when nothing was created
	sum   string
	size  int64
	mtime time.Time
	start time.Time
	// synced: fsynced (fsync@openssh.com) before it was closed.
	synced bool
	sent   bool  // written and reported as progress
	err    error // upload failed: the single-file path takes over
}

type batcher struct {
	r        *runner
	sfs      FS
	dfs      *SFTP
	sgen     int
	dgen     int
	inflight int
	script   atomic.Bool // durability and verification per batch (SyncAndSHA256)
	fsync    atomic.Bool // else fsync@openssh.com per file (when offered)
	record   func(Receipt, error)
	broken   atomic.Bool // the connection failed: stop batching

	mu       sync.Mutex
	fallback []plan.Action
	orphans  []string // temporary files left when the connection failed
}

// batchable reports whether a copy may go through the batch path (the
// destination and source kinds are checked by copySmall).
func (r *runner) batchable(a plan.Action) bool {
	return r.singleDst == "" && r.o.Mode != config.ModeBisync && r.o.BWLimit <= 0 &&
		a.From == plan.A && a.Entry.Size >= 0 && a.Entry.Size <= smallMax
}

// copySmall copies the small files of r.copies in batches when the
// destination is an SFTP server, records their receipts, and returns the
// copies left for the single-file path (large ones, and small ones the
// batch path handed back).
func (r *runner) copySmall(ctx context.Context, record func(Receipt, error)) []plan.Action {
	var small, rest []plan.Action
	for _, a := range r.copies {
		if r.batchable(a) {
			small = append(small, a)
		} else {
			rest = append(rest, a)
		}
	}
	if len(small) < 2 {
		return r.copies
	}
	sfs, sgen, err := r.srcConn.get(ctx)
	if err != nil || isHTTP(sfs) {
		return r.copies
	}
	dfsAny, dgen, err := r.dstConn.get(ctx)
	if err != nil {
		return r.copies
	}
	dfs, ok := dfsAny.(*SFTP)
	if !ok {
		return r.copies
	}
	b := &batcher{r: r, sfs: sfs, dfs: dfs, sgen: sgen, dgen: dgen, record: record,
		inflight: max(4*r.o.Workers, 16)}
	// Batches are made durable and verified by one remote command each. A
	// server that cannot (found out by the first batch's command) gets
	// fsync@openssh.com per file from then on; the files uploaded before
	// that was known go the single-file way.
	b.script.Store(true)
	sem := make(chan struct{}, batchesFinishing)
	var wg sync.WaitGroup
	for i := 0; i < len(small); {
		if ctx.Err() != nil || b.broken.Load() {
			b.handBack(small[i:]...)
			break
		}
		// Halving batches: the last one, whose remote command and renames
		// nothing overlaps, is small.
		limit := min(batchFiles, max(minBatchFiles, (len(small)-i+1)/2))
		// The command line names every temporary file, the first of each
		// directory twice (sync -f, sha256sum).
		n, argBytes, dirs := 0, 0, map[string]bool{}
		for i+n < len(small) && n < limit && argBytes < batchArgBytes {
			p := r.sidePath(plan.B, small[i+n].Path)
			l := len(sshconn.Quote(p)) + tempExtra
			if d := path.Dir(p); !dirs[d] {
				dirs[d] = true
				l *= 2
			}
			argBytes += l
			n++
		}
		items := b.uploadAll(ctx, small[i:i+n])
		i += n
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b.finish(ctx, items)
		}()
	}
	wg.Wait()
	b.removeOrphans(ctx)
	return append(rest, b.fallback...)
}

// removeOrphans removes, over a new connection, the temporary files a
// failed connection kept from being removed (best effort).
func (b *batcher) removeOrphans(ctx context.Context) {
	if len(b.orphans) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	f, _, err := b.r.dstConn.get(cctx)
	if err != nil {
		return
	}
	for _, t := range b.orphans {
		if f.(WritableFS).Remove(cctx, t) != nil && cctx.Err() != nil {
			return
		}
	}
}

func (b *batcher) handBack(acts ...plan.Action) {
	b.mu.Lock()
	b.fallback = append(b.fallback, acts...)
	b.mu.Unlock()
}

// giveUp hands an item back to the single-file path, removing its
// temporary file; a connection failure stops the batching.
func (b *batcher) giveUp(it *smallItem, err error) {
	if err != nil && isConnErr(err) && b.broken.CompareAndSwap(false, true) {
		b.r.srcConn.reset(b.sgen)
		b.r.dstConn.reset(b.dgen)
	}
	if it.temp != "" {
		if b.broken.Load() {
			b.mu.Lock()
			b.orphans = append(b.orphans, it.temp)
			b.mu.Unlock()
		} else {
			_ = b.dfs.Remove(context.Background(), it.temp)
		}
	}
	it.temp = ""
	if it.sent {
		// The single-file path reports the file's bytes again.
		b.r.emit(Event{Kind: EventFileProgress, Path: it.j.Rel, Size: it.size, Delta: -it.size})
	}
	b.handBack(it.a)
}

// parallel runs fn(0..n-1) on up to b.inflight goroutines.
func (b *batcher) parallel(n int, fn func(i int)) {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for w := 0; w < min(b.inflight, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func (b *batcher) uploadAll(ctx context.Context, acts []plan.Action) []*smallItem {
	items := make([]*smallItem, len(acts))
	b.parallel(len(acts), func(i int) { items[i] = b.upload(ctx, acts[i]) })
	return items
}

// upload reads a small source file whole, hashing it, and writes it to a
// temporary file next to its destination.
func (b *batcher) upload(ctx context.Context, a plan.Action) *smallItem {
	it := &smallItem{a: a, j: b.r.jobFor(a), start: time.Now()}
	if err := ctx.Err(); err != nil {
		it.err = err
		return it
	}
	if b.broken.Load() {
		it.err = errors.New("connection failed")
		return it
	}
	j := it.j
	b.r.emit(Event{Kind: EventFileStart, Path: j.Rel, Size: j.Info.Size})
	rd, err := b.sfs.Open(ctx, j.Src, 0)
	if err != nil {
		it.err = err
		return it
	}
	data, err := io.ReadAll(io.LimitReader(rd.Reader, smallMax+1))
	rd.Close()
	if err == nil && int64(len(data)) != rd.Size {
		err = ErrSourceChanged // the single-file path reports it properly
	}
	if err != nil {
		it.err = err
		return it
	}
	h := sha256.Sum256(data)
	it.sum, it.size = hex.EncodeToString(h[:]), int64(len(data))
	it.mtime = rd.ModTime
	if !j.Info.ModTime.IsZero() {
		it.mtime = j.Info.ModTime
	}
	it.temp = tempName(j.Dst)
	it.synced = b.fsync.Load()
	if err := b.dfs.createSmall(it.temp, data, tempMode(j.Info.Mode), it.synced); err != nil {
		it.err = err
		return it
	}
	it.sent = true
	b.r.emit(Event{Kind: EventFileProgress, Path: j.Rel, Size: it.size, Done: it.size, Delta: it.size})
	return it
}

// finish makes a batch's temporary files durable, verifies them and renames
// the good ones into place.
func (b *batcher) finish(ctx context.Context, items []*smallItem) {
	var ok []*smallItem
	for _, it := range items {
		if it.err != nil {
			b.giveUp(it, it.err)
		} else {
			ok = append(ok, it)
		}
	}
	if len(ok) == 0 {
		return
	}
	temps := make([]string, len(ok))
	for i, it := range ok {
		temps[i] = it.temp
	}
	hook := func() {
		if b.r.o.beforeBatchVerify != nil {
			b.r.o.beforeBatchVerify(temps)
		}
	}
	verify := b.r.o.Verify
	how := VerifiedNone
	var sums []string
	var sumErr error
	script := b.script.Load()
	if script {
		var want []string
		if verify {
			want, how = temps, VerifiedRemote
		}
		hook()
		sums, sumErr = b.dfs.SyncAndSHA256(ctx, oneper(temps), want)
		if sumErr != nil {
			if errors.Is(sumErr, errors.ErrUnsupported) {
				// Fsync file by file from now on.
				b.fsync.Store(b.dfs.HasFsync())
				b.script.Store(false)
			}
			// Not known to be durable: the single-file path (fsync per
			// file) takes these files.
			for _, it := range ok {
				b.giveUp(it, sumErr)
			}
			return
		}
	} else {
		// Uploaded before the first batch found out that the server
		// cannot flush a batch: not fsynced, so the single-file path
		// takes them.
		hasFsync := b.dfs.HasFsync()
		kept := ok[:0]
		for _, it := range ok {
			if hasFsync && !it.synced {
				b.giveUp(it, nil)
			} else {
				kept = append(kept, it)
			}
		}
		ok, temps = kept, temps[:0]
		for _, it := range ok {
			temps = append(temps, it.temp)
		}
		if len(ok) == 0 {
			return
		}
		hook()
		if verify {
			how = VerifiedRemote
			sums, sumErr = b.dfs.SHA256Batch(ctx, temps)
		}
	}
	if ctx.Err() != nil {
		for _, it := range ok {
			b.giveUp(it, ctx.Err())
		}
		return
	}
	var readErr []error
	if verify && sumErr != nil {
		// No exec (or a file sha256sum could not read): read each back.
		how = VerifiedReadBack
		sums, readErr = make([]string, len(ok)), make([]error, len(ok))
		b.parallel(len(ok), func(i int) { sums[i], _, readErr[i] = readSHA256(ctx, b.dfs, ok[i].temp) })
	}
	b.parallel(len(ok), func(i int) {
		it := ok[i]
		if readErr != nil && readErr[i] != nil {
			b.giveUp(it, readErr[i])
			return
		}
		if verify && sums[i] != it.sum {
			err := fmt.Errorf("verify %s: read %s from the source, %s landed: %w", it.j.Dst, it.sum, sums[i], ErrChecksum)
			_ = b.dfs.Remove(context.WithoutCancel(ctx), it.temp)
			b.done(it, how, err)
			return
		}
		mode := it.j.Info.Mode
		if mode == 0 {
			mode = 0o644
		}
		var err error
		if tempMode(it.j.Info.Mode) == mode {
			err = b.dfs.SetTimes(ctx, it.temp, it.mtime)
		} else {
			err = b.dfs.SetAttrs(ctx, it.temp, mode, it.mtime)
		}
		if err != nil {
			b.giveUp(it, err)
			return
		}
		if err := b.dfs.Replace(ctx, it.temp, it.j.Dst); err != nil {
			b.giveUp(it, err)
			return
		}
		b.done(it, how, nil)
	})
}

// done records a file the batch path decided.
func (b *batcher) done(it *smallItem, how string, err error) {
	rec := Receipt{Path: it.j.Rel, Op: OpCopy, Size: it.size, SHA256: it.sum, BytesSent: it.size,
		Verified: how, Attempts: 1, Reason: it.a.Reason, Duration: time.Since(it.start)}
	if err != nil {
		rec.Error = err.Error()
	}
	b.record(rec, err)
	b.r.emit(Event{Kind: EventFileDone, Path: it.j.Rel, Size: it.size, Done: it.size, Err: err})
	if err == nil {
		b.r.baselineUpdate(context.Background(), it.a, rec)
	}
}

// tempMode is the mode a batch's temporary file gets when it is created:
// its final mode when that lets nobody else write to it (reading it is no
// leak: the final file allows the same), else 0600 until it lands.
func tempMode(m fs.FileMode) fs.FileMode {
	if m == 0 {
		m = 0o644
	}
	if m&0o022 != 0 || m&0o600 != 0o600 {
		return 0o600
	}
	return m
}

// oneper returns one path per directory of ps: mount points are
// directories, so that names every file system the batch touches.
func oneper(ps []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		if d := path.Dir(p); !seen[d] {
			seen[d] = true
			out = append(out, p)
		}
	}
	return out
}
