package plan

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"testing"
	"time"
)

// This file holds test helpers: compact entry constructors, a compact
// rendering of actions, and an in-memory executor that carries out a plan on
// two trees and fails on any action that is out of order (a file copied into
// a directory that does not exist yet, a directory removed before its
// contents, a rename onto an existing name).

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// file makes a file entry; content stands for the data: its length is the
// size and its "hash" is derived from it; sec is the mtime in seconds after t0.
func file(p, content string, sec int) Entry {
	return Entry{Path: p, Size: int64(len(content)), ModTime: t0.Add(time.Duration(sec) * time.Second), Mode: 0o644, Hash: hashOf(content)}
}

// nohash drops the hash of file entries.
func nohash(es ...Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		e.Hash = ""
		out[i] = e
	}
	return out
}

func dir(p string) Entry { return Entry{Path: p, IsDir: true, Mode: fs.ModeDir | 0o755} }

// dirT makes a directory entry whose mtime is known (sec after t0).
func dirT(p string, sec int) Entry {
	e := dir(p)
	e.ModTime = t0.Add(time.Duration(sec) * time.Second)
	return e
}

func hashOf(content string) string { return fmt.Sprintf("%064x", []byte(content)) }

func ls(es ...Entry) []Entry { return es }

// render gives a compact form of a plan: "op path from" (+ " as cp").
func render(acts []Action) []string {
	out := make([]string, 0, len(acts))
	for _, a := range acts {
		s := fmt.Sprintf("%s %s %s", a.Op, a.Path, a.From)
		if a.ConflictPath != "" {
			s += " as " + a.ConflictPath
		}
		out = append(out, s)
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func checkPlan(t *testing.T, got []Action, want []string) {
	t.Helper()
	if r := render(got); !sameStrings(r, want) {
		t.Errorf("plan:\n  got  %q\n  want %q", r, want)
	}
}

// tree is an in-memory side: path -> entry, with every directory listed.
type tree map[string]Entry

func mkTree(es []Entry) tree {
	t := tree{}
	for _, e := range es {
		t[e.Path] = e
		for q := parent(e.Path); q != ""; q = parent(q) {
			if _, ok := t[q]; !ok {
				t[q] = dir(q)
			}
		}
	}
	return t
}

func (t tree) list() []Entry {
	out := make([]Entry, 0, len(t))
	for _, e := range t {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// execute carries out acts on the two trees (index A and B), Attrs
// included (a directory gets DirPerm, as an engine does); backup collects
// Backup moves. It reports ordering violations as errors. If bl is
// not nil each action is applied to it after it succeeded.
func execute(sides [2]tree, acts []Action, backup tree, bl *Baseline) error {
	attrsSet := map[string]bool{}
	for i, a := range acts {
		tgt := sides[a.Target()]
		src := sides[a.From]
		needParent := func(p string) error {
			if q := parent(p); q != "" {
				if e, ok := tgt[q]; !ok || !e.IsDir {
					return fmt.Errorf("action %d %v: parent %s is not a directory on %s", i, a, q, a.Target())
				}
			}
			return nil
		}
		switch a.Op {
		case Copy:
			se, ok := src[a.Path]
			if !ok || se.IsDir {
				return fmt.Errorf("action %d %v: no source file on %s", i, a, a.From)
			}
			if se.Hash != a.Entry.Hash || se.Size != a.Entry.Size || a.Entry.Path != a.Path {
				return fmt.Errorf("action %d %v: Entry %+v does not describe the source %+v", i, a, a.Entry, se)
			}
			if err := needParent(a.Path); err != nil {
				return err
			}
			if te, ok := tgt[a.Path]; ok && te.IsDir {
				return fmt.Errorf("action %d %v: a directory is in the way on %s", i, a, a.Target())
			}
			tgt[a.Path] = se
		case Mkdir:
			if err := needParent(a.Path); err != nil {
				return err
			}
			if te, ok := tgt[a.Path]; ok {
				return fmt.Errorf("action %d %v: %s exists on %s (dir=%v)", i, a, a.Path, a.Target(), te.IsDir)
			}
			tgt[a.Path] = dir(a.Path)
		case Delete, Backup:
			te, ok := tgt[a.Path]
			if !ok {
				return fmt.Errorf("action %d %v: nothing to delete on %s", i, a, a.Target())
			}
			for p := range tgt {
				if strings.HasPrefix(p, a.Path+"/") {
					return fmt.Errorf("action %d %v: %s not empty on %s (has %s)", i, a, a.Path, a.Target(), p)
				}
			}
			if a.Op == Backup {
				if te.IsDir {
					return fmt.Errorf("action %d %v: backup of a directory", i, a)
				}
				backup[a.Path] = te
			}
			delete(tgt, a.Path)
		case Conflict:
			te, ok := tgt[a.Path]
			if !ok || te.IsDir {
				return fmt.Errorf("action %d %v: no file to rename on %s", i, a, a.Target())
			}
			if _, ok := tgt[a.ConflictPath]; ok {
				return fmt.Errorf("action %d %v: conflict name taken on %s", i, a, a.Target())
			}
			delete(tgt, a.Path)
			te.Path = a.ConflictPath
			tgt[a.ConflictPath] = te
		case Attrs:
			te, ok := tgt[a.Path]
			if !ok || te.IsDir != a.Entry.IsDir {
				return fmt.Errorf("action %d %v: nothing of that type on %s", i, a, a.Target())
			}
			te.Mode, te.ModTime = a.Entry.Mode, a.Entry.ModTime
			if te.IsDir { // as an engine does
				te.Mode = fs.ModeDir | DirPerm(a.Entry.Mode.Perm())
			}
			tgt[a.Path] = te
			attrsSet[a.Path] = true
		case Skip:
		default:
			return fmt.Errorf("action %d: unknown op %v", i, a.Op)
		}
		if a.Op != Skip && a.Op != Attrs && attrsSet[parent(a.Path)] {
			return fmt.Errorf("action %d %v: its directory's attributes were already set", i, a)
		}
		if bl != nil {
			bl.Apply(a)
		}
	}
	return nil
}

// grouped reorders a plan the way an engine may: removals, Conflict
// renames, Mkdirs, Copies, Skips (each group in plan order).
func grouped(acts []Action) []Action {
	rank := map[Op]int{Delete: 0, Backup: 0, Conflict: 1, Mkdir: 2, Copy: 3, Skip: 4, Attrs: 5}
	out := make([]Action, 0, len(acts))
	for r := 0; r <= 5; r++ {
		for _, a := range acts {
			if rank[a.Op] == r {
				out = append(out, a)
			}
		}
	}
	return out
}

// sameData compares two trees by type, size and hash.
func sameData(x, y tree) string {
	for p, e := range x {
		f, ok := y[p]
		switch {
		case !ok:
			return p + " only on the first"
		case e.IsDir != f.IsDir:
			return p + ": type differs"
		case !e.IsDir && (e.Size != f.Size || e.Hash != f.Hash):
			return p + ": data differs"
		}
	}
	for p := range y {
		if _, ok := x[p]; !ok {
			return p + " only on the second"
		}
	}
	return ""
}
