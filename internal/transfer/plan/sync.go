package plan

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// SyncOptions control Sync.
type SyncOptions struct {
	// Checksum compares files of equal size by Hash instead of mtime.
	Checksum bool
	// Delete removes destination entries the source does not have.
	Delete bool
	// MaxDelete is the most entries (files and directories) the plan may
	// remove from the destination, for whatever reason (extraneous, or
	// replaced by an entry of another type); beyond it Sync fails with a
	// *MaxDeleteError and returns no actions. < 0 means unlimited, 0 means
	// nothing may be removed. Callers choose the default.
	MaxDelete int
	// BackupDir, when set, turns the removal of files into Backup actions
	// (directories hold no data: they are deleted once empty). A relative
	// BackupDir is taken relative to the destination root: destination
	// entries under it are left alone, and a source with entries under it
	// is an error.
	BackupDir string
	// ModifyWindow is the tolerance of the mtime comparison, after
	// truncation to whole seconds. 0: same second.
	ModifyWindow time.Duration
}

// Sync plans a one-way mirror from src (side A) to dst (side B): new and
// changed files are copied (changed: by size, then mtime, or by hash with
// Checksum), missing directories created, and with Delete, destination
// entries the source lacks are removed (or moved to BackupDir). An entry of
// another type in the way (a file where the source has a directory, or the
// other way round) is removed first; a non-empty destination directory in
// the way of a source file is only removed with Delete (else a Skip says
// so). Attributes follow (see Comparing files): Attrs actions come last.
// Unchanged entries produce no action.
func Sync(src, dst []Entry, o SyncOptions) ([]Action, error) {
	if o.ModifyWindow < 0 {
		return nil, fmt.Errorf("sync: negative modify window %v", o.ModifyWindow)
	}
	S, err := index(src, "source")
	if err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	D, err := index(dst, "destination")
	if err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	protect := map[string]bool{} // ancestors of a backup dir inside the destination
	if o.BackupDir != "" && !strings.HasPrefix(o.BackupDir, "/") {
		bd := path.Clean(o.BackupDir)
		if bd == "." {
			return nil, fmt.Errorf("sync: backup dir %q is the destination root", o.BackupDir)
		}
		if bd != ".." && !strings.HasPrefix(bd, "../") {
			under := func(p string) bool { return p == bd || strings.HasPrefix(p, bd+"/") }
			for p := range S {
				if under(p) {
					return nil, fmt.Errorf("sync: source has %s, inside the backup dir %s", p, bd)
				}
			}
			for p := range D {
				if under(p) {
					delete(D, p)
				}
			}
			for q := parent(bd); q != ""; q = parent(q) {
				protect[q] = true
			}
		}
	}
	hasChild := map[string]bool{}
	for p := range D {
		hasChild[parent(p)] = true
	}

	var removals, rest, attrs []Action
	files, dirs := 0, 0
	remove := func(d Entry, reason string) {
		op := Delete
		if o.BackupDir != "" && !d.IsDir {
			op = Backup
		}
		if d.IsDir {
			dirs++
		} else {
			files++
		}
		removals = append(removals, Action{Op: op, Path: d.Path, From: A, Reason: reason})
	}
	create := func(s Entry, reason string) {
		op := Copy
		if s.IsDir {
			op = Mkdir
		}
		rest = append(rest, Action{Op: op, Path: s.Path, From: A, Reason: reason, Entry: s})
	}

	for _, p := range union(S, D) {
		s, inS := S[p]
		d, inD := D[p]
		switch {
		case inS && !inD:
			create(s, "new")
		case inD && protect[p] && (!inS || !s.IsDir):
			if inS {
				rest = append(rest, Action{Op: Skip, Path: p, From: A,
					Reason: "destination directory holds the backup dir"})
			}
		case !inS && inD:
			if o.Delete {
				remove(d, "extraneous")
			}
		case s.IsDir && d.IsDir:
			// attributes only: see below
		case s.IsDir && !d.IsDir:
			remove(d, "type clash: replaced by a directory")
			create(s, "type clash: replaces a file")
		case !s.IsDir && d.IsDir:
			if !o.Delete && hasChild[p] {
				rest = append(rest, Action{Op: Skip, Path: p, From: A,
					Reason: "destination is a non-empty directory; --delete replaces it with the file"})
				continue
			}
			remove(d, "type clash: replaced by a file")
			create(s, "type clash: replaces a directory")
		default: // two files
			reason, err := fileDiffers(s, d, o.Checksum, o.ModifyWindow)
			if err != nil {
				return nil, fmt.Errorf("sync: %w", err)
			}
			switch {
			case reason != "":
				create(s, reason)
			case permDiffers(s, d):
				attrs = append(attrs, Action{Op: Attrs, Path: p, From: A, Reason: "mode changed", Entry: s})
			case o.Checksum && !sameMTime(s.ModTime, d.ModTime, o.ModifyWindow):
				attrs = append(attrs, Action{Op: Attrs, Path: p, From: A, Reason: "mtime changed", Entry: s})
			}
		}
	}
	if o.MaxDelete >= 0 && files+dirs > o.MaxDelete {
		return nil, &MaxDeleteError{Files: files, Dirs: dirs, Max: o.MaxDelete}
	}
	// Directories: after everything else, those whose attributes differ and
	// those the plan changes (an entry added, replaced or removed in them).
	changed := map[string]bool{}
	for _, list := range [][]Action{removals, rest} {
		for _, a := range list {
			if a.Op != Skip {
				changed[parent(a.Path)] = true
			}
		}
	}
	for _, p := range union(S) {
		s := S[p]
		if !s.IsDir || s.ModTime.IsZero() {
			continue // implied by a listed entry: nothing known to set
		}
		d, inD := D[p]
		var reason string
		switch {
		case !inD || !d.IsDir:
			reason = "new directory"
		case permDiffers(s, d):
			reason = "mode changed"
		case !sameMTime(s.ModTime, d.ModTime, o.ModifyWindow):
			reason = "mtime changed"
		case changed[p]:
			reason = "contents changed"
		default:
			continue
		}
		attrs = append(attrs, Action{Op: Attrs, Path: p, From: A, Reason: reason, Entry: s})
	}
	sort.SliceStable(attrs, func(i, j int) bool { return treeLess(attrs[i].Path, attrs[j].Path) })
	sortRemovals(removals)
	return append(append(removals, rest...), attrs...), nil
}

// permDiffers reports whether two entries list different permission bits
// (both must list some: a listing without modes compares equal). A
// directory is compared with rwx for its owner added to the source's mode,
// as an engine gives it (DirPerm).
func permDiffers(s, d Entry) bool {
	sp, dp := s.Mode.Perm(), d.Mode.Perm()
	if s.IsDir {
		sp = DirPerm(sp)
	}
	return sp != 0 && dp != 0 && sp != dp
}

// DirPerm is the mode an engine gives a directory whose source has perm:
// rwx for its owner always, so that later runs can write into it.
func DirPerm(perm fs.FileMode) fs.FileMode {
	if perm == 0 {
		return 0
	}
	return perm | 0o700
}

// fileDiffers compares a source and a destination file and returns why the
// source must be copied, or "".
func fileDiffers(s, d Entry, checksum bool, window time.Duration) (string, error) {
	if s.Size != d.Size {
		return "size changed", nil
	}
	if checksum {
		if s.Hash == "" {
			return "", missingHash("source", s.Path)
		}
		if d.Hash == "" {
			return "", missingHash("destination", d.Path)
		}
		if !strings.EqualFold(s.Hash, d.Hash) {
			return "checksum differs", nil
		}
		return "", nil
	}
	if !sameMTime(s.ModTime, d.ModTime, window) {
		return "mtime changed", nil
	}
	return "", nil
}
