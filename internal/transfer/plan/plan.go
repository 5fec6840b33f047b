// Package plan decides what a sync or a bisync has to do, from listings of the
// two sides (and, for bisync, the baseline of the last agreed state). It does no
// I/O except loading and saving a baseline: the transfer engine lists the sides,
// calls Sync or Bisync, and carries out the returned actions in order.
//
// # Actions
//
// Every action applies to one side, Target(), and names the side the change
// comes from, From: for Sync everything comes from A (the source) and applies to
// B (the destination). Actions are returned in an order that is safe to carry
// out one after the other:
//
//  1. removals (Delete, Backup), deepest paths first, so a directory is only
//     removed after its contents: Delete of a directory means "remove this now
//     empty directory", never a recursive removal;
//  2. then everything else (Conflict, Mkdir, Copy, Skip) in tree order, so a
//     directory is created before the files in it; for one path the actions
//     come in the order they must run (a Conflict rename before the Copy that
//     takes its place);
//  3. last, attribute updates (Attrs, from Sync) in tree order: a
//     directory's mtime changes whenever an entry in it is added, replaced
//     or removed, so it is set once everything else is done.
//
// An engine may also regroup them as removals, then Conflict renames, then
// Mkdirs (in the order given), then Copies, then Attrs: the Copy actions of
// one plan are independent of each other (no two touch the same path on the
// same side) and may run concurrently.
//
// Paths are slash-separated and relative to the side's root. Listings need not
// contain every directory: the parents of listed entries are implied (their
// Mode is fs.ModeDir with no permission bits: the engine picks its default).
//
// # Comparing files
//
// Modification times are compared in whole seconds (SFTP version 3 carries
// seconds only), and two times are equal when they differ by at most
// ModifyWindow after truncation (0, the default: the same second; 1s suits
// FAT, like rsync --modify-window=1). Directory times are never compared.
//
// With Checksum, files of equal size are compared by Hash, which both sides
// must then provide: a missing hash is an error naming the file (the engine
// asked for checksums and must compute them), never a silent fallback. Files
// whose sizes differ need no hash.
//
// Data decides what is copied. Sync then also mirrors attributes, as rsync -a
// does: a file whose data is the same but whose permission bits differ (or,
// with Checksum, whose mtime differs) gets an Attrs action instead of a copy,
// and every source directory whose mtime is known gets one when the
// destination's differs in mtime or permission bits, or when the plan adds,
// replaces or removes anything in it (a new directory too). Permission bits
// are compared only when both sides list them, a directory's with rwx for
// its owner added (DirPerm). Bisync decides by data alone and leaves
// attributes as they are.
package plan

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// Entry is one file or directory of a listing.
type Entry struct {
	Path    string // slash-separated, relative to the root
	Size    int64
	ModTime time.Time
	Mode    fs.FileMode
	IsDir   bool
	Hash    string // hex SHA-256, "" if unknown
}

// Op is what an action does.
type Op int

const (
	// Copy transfers the file Path from side From to the other side
	// (Target), landing atomically under Path. Action.Entry is the source
	// entry (size, mtime and mode to preserve).
	Copy Op = iota
	// Delete removes Path on Target: a file, or a directory that the actions
	// before it have emptied.
	Delete
	// Backup moves the file Path on Target into the backup directory
	// (path.Join(BackupDir, Path)) instead of deleting it. Sync only.
	Backup
	// Mkdir creates the directory Path on Target (Action.Entry.Mode).
	Mkdir
	// Conflict renames Path to ConflictPath on Target: that copy loses the
	// name; the copy on From keeps it. The plan then holds the Copy actions
	// that propagate both copies (Path from From, ConflictPath from Target),
	// or a Mkdir when the winner is a directory. Bisync only.
	//
	// If the rename fails, the engine must not carry out the later actions
	// on Path or ConflictPath (a Copy of Path would overwrite the copy that
	// was to be kept): internal/transfer skips them, reports them as
	// failed and leaves the baseline alone, so the next run sees the
	// conflict again.
	Conflict
	// Attrs sets the permission bits and mtime of Path on Target to those
	// of Action.Entry (the source's; a directory's through DirPerm): the
	// data is already the same. Sync makes them; internal/transfer also
	// uses them in copy mode for the directories a run creates.
	Attrs
	// Skip changes nothing on either side. In a bisync it still updates the
	// baseline (see Baseline.Apply): both sides hold the same data, or both
	// deleted it. In a sync it reports something the plan declined to do
	// (Reason says why).
	Skip
)

func (o Op) String() string {
	switch o {
	case Copy:
		return "copy"
	case Delete:
		return "delete"
	case Backup:
		return "backup"
	case Mkdir:
		return "mkdir"
	case Conflict:
		return "conflict"
	case Attrs:
		return "attrs"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Side names one side of a sync (A = source, B = destination) or a bisync.
type Side int

const (
	A Side = iota
	B
)

func (s Side) String() string {
	switch s {
	case A:
		return "A"
	case B:
		return "B"
	}
	return fmt.Sprintf("side(%d)", int(s))
}

// Other returns the opposite side.
func (s Side) Other() Side {
	if s == A {
		return B
	}
	return A
}

// Action is one step of a plan.
type Action struct {
	Op   Op
	Path string
	// From is the side the change comes from: the side the data is copied
	// from for Copy, the side where the file was deleted for Delete, the
	// side whose copy keeps the name for Conflict. The action applies to
	// the other side, Target().
	From   Side
	Reason string // "new", "size changed", "mtime changed", "checksum differs", "extraneous", "changed on A", "conflict: both changed", ...
	// ConflictPath is the name the losing copy gets (Conflict only), e.g.
	// "x.conflict-B-20261127T120000Z.txt", unique among all listed paths.
	ConflictPath string
	// Entry is the entry being created, with Path equal to the action's
	// Path: the source entry for Copy and Mkdir, the agreed entry for a
	// bisync Skip of identical copies; zero for Delete, Backup, Conflict and
	// a Skip of a path deleted on both sides.
	Entry Entry
}

// Target is the side the action changes.
func (a Action) Target() Side { return a.From.Other() }

func (a Action) String() string {
	s := fmt.Sprintf("%s %s %s->%s", a.Op, a.Path, a.From, a.Target())
	if a.ConflictPath != "" {
		s += " as " + a.ConflictPath
	}
	if a.Reason != "" {
		s += " (" + a.Reason + ")"
	}
	return s
}

// MaxDeleteError is returned by Sync when the plan would remove more entries
// than SyncOptions.MaxDelete allows. No actions are returned with it.
type MaxDeleteError struct {
	Files, Dirs int // entries the plan would remove
	Max         int
}

func (e *MaxDeleteError) Error() string {
	what := plural(e.Files, "file", "files")
	if e.Dirs > 0 {
		what = fmt.Sprintf("%d files and directories (%s, %s)", e.Files+e.Dirs,
			plural(e.Files, "file", "files"), plural(e.Dirs, "directory", "directories"))
	}
	return fmt.Sprintf("sync would delete %s, more than max_delete %d; nothing was changed", what, e.Max)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// EmptySideError is returned by Bisync when one side lists nothing while the
// baseline is not empty: most likely an unmounted disk or a wrong path, and
// propagating it would delete everything on the other side.
type EmptySideError struct {
	Side     Side
	Baseline int // entries in the baseline
}

func (e *EmptySideError) Error() string {
	return fmt.Sprintf("bisync: side %s is empty but the baseline lists %d entries; refusing to propagate a total deletion (is the disk mounted?); if the deletion is intended, remove the baseline to start over", e.Side, e.Baseline)
}

// ErrMissingHash is wrapped by the error returned when Checksum is set and a
// file of a listing has no hash.
var ErrMissingHash = errors.New("missing sha256")

// validPath reports why p is not a clean relative slash path, or "".
func validPath(p string) string {
	switch {
	case p == "" || p == ".":
		return "empty path"
	case strings.HasPrefix(p, "/"):
		return "absolute path"
	case strings.ContainsRune(p, 0):
		return "NUL in path"
	case path.Clean(p) != p:
		return "path is not clean"
	case p == ".." || strings.HasPrefix(p, "../"):
		return "path leaves the root"
	}
	return ""
}

// index validates a listing and returns it by path, with implied parent
// directories added.
func index(list []Entry, side string) (map[string]Entry, error) {
	m := make(map[string]Entry, len(list))
	for _, e := range list {
		if why := validPath(e.Path); why != "" {
			return nil, fmt.Errorf("%s listing: %q: %s", side, e.Path, why)
		}
		if _, dup := m[e.Path]; dup {
			return nil, fmt.Errorf("%s listing: %s is listed twice", side, e.Path)
		}
		if e.IsDir {
			e.Mode |= fs.ModeDir
		}
		m[e.Path] = e
	}
	for _, e := range list {
		for q := parent(e.Path); q != ""; q = parent(q) {
			pe, ok := m[q]
			if ok && !pe.IsDir {
				return nil, fmt.Errorf("%s listing: %s is listed under %s, which is not a directory", side, e.Path, q)
			}
			if ok {
				break // its own parents were (or will be) added from it
			}
			m[q] = Entry{Path: q, IsDir: true, Mode: fs.ModeDir}
		}
	}
	return m, nil
}

// parent returns the parent directory of a relative path, "" at the top.
func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

func depth(p string) int { return strings.Count(p, "/") }

// treeLess orders paths as a depth-first walk: a directory right before its
// contents ("a", "a/b", "a-c"), by comparing component by component.
func treeLess(x, y string) bool {
	n := min(len(x), len(y))
	for i := range n {
		a, b := x[i], y[i]
		switch {
		case a == b:
			continue
		case a == '/': // a separator sorts before any other byte
			return true
		case b == '/':
			return false
		}
		return a < b
	}
	return len(x) < len(y)
}

// removalLess orders removals deepest first, then in tree order.
func removalLess(x, y string) bool {
	if dx, dy := depth(x), depth(y); dx != dy {
		return dx > dy
	}
	return treeLess(x, y)
}

// union returns the paths of all maps in tree order.
func union(maps ...map[string]Entry) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range maps {
		for p := range m {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return treeLess(out[i], out[j]) })
	return out
}

// sameMTime compares modification times in whole seconds with a tolerance.
func sameMTime(x, y time.Time, window time.Duration) bool {
	d := x.Truncate(time.Second).Sub(y.Truncate(time.Second))
	if d < 0 {
		d = -d
	}
	return d <= window
}

// missingHash is the error for a file without a hash under Checksum.
func missingHash(side, p string) error {
	return fmt.Errorf("%s %s: %w (checksum comparison needs the hash of both copies)", side, p, ErrMissingHash)
}

// sortRemovals sorts removal actions deepest first.
func sortRemovals(acts []Action) {
	sort.SliceStable(acts, func(i, j int) bool { return removalLess(acts[i].Path, acts[j].Path) })
}
