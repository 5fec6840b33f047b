package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/transfer/plan"
)

// Receipt operations.
const (
	OpCopy     = "copy"
	OpDelete   = "delete"
	OpBackup   = "backup"
	OpMkdir    = "mkdir"
	OpConflict = "conflict"
	OpSkip     = "skip"
	OpAttrs    = "attrs"
)

// Location is one end of a transfer.
type Location struct {
	Endpoint config.Endpoint
	// Display is the location as shown to the user (secrets removed).
	Display string
}

// ParseLocation parses a location as written in a profile or on the
// command line.
func ParseLocation(s string) (Location, error) {
	e, err := config.ParseEndpoint(s)
	if err != nil {
		return Location{}, err
	}
	d := s
	if e.Password != "" {
		if u, perr := url.Parse(s); perr == nil {
			d = u.Redacted()
		}
	}
	return Location{Endpoint: e, Display: d}, nil
}

// Dialer opens the FS of an endpoint (a new connection for remote ones).
type Dialer func(ctx context.Context, e config.Endpoint) (FS, error)

// Options control a transfer.
type Options struct {
	Name      string // profile name ("" for ad hoc)
	Mode      string // config.ModeCopy (default), ModeSync, ModeBisync
	Include   []string
	Exclude   []string
	Verify    bool   // verify the landed file's SHA-256
	SHA256    string // expected SHA-256 of a single-file source
	Retries   int
	Backoff   time.Duration
	Checksum  bool // sync/bisync: compare by SHA-256 instead of size+mtime
	Delete    bool // sync: remove extraneous destination files
	MaxDelete int  // sync: most removals allowed; < 0 unlimited
	BackupDir string
	BWLimit   int64 // bytes per second for the whole run; 0 unlimited
	Workers   int   // files in flight; default 8
	DryRun    bool
	// StateDir holds resume journals and bisync baselines
	// (<StateDir>/transfer/); "" disables resume across runs and bisync.
	StateDir string
	Progress func(Event)
	// Permanent reports errors that must never be retried (authentication,
	// host keys); connection errors are retried otherwise.
	Permanent func(error) bool
	Dial      Dialer

	segment int64 // tests: journal checkpoint interval (default segmentSize)
	// tests: called with a batch's temporary files before they are verified
	beforeBatchVerify func(temps []string)
}

// Receipt reports one action of a run.
type Receipt struct {
	Path        string        `json:"path"`
	Op          string        `json:"op"`
	Direction   string        `json:"direction,omitempty"` // bisync: "a->b" or "b->a"
	Size        int64         `json:"size"`
	SHA256      string        `json:"sha256,omitempty"`
	Duration    time.Duration `json:"duration_ns"`
	BytesSent   int64         `json:"bytes_sent"`
	ResumedFrom int64         `json:"resumed_from"`
	Verified    string        `json:"verified,omitempty"`
	Attempts    int           `json:"attempts,omitempty"`
	Reason      string        `json:"reason,omitempty"`
	Error       string        `json:"error,omitempty"`
}

// Step is one planned action (what --dry-run prints).
type Step struct {
	Op           string `json:"op"`
	Path         string `json:"path"`
	Direction    string `json:"direction,omitempty"`
	Size         int64  `json:"size,omitempty"`
	Reason       string `json:"reason,omitempty"`
	ConflictPath string `json:"conflict_path,omitempty"`
}

// Result is the outcome of a run.
type Result struct {
	Name        string        `json:"name,omitempty"`
	Source      string        `json:"source"`
	Destination string        `json:"destination"`
	Mode        string        `json:"mode"`
	DryRun      bool          `json:"dry_run,omitempty"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration_ns"`
	Files       int           `json:"files"`  // files landed
	Failed      int           `json:"failed"` // actions that failed
	Bytes       int64         `json:"bytes"`  // size of the files landed
	BytesSent   int64         `json:"bytes_sent"`
	Deleted     int           `json:"deleted"`
	Plan        []Step        `json:"plan,omitempty"`
	Receipts    []Receipt     `json:"receipts,omitempty"`
}

// FilesError is returned when some actions of a run failed; the others were
// carried out.
type FilesError struct {
	Failed int
	Total  int
	First  error
}

func (e *FilesError) Error() string {
	if e.Failed == 1 {
		return e.First.Error()
	}
	return fmt.Sprintf("%d of %d actions failed; first: %v", e.Failed, e.Total, e.First)
}

func (e *FilesError) Unwrap() error { return e.First }

// ErrNotFound marks a missing destination directory.
var ErrNotFound = errors.New("not found")

func notFound(err error) error { return &wrapErr{err: err, kind: ErrNotFound} }

// Run carries out one transfer from src to dst.
func Run(ctx context.Context, src, dst Location, o Options) (*Result, error) {
	if o.Mode == "" {
		o.Mode = config.ModeCopy
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Dial == nil {
		return nil, errors.New("transfer: no dialer")
	}
	if dst.Endpoint.Kind == config.EndpointHTTP {
		return nil, fmt.Errorf("destination %s: http(s) destinations are not supported", dst.Display)
	}
	res := &Result{Name: o.Name, Source: src.Display, Destination: dst.Display, Mode: o.Mode, DryRun: o.DryRun, Started: time.Now()}
	defer func() { res.Duration = time.Since(res.Started) }()

	r := &runner{o: &o, src: src, dst: dst, res: res}
	r.srcConn = newConn(func(ctx context.Context) (FS, error) { return o.Dial(ctx, src.Endpoint) })
	r.dstConn = newConn(func(ctx context.Context) (FS, error) { return o.Dial(ctx, dst.Endpoint) })
	defer r.srcConn.close()
	defer r.dstConn.close()
	if o.StateDir != "" && !o.DryRun {
		j, err := openJournal(o.StateDir)
		if err != nil {
			return res, fmt.Errorf("transfer state: %w", err)
		}
		r.journal = j
	}
	// Connecting and listing are retried like files: a server that is down
	// for a moment does not fail the run.
	retry := &copier{o: &o}
	for attempt := 0; ; attempt++ {
		err := r.prepare(ctx)
		if err == nil {
			break
		}
		if !retry.retryable(err) || attempt >= o.Retries || ctx.Err() != nil {
			return res, err
		}
		r.reset()
		r.emit(Event{Kind: EventRetry, Err: err, Attempt: attempt + 1})
		if sleepCtx(ctx, backoff(o.Backoff, attempt)) != nil {
			return res, err
		}
	}
	if o.DryRun {
		return res, nil
	}
	return res, r.execute(ctx)
}

type runner struct {
	o        *Options
	src, dst Location
	res      *Result
	journal  *journal

	srcConn, dstConn *conn
	srcRoot, dstRoot string // resolved paths
	srcIsDir         bool

	// actions to carry out, in order: removals, mkdirs, copies, skips,
	// then attribute updates.
	removals  []plan.Action
	mkdirs    []plan.Action
	copies    []plan.Action
	skips     []plan.Action
	attrs     []plan.Action
	singleDst string // single-file source: the destination file's path

	limOnce sync.Once
	lim     *limiter

	bisync *bisyncState
}

// resolve turns an endpoint's path into a path of its FS.
func resolve(f FS, e config.Endpoint) (string, error) {
	switch e.Kind {
	case config.EndpointHTTP:
		return e.URL, nil
	case config.EndpointSFTP:
		if s, ok := f.(*SFTP); ok {
			return s.Abs(e.Path)
		}
		return e.Path, nil
	default:
		p, err := filepath.Abs(e.Path)
		if err != nil {
			return "", err
		}
		return filepath.ToSlash(p), nil
	}
}

// reset forgets a failed preparation: connections and the plan.
func (r *runner) reset() {
	_ = r.srcConn.close()
	_ = r.dstConn.close()
	r.removals, r.mkdirs, r.copies, r.skips, r.attrs = nil, nil, nil, nil, nil
	r.singleDst, r.bisync, r.res.Plan = "", nil, nil
}

func (r *runner) prepare(ctx context.Context) error {
	sfs, _, err := r.srcConn.get(ctx)
	if err != nil {
		return fmt.Errorf("source %s: %w", r.src.Display, err)
	}
	if r.srcRoot, err = resolve(sfs, r.src.Endpoint); err != nil {
		return fmt.Errorf("source %s: %w", r.src.Display, err)
	}
	si, err := sfs.Stat(ctx, r.srcRoot)
	if err != nil {
		return fmt.Errorf("source %s: %w", r.src.Display, err)
	}
	dfsAny, _, err := r.dstConn.get(ctx)
	if err != nil {
		return fmt.Errorf("destination %s: %w", r.dst.Display, err)
	}
	dfs, ok := dfsAny.(WritableFS)
	if !ok {
		return fmt.Errorf("destination %s: cannot be written to", r.dst.Display)
	}
	if r.dstRoot, err = resolve(dfs, r.dst.Endpoint); err != nil {
		return fmt.Errorf("destination %s: %w", r.dst.Display, err)
	}
	di, derr := dfs.Stat(ctx, r.dstRoot)
	dstExists := derr == nil
	if derr != nil && !errors.Is(derr, fs.ErrNotExist) {
		return fmt.Errorf("destination %s: %w", r.dst.Display, derr)
	}
	r.srcIsDir = si.IsDir
	if r.o.Mode == config.ModeBisync && !si.IsDir {
		return fmt.Errorf("bisync needs two directories; source %s is a file", r.src.Display)
	}
	if !si.IsDir {
		return r.prepareFile(ctx, sfs, dfs, si, di, dstExists)
	}
	if dstExists && !di.IsDir {
		return fmt.Errorf("destination %s is a file but the source %s is a directory", r.dst.Display, r.src.Display)
	}
	if !dstExists {
		if err := r.checkParent(ctx, dfs, r.dstRoot); err != nil {
			return err
		}
		if r.o.Mode == config.ModeBisync {
			return fmt.Errorf("bisync: destination %s does not exist; create it (empty) first", r.dst.Display)
		}
	}
	srcList, err := r.list(ctx, sfs, r.srcRoot)
	if err != nil {
		return fmt.Errorf("list source %s: %w", r.src.Display, err)
	}
	var dstList []plan.Entry
	if dstExists {
		if dstList, err = r.list(ctx, dfs, r.dstRoot); err != nil {
			return fmt.Errorf("list destination %s: %w", r.dst.Display, err)
		}
	}
	switch r.o.Mode {
	case config.ModeCopy:
		existing := map[string]bool{}
		for _, e := range dstList {
			if e.IsDir {
				existing[e.Path] = true
			}
		}
		for _, e := range srcList {
			op := plan.Copy
			if e.IsDir {
				op = plan.Mkdir
			}
			r.add(plan.Action{Op: op, Path: e.Path, From: plan.A, Reason: "copy", Entry: e})
			if e.IsDir && !e.ModTime.IsZero() && !existing[e.Path] {
				// A directory this run creates gets the source's time once
				// its files have landed (see plan: Attrs); copy leaves the
				// attributes of directories that were there alone.
				r.add(plan.Action{Op: plan.Attrs, Path: e.Path, From: plan.A, Reason: "new directory", Entry: e})
			}
		}
	case config.ModeSync:
		if r.o.Checksum {
			if err := r.addHashes(ctx, sfs, dfs, srcList, dstList); err != nil {
				return err
			}
		}
		acts, err := plan.Sync(srcList, dstList, plan.SyncOptions{Checksum: r.o.Checksum, Delete: r.o.Delete,
			MaxDelete: r.o.MaxDelete, BackupDir: r.o.BackupDir})
		if err != nil {
			return err
		}
		for _, a := range acts {
			r.add(a)
		}
	case config.ModeBisync:
		return r.prepareBisync(ctx, sfs, dfs, srcList, dstList)
	default:
		return fmt.Errorf("unknown mode %q; use copy, sync or bisync", r.o.Mode)
	}
	r.finishPlan()
	return nil
}

// prepareFile plans a single-file source: into an existing destination
// directory under its own name, else to the destination path itself (whose
// directory must exist).
func (r *runner) prepareFile(ctx context.Context, sfs FS, dfs WritableFS, si, di Info, dstExists bool) error {
	base := path.Base(r.srcRoot)
	if r.src.Endpoint.Kind == config.EndpointHTTP {
		base = httpBase(r.src.Endpoint.URL)
	}
	switch {
	case dstExists && di.IsDir:
		r.singleDst = path.Join(r.dstRoot, base)
	case !dstExists && strings.HasSuffix(r.dst.Endpoint.Path, "/"):
		return notFound(fmt.Errorf("destination directory %s does not exist", r.dst.Display))
	case !dstExists:
		if err := r.checkParent(ctx, dfs, r.dstRoot); err != nil {
			return err
		}
		r.singleDst = r.dstRoot
	default:
		r.singleDst = r.dstRoot
	}
	name := path.Base(r.singleDst)
	se := plan.Entry{Path: name, Size: si.Size, ModTime: si.ModTime, Mode: si.Mode}
	act := plan.Action{Op: plan.Copy, Path: name, From: plan.A, Reason: "copy", Entry: se}
	if r.o.Mode == config.ModeSync && si.Size >= 0 {
		var dl []plan.Entry
		if ti, err := dfs.Stat(ctx, r.singleDst); err == nil {
			dl = []plan.Entry{{Path: name, Size: ti.Size, ModTime: ti.ModTime, Mode: ti.Mode, IsDir: ti.IsDir}}
		}
		sl := []plan.Entry{se}
		if r.o.Checksum && len(dl) == 1 && !dl[0].IsDir && dl[0].Size == se.Size {
			var err error
			if sl[0].Hash, _, err = fileSHA256(ctx, sfs, r.srcRoot); err != nil {
				return fmt.Errorf("hash %s: %w", r.srcRoot, err)
			}
			if dl[0].Hash, _, err = fileSHA256(ctx, dfs, r.singleDst); err != nil {
				return fmt.Errorf("hash %s: %w", r.singleDst, err)
			}
		}
		acts, err := plan.Sync(sl, dl, plan.SyncOptions{Checksum: r.o.Checksum, MaxDelete: r.o.MaxDelete})
		if err != nil {
			return err
		}
		for _, a := range acts {
			r.add(a)
		}
	} else {
		r.add(act)
	}
	r.finishPlan()
	return nil
}

func httpBase(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "download"
	}
	b := path.Base(u.Path)
	if b == "/" || b == "." || b == "" {
		return "index.html"
	}
	return b
}

// checkParent makes sure the directory that would hold p exists.
func (r *runner) checkParent(ctx context.Context, dfs WritableFS, p string) error {
	parent := path.Dir(p)
	pi, err := dfs.Stat(ctx, parent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return notFound(fmt.Errorf("destination directory %s does not exist", parent))
		}
		return fmt.Errorf("destination directory %s: %w", parent, err)
	}
	if !pi.IsDir {
		return fmt.Errorf("destination %s: %s is not a directory", r.dst.Display, parent)
	}
	return nil
}

func (r *runner) add(a plan.Action) {
	switch a.Op {
	case plan.Delete, plan.Backup, plan.Conflict:
		r.removals = append(r.removals, a)
	case plan.Mkdir:
		r.mkdirs = append(r.mkdirs, a)
	case plan.Copy:
		r.copies = append(r.copies, a)
	case plan.Attrs:
		r.attrs = append(r.attrs, a)
	default:
		r.skips = append(r.skips, a)
	}
}

// finishPlan fills Result.Plan in execution order.
func (r *runner) finishPlan() {
	for _, list := range [][]plan.Action{r.removals, r.mkdirs, r.copies, r.skips, r.attrs} {
		for _, a := range list {
			s := Step{Op: a.Op.String(), Path: a.Path, Reason: a.Reason, ConflictPath: a.ConflictPath}
			if a.Op == plan.Copy {
				s.Size = a.Entry.Size
			}
			if r.o.Mode == config.ModeBisync {
				s.Direction = direction(a)
			}
			r.res.Plan = append(r.res.Plan, s)
		}
	}
}

func direction(a plan.Action) string {
	if a.Op == plan.Skip {
		return ""
	}
	if a.Target() == plan.B {
		return "a->b"
	}
	return "b->a"
}

// list walks a directory tree with the include/exclude filters applied.
func (r *runner) list(ctx context.Context, f FS, root string) ([]plan.Entry, error) {
	var out []plan.Entry
	err := f.Walk(ctx, root, func(i Info) error {
		if IsTemp(path.Base(i.Path)) {
			return nil
		}
		if r.excluded(i.Path) {
			if i.IsDir {
				return fs.SkipDir
			}
			return nil
		}
		if !i.IsDir && !r.included(i.Path) {
			return nil
		}
		out = append(out, plan.Entry{Path: i.Path, Size: i.Size, ModTime: i.ModTime, Mode: i.Mode, IsDir: i.IsDir})
		return nil
	})
	return out, err
}

// matchGlob matches a path.Match pattern: without a slash against the base
// name at any depth (as rsync does), with one against the whole relative path.
func matchGlob(pattern, rel string) bool {
	if !strings.Contains(pattern, "/") {
		ok, _ := path.Match(pattern, path.Base(rel))
		return ok
	}
	ok, _ := path.Match(strings.TrimPrefix(pattern, "/"), rel)
	return ok
}

func (r *runner) excluded(rel string) bool {
	for _, p := range r.o.Exclude {
		if matchGlob(p, rel) {
			return true
		}
	}
	return false
}

func (r *runner) included(rel string) bool {
	if len(r.o.Include) == 0 {
		return true
	}
	for _, p := range r.o.Include {
		if matchGlob(p, rel) {
			return true
		}
	}
	return false
}

// addHashes fills Hash for the files --checksum must compare: those present
// on both sides with the same size.
func (r *runner) addHashes(ctx context.Context, sfs, dfs FS, src, dst []plan.Entry) error {
	di := map[string]int{}
	for i, e := range dst {
		di[e.Path] = i
	}
	for i := range src {
		s := &src[i]
		j, ok := di[s.Path]
		if !ok || s.IsDir || dst[j].IsDir || dst[j].Size != s.Size {
			continue
		}
		var err error
		if s.Hash, _, err = fileSHA256(ctx, sfs, path.Join(r.srcRoot, s.Path)); err != nil {
			return fmt.Errorf("hash %s: %w", path.Join(r.srcRoot, s.Path), err)
		}
		if dst[j].Hash, _, err = fileSHA256(ctx, dfs, path.Join(r.dstRoot, s.Path)); err != nil {
			return fmt.Errorf("hash %s: %w", path.Join(r.dstRoot, s.Path), err)
		}
	}
	return nil
}

// sidePath is the path of rel on a side.
func (r *runner) sidePath(side plan.Side, rel string) string {
	if r.singleDst != "" {
		if side == plan.A {
			return r.srcRoot
		}
		return r.singleDst
	}
	if side == plan.A {
		return path.Join(r.srcRoot, rel)
	}
	return path.Join(r.dstRoot, rel)
}

func (r *runner) sideConn(side plan.Side) *conn {
	if side == plan.A {
		return r.srcConn
	}
	return r.dstConn
}

func (r *runner) journalKey(from plan.Side, rel string) string {
	if r.journal == nil {
		return ""
	}
	a, b := r.src.Display, r.dst.Display
	if from == plan.B {
		a, b = b, a
	}
	return journalKey(a, b, rel)
}

// execute carries out the plan: removals and directory creation in order,
// then the copies with o.Workers in flight.
func (r *runner) execute(ctx context.Context) error {
	total := int64(0)
	for _, a := range r.copies {
		if a.Entry.Size > 0 {
			total += a.Entry.Size
		}
	}
	r.emit(Event{Kind: EventPlan, TotalFiles: len(r.copies), TotalBytes: total})
	var (
		mu       sync.Mutex
		firstErr error
		failed   int
	)
	record := func(rec Receipt, err error) {
		mu.Lock()
		defer mu.Unlock()
		r.res.Receipts = append(r.res.Receipts, rec)
		r.res.BytesSent += rec.BytesSent
		if err != nil {
			failed++
			r.res.Failed++
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		switch rec.Op {
		case OpCopy:
			r.res.Files++
			r.res.Bytes += rec.Size
		case OpDelete, OpBackup:
			r.res.Deleted++
		}
	}
	if r.srcIsDir && r.o.Mode != config.ModeBisync {
		dfs, _, err := r.dstConn.get(ctx)
		if err != nil {
			return err
		}
		if err := dfs.(WritableFS).Mkdir(ctx, r.dstRoot, 0o755); err != nil {
			return fmt.Errorf("create destination directory %s: %w", r.dst.Display, err)
		}
	}
	for _, a := range r.removals {
		if ctx.Err() != nil {
			break
		}
		if err := r.bisyncBlocked(a); err != nil {
			record(r.skipBlocked(a, err), err)
			continue
		}
		rec, err := r.remove(ctx, a)
		record(rec, err)
		r.bisyncFailed(a, err)
	}
	for _, a := range r.mkdirs {
		if ctx.Err() != nil {
			break
		}
		if err := r.bisyncBlocked(a); err != nil {
			record(r.skipBlocked(a, err), err)
			continue
		}
		rec, err := r.mkdir(ctx, a)
		record(rec, err)
		r.bisyncFailed(a, err)
	}
	copies := r.copies
	if ctx.Err() == nil {
		copies = r.copySmall(ctx, record)
	}
	jobs := make(chan plan.Action)
	var wg sync.WaitGroup
	for i := 0; i < min(r.o.Workers, max(len(copies), 1)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				if err := r.bisyncBlocked(a); err != nil {
					record(r.skipBlocked(a, err), err)
					continue
				}
				rec, err := r.copy(ctx, a)
				record(rec, err)
			}
		}()
	}
	for _, a := range copies {
		if ctx.Err() != nil {
			break
		}
		jobs <- a
	}
	close(jobs)
	wg.Wait()
	for _, a := range r.skips {
		if err := r.bisyncBlocked(a); err != nil {
			record(r.skipBlocked(a, err), err)
			continue
		}
		rec := Receipt{Path: a.Path, Op: OpSkip, Reason: a.Reason, Direction: r.dirOf(a)}
		record(rec, nil)
		r.baselineUpdate(ctx, a, rec)
	}
	for _, a := range r.attrs {
		if ctx.Err() != nil {
			break
		}
		record(r.setAttrs(ctx, a))
	}
	if err := r.saveBaseline(); err != nil {
		mu.Lock()
		failed++
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	sort.SliceStable(r.res.Receipts, func(i, j int) bool { return r.res.Receipts[i].Path < r.res.Receipts[j].Path })
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("transfer interrupted: %w", err)
	}
	if failed > 0 {
		return &FilesError{Failed: failed, Total: len(r.res.Receipts), First: firstErr}
	}
	return nil
}

func (r *runner) dirOf(a plan.Action) string {
	if r.o.Mode == config.ModeBisync {
		return direction(a)
	}
	return ""
}

func (r *runner) emit(e Event) {
	if r.o.Progress != nil {
		r.o.Progress(e)
	}
}

func (r *runner) copy(ctx context.Context, a plan.Action) (Receipt, error) {
	c := &copier{src: r.sideConn(a.From), dst: r.sideConn(a.Target()), o: r.o, limit: r.limiter(), journal: r.journal}
	rec, err := c.copyFile(ctx, r.jobFor(a))
	rec.Direction = r.dirOf(a)
	rec.Reason = a.Reason
	r.emit(Event{Kind: EventFileDone, Path: a.Path, Size: rec.Size, Done: rec.Size, Err: err})
	if err == nil {
		r.baselineUpdate(ctx, a, rec)
	}
	return rec, err
}

// jobFor describes the file a copy action moves.
func (r *runner) jobFor(a plan.Action) fileJob {
	from, to := a.From, a.Target()
	e := a.Entry
	j := fileJob{Rel: a.Path, Src: r.sidePath(from, a.Path), Dst: r.sidePath(to, a.Path),
		Info:    Info{Path: e.Path, Size: e.Size, ModTime: e.ModTime, Mode: e.Mode.Perm()},
		Journal: r.journalKey(from, a.Path)}
	if r.singleDst != "" {
		j.Expect = r.o.SHA256
	}
	return j
}

func (r *runner) limiter() *limiter {
	r.limOnce.Do(func() { r.lim = newLimiter(r.o.BWLimit) })
	return r.lim
}

func (r *runner) mkdir(ctx context.Context, a plan.Action) (Receipt, error) {
	rec := Receipt{Path: a.Path, Op: OpMkdir, Reason: a.Reason, Direction: r.dirOf(a)}
	f, _, err := r.sideConn(a.Target()).get(ctx)
	if err == nil {
		perm := a.Entry.Mode.Perm()
		if perm == 0 {
			perm = 0o755
		}
		p := r.sidePath(a.Target(), a.Path)
		if err = f.(WritableFS).Mkdir(ctx, p, plan.DirPerm(perm)); err != nil {
			err = fmt.Errorf("create directory %s: %w", p, err)
		}
	}
	if err != nil {
		rec.Error = err.Error()
	} else {
		r.baselineUpdate(ctx, a, rec)
	}
	return rec, err
}

// setAttrs gives Path on the target the source's permission bits and
// mtime (a directory keeps rwx for its owner, plan.DirPerm, as mkdir does,
// so later runs can write into it). A directory whose attributes this user
// may not change (another owner's, group-writable) is left as it is: the
// receipt says so, and the run does not fail for it. Such a file is copied
// instead: the copy lands under the name as this user's, with the source's
// mode and mtime (what a copy would have done anyway).
func (r *runner) setAttrs(ctx context.Context, a plan.Action) (Receipt, error) {
	rec := Receipt{Path: a.Path, Op: OpAttrs, Reason: a.Reason, Direction: r.dirOf(a)}
	f, _, err := r.sideConn(a.Target()).get(ctx)
	if err == nil {
		p := r.sidePath(a.Target(), a.Path)
		perm := a.Entry.Mode.Perm()
		if perm == 0 {
			// Not listed: keep what is there, set the time.
			if ti, serr := f.Stat(ctx, p); serr == nil {
				perm = ti.Mode.Perm()
			}
		}
		if a.Entry.IsDir {
			perm = plan.DirPerm(perm)
		}
		if err = f.(WritableFS).SetAttrs(ctx, p, perm, a.Entry.ModTime); err != nil {
			err = fmt.Errorf("set mode and mtime: %w", err)
		}
		if err != nil && errors.Is(err, fs.ErrPermission) {
			if a.Entry.IsDir {
				rec.Reason += "; not permitted to change it, left as it is"
				return rec, nil
			}
			c := a
			c.Op, c.Reason = plan.Copy, a.Reason+"; not permitted to change it in place, copied"
			return r.copy(ctx, c)
		}
	}
	if err != nil {
		rec.Error = err.Error()
	}
	return rec, err
}

func (r *runner) remove(ctx context.Context, a plan.Action) (Receipt, error) {
	rec := Receipt{Path: a.Path, Reason: a.Reason, Direction: r.dirOf(a)}
	f, _, err := r.sideConn(a.Target()).get(ctx)
	if err != nil {
		rec.Error = err.Error()
		return rec, err
	}
	wfs := f.(WritableFS)
	p := r.sidePath(a.Target(), a.Path)
	switch a.Op {
	case plan.Delete:
		rec.Op = OpDelete
		if err = wfs.Remove(ctx, p); err != nil {
			err = fmt.Errorf("delete %s: %w", p, err)
		}
	case plan.Backup:
		rec.Op = OpBackup
		bd := r.o.BackupDir
		if !strings.HasPrefix(bd, "/") {
			bd = path.Join(r.dstRoot, bd)
		}
		to := path.Join(bd, a.Path)
		if err = mkdirAll(ctx, wfs, path.Dir(to)); err == nil {
			if _, serr := wfs.Stat(ctx, to); serr == nil {
				to += "." + time.Now().UTC().Format("20060102T150405Z")
			}
			err = wfs.Rename(ctx, p, to)
		}
		if err != nil {
			err = fmt.Errorf("move %s to the backup directory %s: %w", p, bd, err)
		}
	case plan.Conflict:
		rec.Op = OpConflict
		to := r.sidePath(a.Target(), a.ConflictPath)
		if err = wfs.Rename(ctx, p, to); err != nil {
			err = fmt.Errorf("keep conflicting %s as %s: %w", p, to, err)
		}
	}
	if err != nil {
		rec.Error = err.Error()
	} else {
		r.baselineUpdate(ctx, a, rec)
	}
	return rec, err
}

// mkdirAll creates p and its missing parents.
func mkdirAll(ctx context.Context, f WritableFS, p string) error {
	if fi, err := f.Stat(ctx, p); err == nil {
		if !fi.IsDir {
			return fmt.Errorf("%s is not a directory", p)
		}
		return nil
	}
	if parent := path.Dir(p); parent != p {
		if err := mkdirAll(ctx, f, parent); err != nil {
			return err
		}
	}
	return f.Mkdir(ctx, p, 0o755)
}
