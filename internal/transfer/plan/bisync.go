package plan

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// BisyncOptions control Bisync.
type BisyncOptions struct {
	// Checksum decides "changed" and "identical" by Hash (both sides must
	// list hashes for their files; a baseline entry without a hash falls
	// back to size+mtime, as a baseline may come from a run without it).
	Checksum bool
	// ConflictSuffix names the losing copy of a conflict:
	// "<name>.<suffix>-<side>-<UTC time><ext>". Default "conflict".
	ConflictSuffix string
	// Now stamps conflict names; zero means time.Now().
	Now time.Time
	// ModifyWindow is the mtime tolerance after truncation to seconds.
	ModifyWindow time.Duration
}

// Bisync plans a two-way synchronisation of a and b against base, the state
// both sides agreed on after the last run (see Baseline):
//
//   - a change on one side only (new, modified, deleted, or a type change)
//     propagates to the other side;
//   - changed on both sides: identical copies (equal hashes when both are
//     known, else equal size and mtime) are a Skip that updates the
//     baseline; different copies are a conflict: both are kept, the copy of
//     B under ConflictPath on both sides (a file against a directory: the
//     file is renamed, on whichever side it is);
//   - deleted on one side, modified on the other: the modified file is kept
//     and copied back (and its directories recreated);
//   - deleted on both sides: a Skip that removes it from the baseline;
//   - first run (empty base): the union of both sides, same path with
//     different data is a conflict.
//
// A side with no entries while the baseline has some is an *EmptySideError.
func Bisync(base, a, b []Entry, o BisyncOptions) ([]Action, error) {
	if o.ModifyWindow < 0 {
		return nil, fmt.Errorf("bisync: negative modify window %v", o.ModifyWindow)
	}
	suffix := o.ConflictSuffix
	if suffix == "" {
		suffix = "conflict"
	}
	if strings.ContainsAny(suffix, "/\x00") || suffix == "." || suffix == ".." {
		return nil, fmt.Errorf("bisync: conflict suffix %q: must be a plain name", suffix)
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	O, err := index(base, "baseline")
	if err != nil {
		return nil, fmt.Errorf("bisync: %w", err)
	}
	EA, err := index(a, "side A")
	if err != nil {
		return nil, fmt.Errorf("bisync: %w", err)
	}
	EB, err := index(b, "side B")
	if err != nil {
		return nil, fmt.Errorf("bisync: %w", err)
	}
	if len(base) > 0 {
		if len(a) == 0 {
			return nil, &EmptySideError{Side: A, Baseline: len(base)}
		}
		if len(b) == 0 {
			return nil, &EmptySideError{Side: B, Baseline: len(base)}
		}
	}
	sides := [2]map[string]Entry{EA, EB}

	paths := union(O, EA, EB)
	taken := make(map[string]bool, len(paths))
	for _, p := range paths {
		taken[p] = true
	}
	stamp := now.UTC().Format("20060102T150405Z")
	conflictName := func(p string, loser Side) string {
		dir, name := path.Split(p)
		ext := path.Ext(name)
		stem := strings.TrimSuffix(name, ext)
		if stem == "" { // ".bashrc": no extension
			stem, ext = name, ""
		}
		cand := fmt.Sprintf("%s%s.%s-%s-%s%s", dir, stem, suffix, loser, stamp, ext)
		for i := 2; taken[cand]; i++ {
			cand = fmt.Sprintf("%s%s.%s-%s-%s-%d%s", dir, stem, suffix, loser, stamp, i, ext)
		}
		taken[cand] = true
		return cand
	}

	// changed reports whether side x's entry differs from the baseline.
	changed := func(x Entry, side Side, o0 Entry, inO bool) (bool, error) {
		if !inO || x.IsDir != o0.IsDir {
			return true, nil
		}
		if x.IsDir {
			return false, nil
		}
		if x.Size != o0.Size {
			return true, nil
		}
		if o.Checksum && x.Hash == "" {
			return false, missingHash("side "+side.String(), x.Path)
		}
		if x.Hash != "" && o0.Hash != "" {
			return !strings.EqualFold(x.Hash, o0.Hash), nil
		}
		return !sameMTime(x.ModTime, o0.ModTime, o.ModifyWindow), nil
	}
	// identical reports whether the files on both sides hold the same data.
	identical := func(x, y Entry) (bool, error) {
		if x.Size != y.Size {
			return false, nil
		}
		if x.Hash != "" && y.Hash != "" {
			return strings.EqualFold(x.Hash, y.Hash), nil
		}
		if o.Checksum {
			if x.Hash == "" {
				return false, missingHash("side A", x.Path)
			}
			return false, missingHash("side B", y.Path)
		}
		return sameMTime(x.ModTime, y.ModTime, o.ModifyWindow), nil
	}

	type perPath struct{ removals, creates []Action }
	plans := make(map[string]*perPath, len(paths))
	liveChild := map[string]bool{}         // directory with a descendant present after the plan
	for i := len(paths) - 1; i >= 0; i-- { // children before their parents
		p := paths[i]
		pp := &perPath{}
		plans[p] = pp
		o0, inO := O[p]
		var in [2]bool
		var e [2]Entry
		for s := A; s <= B; s++ {
			e[s], in[s] = sides[s][p]
		}
		keep := true
		copyFrom := func(s Side, reason string) {
			op := Copy
			if e[s].IsDir {
				op = Mkdir
			}
			pp.creates = append(pp.creates, Action{Op: op, Path: p, From: s, Reason: reason, Entry: e[s]})
		}
		switch {
		case !in[A] && !in[B]: // only in the baseline
			pp.creates = append(pp.creates, Action{Op: Skip, Path: p, From: A, Reason: "deleted on both sides"})
			keep = false

		case in[A] != in[B]: // one side only
			s := A
			if in[B] {
				s = B
			}
			gone := s.Other()
			if !inO {
				copyFrom(s, "new on "+s.String())
				break
			}
			ch, err := changed(e[s], s, o0, inO)
			if err != nil {
				return nil, fmt.Errorf("bisync: %w", err)
			}
			switch {
			case e[s].IsDir && !ch && liveChild[p]:
				copyFrom(s, fmt.Sprintf("deleted on %s, but %s has new or changed files inside", gone, s))
			case !ch && (!e[s].IsDir || !liveChild[p]):
				// the deletion propagates: delete on s, coming from gone
				pp.removals = append(pp.removals, Action{Op: Delete, Path: p, From: gone, Reason: "deleted on " + gone.String()})
				keep = false
			case e[s].IsDir:
				copyFrom(s, fmt.Sprintf("deleted on %s, but %s changed it", gone, s))
			default:
				copyFrom(s, fmt.Sprintf("deleted on %s, changed on %s: keeping the changed file", gone, s))
			}

		case e[A].IsDir && e[B].IsDir:
			if !inO || !o0.IsDir {
				ag := e[A]
				pp.creates = append(pp.creates, Action{Op: Skip, Path: p, From: A, Reason: "new directory on both sides", Entry: ag})
			}

		case !e[A].IsDir && !e[B].IsDir: // two files
			chA, err := changed(e[A], A, o0, inO)
			if err != nil {
				return nil, fmt.Errorf("bisync: %w", err)
			}
			chB, err := changed(e[B], B, o0, inO)
			if err != nil {
				return nil, fmt.Errorf("bisync: %w", err)
			}
			switch {
			case !chA && !chB:
			case chA && !chB:
				copyFrom(A, "changed on A")
			case !chA && chB:
				copyFrom(B, "changed on B")
			default:
				same, err := identical(e[A], e[B])
				if err != nil {
					return nil, fmt.Errorf("bisync: %w", err)
				}
				what := "both changed"
				if !inO {
					what = "both new"
				}
				if same {
					ag := e[A]
					if ag.Hash == "" {
						ag.Hash = e[B].Hash
					}
					pp.creates = append(pp.creates, Action{Op: Skip, Path: p, From: A, Reason: "identical on both sides (" + what + ")", Entry: ag})
					break
				}
				cp := conflictName(p, B)
				lost := e[B]
				lost.Path = cp
				pp.creates = append(pp.creates,
					Action{Op: Conflict, Path: p, From: A, ConflictPath: cp, Reason: "conflict: " + what},
					Action{Op: Copy, Path: p, From: A, Reason: "conflict: " + what + ", A keeps the name", Entry: e[A]},
					Action{Op: Copy, Path: cp, From: B, Reason: "conflict: " + what + ", copy of B", Entry: lost},
				)
			}

		default: // a file on one side, a directory on the other
			f := A
			if e[A].IsDir {
				f = B
			}
			d := f.Other()
			fch, err := changed(e[f], f, o0, inO)
			if err != nil {
				return nil, fmt.Errorf("bisync: %w", err)
			}
			switch {
			case inO && !o0.IsDir && !fch:
				// the file is unchanged: d turned it into a directory
				pp.removals = append(pp.removals, Action{Op: Delete, Path: p, From: d, Reason: "replaced by a directory on " + d.String()})
				copyFrom(d, "replaced a file on "+d.String())
			case inO && o0.IsDir && !liveChild[p]:
				// f turned the directory into a file and d changed nothing inside
				pp.removals = append(pp.removals, Action{Op: Delete, Path: p, From: f, Reason: "replaced by a file on " + f.String()})
				copyFrom(f, "replaced a directory on "+f.String())
			default:
				cp := conflictName(p, f)
				lost := e[f]
				lost.Path = cp
				pp.creates = append(pp.creates,
					Action{Op: Conflict, Path: p, From: d, ConflictPath: cp, Reason: fmt.Sprintf("conflict: file on %s, directory on %s", f, d)},
					Action{Op: Copy, Path: cp, From: f, Reason: "conflict: copy of the file on " + f.String(), Entry: lost},
				)
				copyFrom(d, "conflict: the directory keeps the name")
			}
		}
		if keep {
			liveChild[parent(p)] = true
		}
	}

	var removals, rest []Action
	for _, p := range paths {
		pp := plans[p]
		removals = append(removals, pp.removals...)
		rest = append(rest, pp.creates...)
	}
	sortRemovals(removals)
	return append(removals, rest...), nil
}
