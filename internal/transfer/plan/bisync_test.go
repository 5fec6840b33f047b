package plan

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

const stamp = "20261127T120000Z"

func TestBisync(t *testing.T) {
	tests := []struct {
		name       string
		base, a, b []Entry
		o          BisyncOptions
		want       []string
		reasons    map[string]string // path -> reason of its first action
	}{
		{name: "all empty", want: []string{}},
		{
			name:    "first run: union of both sides",
			a:       ls(file("x", "1", 0), file("d/in-a", "1", 0)),
			b:       ls(file("y", "2", 0), file("d/in-b", "2", 0)),
			want:    []string{"skip d A", "copy d/in-a A", "copy d/in-b B", "copy x A", "copy y B"},
			reasons: map[string]string{"x": "new on A", "y": "new on B", "d": "new directory on both sides"},
		},
		{
			name:    "first run: identical copies (hashes)",
			a:       ls(file("x", "1", 0)),
			b:       ls(file("x", "1", 9)),
			want:    []string{"skip x A"},
			reasons: map[string]string{"x": "identical on both sides (both new)"},
		},
		{
			name: "first run: no hashes, same size and mtime are identical",
			a:    nohash(file("x", "1", 3)),
			b:    nohash(file("x", "2", 3)),
			want: []string{"skip x A"},
		},
		{
			name:    "first run: differing copies are a conflict",
			a:       ls(file("dir/x.txt", "1", 0)),
			b:       ls(file("dir/x.txt", "2", 0)),
			want:    []string{"skip dir A", "conflict dir/x.txt A as dir/x.conflict-B-" + stamp + ".txt", "copy dir/x.txt A", "copy dir/x.conflict-B-" + stamp + ".txt B"},
			reasons: map[string]string{"dir/x.txt": "conflict: both new"},
		},
		{
			name: "unchanged: nothing",
			base: ls(file("x", "1", 0), dir("d")),
			a:    ls(file("x", "1", 0), dir("d")),
			b:    ls(file("x", "1", 0), dir("d")),
			want: []string{},
		},
		{
			name: "same hash as the baseline, other mtime: unchanged",
			base: ls(file("x", "1", 0)),
			a:    ls(file("x", "1", 50)),
			b:    ls(file("x", "1", 0)),
			want: []string{},
		},
		{
			name:    "changed on A",
			base:    ls(file("x", "1", 0), file("y", "1", 0)),
			a:       ls(file("x", "22", 5), file("y", "1", 0)),
			b:       ls(file("x", "1", 0), file("y", "1", 0)),
			want:    []string{"copy x A"},
			reasons: map[string]string{"x": "changed on A"},
		},
		{
			name:    "changed on B (mtime only, no hashes)",
			base:    nohash(file("x", "1", 0)),
			a:       nohash(file("x", "1", 0)),
			b:       nohash(file("x", "1", 7)),
			want:    []string{"copy x B"},
			reasons: map[string]string{"x": "changed on B"},
		},
		{
			name:    "new on B",
			base:    ls(file("x", "1", 0)),
			a:       ls(file("x", "1", 0)),
			b:       ls(file("x", "1", 0), file("n/new", "3", 0)),
			want:    []string{"mkdir n B", "copy n/new B"},
			reasons: map[string]string{"n/new": "new on B"},
		},
		{
			name:    "deleted on A propagates",
			base:    ls(file("x", "1", 0), file("y", "1", 0)),
			a:       ls(file("y", "1", 0)),
			b:       ls(file("x", "1", 0), file("y", "1", 0)),
			want:    []string{"delete x A"},
			reasons: map[string]string{"x": "deleted on A"},
		},
		{
			name: "directory deleted on B: contents first",
			base: ls(file("k", "1", 0), file("d/x", "1", 0), file("d/s/y", "1", 0)),
			a:    ls(file("k", "1", 0), file("d/x", "1", 0), file("d/s/y", "1", 0)),
			b:    ls(file("k", "1", 0)),
			want: []string{"delete d/s/y B", "delete d/s B", "delete d/x B", "delete d B"},
		},
		{
			name:    "deleted on both sides: baseline update",
			base:    ls(file("x", "1", 0), file("k", "1", 0)),
			a:       ls(file("k", "1", 0)),
			b:       ls(file("k", "1", 0)),
			want:    []string{"skip x A"},
			reasons: map[string]string{"x": "deleted on both sides"},
		},
		{
			name:    "both changed identically: no-op",
			base:    ls(file("x", "1", 0)),
			a:       ls(file("x", "2", 5)),
			b:       ls(file("x", "2", 6)),
			want:    []string{"skip x A"},
			reasons: map[string]string{"x": "identical on both sides (both changed)"},
		},
		{
			name:    "both changed differently: conflict, B renamed",
			base:    ls(file("notes", "1", 0)),
			a:       ls(file("notes", "2", 5)),
			b:       ls(file("notes", "3", 6)),
			want:    []string{"conflict notes A as notes.conflict-B-" + stamp, "copy notes A", "copy notes.conflict-B-" + stamp + " B"},
			reasons: map[string]string{"notes": "conflict: both changed"},
		},
		{
			name:    "deleted on A, modified on B: the modified file is kept",
			base:    ls(file("x", "1", 0), file("k", "1", 0)),
			a:       ls(file("k", "1", 0)),
			b:       ls(file("x", "2", 5), file("k", "1", 0)),
			want:    []string{"copy x B"},
			reasons: map[string]string{"x": "deleted on A, changed on B: keeping the changed file"},
		},
		{
			name:    "modified on A, deleted on B",
			base:    ls(file("x", "1", 0), file("k", "1", 0)),
			a:       ls(file("x", "2", 5), file("k", "1", 0)),
			b:       ls(file("k", "1", 0)),
			want:    []string{"copy x A"},
			reasons: map[string]string{"x": "deleted on B, changed on A: keeping the changed file"},
		},
		{
			name:    "directory deleted on A, a file in it modified on B: directory recreated",
			base:    ls(file("k", "1", 0), file("d/x", "1", 0), file("d/y", "1", 0)),
			a:       ls(file("k", "1", 0)),
			b:       ls(file("k", "1", 0), file("d/x", "2", 5), file("d/y", "1", 0)),
			want:    []string{"delete d/y A", "mkdir d B", "copy d/x B"},
			reasons: map[string]string{"d": "deleted on A, but B has new or changed files inside"},
		},
		{
			name: "directory deleted on A, a new file in it on B",
			base: ls(file("k", "1", 0), dir("d")),
			a:    ls(file("k", "1", 0)),
			b:    ls(file("k", "1", 0), file("d/new", "2", 5)),
			want: []string{"mkdir d B", "copy d/new B"},
		},
		{
			name:    "empty directory deleted on A",
			base:    ls(file("k", "1", 0), dir("d")),
			a:       ls(file("k", "1", 0)),
			b:       ls(file("k", "1", 0), dir("d")),
			want:    []string{"delete d A"},
			reasons: map[string]string{"d": "deleted on A"},
		},
		{
			name:    "type change on A: file became a directory",
			base:    ls(file("p", "1", 0)),
			a:       ls(file("p/n", "2", 0)),
			b:       ls(file("p", "1", 0)),
			want:    []string{"delete p A", "mkdir p A", "copy p/n A"},
			reasons: map[string]string{"p": "replaced by a directory on A"},
		},
		{
			name:    "type change on A: directory became a file, B unchanged inside",
			base:    ls(file("p/x", "1", 0), file("p/s/y", "1", 0)),
			a:       ls(file("p", "2", 0)),
			b:       ls(file("p/x", "1", 0), file("p/s/y", "1", 0)),
			want:    []string{"delete p/s/y A", "delete p/s A", "delete p/x A", "delete p A", "copy p A"},
			reasons: map[string]string{"p": "replaced by a file on A"},
		},
		{
			name: "type change on A, B changed inside: conflict, the file renamed",
			base: ls(file("p/x", "1", 0), file("p/y", "1", 0)),
			a:    ls(file("p", "2", 0)),
			b:    ls(file("p/x", "3", 5), file("p/y", "1", 0)),
			want: []string{"delete p/y A", "conflict p B as p.conflict-A-" + stamp, "copy p.conflict-A-" + stamp + " A", "mkdir p B", "copy p/x B"},
		},
		{
			name:    "first run: file on A, directory on B",
			a:       ls(file("p.txt", "1", 0)),
			b:       ls(file("p.txt/in", "2", 0)),
			want:    []string{"conflict p.txt B as p.conflict-A-" + stamp + ".txt", "copy p.conflict-A-" + stamp + ".txt A", "mkdir p.txt B", "copy p.txt/in B"},
			reasons: map[string]string{"p.txt": "conflict: file on A, directory on B"},
		},
		{
			name: "conflict names: dotfile, no extension, custom suffix, taken names",
			a:    ls(file(".bashrc", "1", 0), file("Makefile", "1", 0), file("x.tar.gz", "1", 0), file("x.tar.sync-B-"+stamp+".gz", "9", 0)),
			b:    ls(file(".bashrc", "2", 0), file("Makefile", "2", 0), file("x.tar.gz", "2", 0)),
			o:    BisyncOptions{ConflictSuffix: "sync", Now: time.Date(2026, 11, 27, 13, 0, 0, 0, time.FixedZone("CET", 3600))},
			want: []string{
				"conflict .bashrc A as .bashrc.sync-B-" + stamp, "copy .bashrc A", "copy .bashrc.sync-B-" + stamp + " B",
				"conflict Makefile A as Makefile.sync-B-" + stamp, "copy Makefile A", "copy Makefile.sync-B-" + stamp + " B",
				"conflict x.tar.gz A as x.tar.sync-B-" + stamp + "-2.gz", "copy x.tar.gz A", "copy x.tar.sync-B-" + stamp + "-2.gz B",
				"copy x.tar.sync-B-" + stamp + ".gz A",
			},
		},
		{
			name: "checksum: baseline without hash falls back to mtime",
			base: nohash(file("x", "1", 0)),
			a:    ls(file("x", "1", 0)),
			b:    ls(file("x", "2", 4)),
			o:    BisyncOptions{Checksum: true},
			want: []string{"copy x B"},
		},
		{
			name: "empty base and an empty side is a first run",
			a:    ls(),
			b:    ls(file("x", "1", 0)),
			want: []string{"copy x B"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.Now.IsZero() {
				tc.o.Now = t0
			}
			got, err := Bisync(tc.base, tc.a, tc.b, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			checkPlan(t, got, tc.want)
			for p, r := range tc.reasons {
				found := ""
				for _, a := range got {
					if a.Path == p {
						found = a.Reason
						break
					}
				}
				if found != r {
					t.Errorf("reason for %s = %q, want %q", p, found, r)
				}
			}
			converges(t, tc.base, tc.a, tc.b, got, tc.o)
		})
	}
}

// converges carries out a bisync plan, checks that both sides end up equal,
// that the baseline (updated per action) gives an empty second plan, and
// that no new or changed data was lost.
func converges(t *testing.T, base, a, b []Entry, acts []Action, o BisyncOptions) {
	t.Helper()
	bl := &Baseline{}
	for _, e := range base {
		bl.Set(e)
	}
	sides := [2]tree{mkTree(a), mkTree(b)}
	orig := [2]tree{mkTree(a), mkTree(b)}
	// The regrouped order an engine may use must be valid too.
	if err := execute([2]tree{mkTree(a), mkTree(b)}, grouped(acts), nil, nil); err != nil {
		t.Fatalf("regrouped: %v\nplan %q", err, render(grouped(acts)))
	}
	if err := execute(sides, acts, nil, bl); err != nil {
		t.Fatalf("%v\nplan %q", err, render(acts))
	}
	if d := sameData(sides[A], sides[B]); d != "" {
		t.Fatalf("sides differ after the plan: %s\nplan %q", d, render(acts))
	}
	again, err := Bisync(bl.Entries(), sides[A].list(), sides[B].list(), o)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if len(again) != 0 {
		t.Fatalf("second run not empty: %q\nfirst plan %q", render(again), render(acts))
	}
	// Every file that is new or changed relative to the baseline must
	// still exist (under some name) after the plan.
	baseT := mkTree(base)
	have := map[string]bool{}
	for _, e := range sides[A] {
		have[e.Hash] = true
	}
	for s := A; s <= B; s++ {
		for p, e := range orig[s] {
			if e.IsDir {
				continue
			}
			if be, ok := baseT[p]; ok && !be.IsDir && be.Size == e.Size {
				if be.Hash != "" && e.Hash != "" && be.Hash == e.Hash {
					continue // unchanged by hash
				}
				if (be.Hash == "" || e.Hash == "") && be.ModTime.Equal(e.ModTime) {
					continue // unchanged by size and mtime
				}
			}
			if e.Hash != "" && !have[e.Hash] {
				t.Fatalf("data of %s on %s (changed since the baseline) was lost\nplan %q", p, s, render(acts))
			}
		}
	}
}

func TestBisyncErrors(t *testing.T) {
	var es *EmptySideError
	_, err := Bisync(ls(file("x", "1", 0)), nil, ls(file("x", "1", 0)), BisyncOptions{})
	if !errors.As(err, &es) || es.Side != A || es.Baseline != 1 {
		t.Fatalf("err = %v, want EmptySideError for A", err)
	}
	if !strings.Contains(err.Error(), "side A is empty but the baseline lists 1 entries") || !strings.Contains(err.Error(), "mounted") {
		t.Errorf("message: %v", err)
	}
	_, err = Bisync(ls(file("x", "1", 0)), ls(file("x", "1", 0)), []Entry{}, BisyncOptions{})
	if !errors.As(err, &es) || es.Side != B {
		t.Fatalf("err = %v, want EmptySideError for B", err)
	}

	tests := []struct {
		name       string
		base, a, b []Entry
		o          BisyncOptions
		want       string
	}{
		{"checksum: side A without hash", ls(file("x", "1", 0)), nohash(file("x", "1", 0)), ls(file("x", "1", 0)), BisyncOptions{Checksum: true}, "bisync: side A x: missing sha256"},
		{"checksum: both new, B without hash", nil, ls(file("x", "1", 0)), nohash(file("x", "1", 0)), BisyncOptions{Checksum: true}, "bisync: side B x: missing sha256"},
		{"bad suffix", nil, nil, nil, BisyncOptions{ConflictSuffix: "a/b"}, `bisync: conflict suffix "a/b": must be a plain name`},
		{"bad baseline path", ls(file("/x", "1", 0)), nil, nil, BisyncOptions{}, `bisync: baseline listing: "/x": absolute path`},
		{"bad side path", nil, ls(file("a/../b", "1", 0)), nil, BisyncOptions{}, `bisync: side A listing: "a/../b": path is not clean`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Bisync(tc.base, tc.a, tc.b, tc.o)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
			if got != nil {
				t.Errorf("actions with an error: %q", render(got))
			}
		})
	}
}

// TestBisyncRandom runs bisync on random baselines and random changes of
// both sides (files, directories, type changes): every plan must be valid
// in order, make both sides equal, lose no new or changed data, and leave a
// baseline with which the next plan is empty.
func TestBisyncRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[string]int{}
	for i := range 3000 {
		var base tree
		if i%5 != 0 { // every fifth case is a first run
			base = randomTree(r, nil, 1)
		}
		a := randomTree(r, base, 0.3)
		b := randomTree(r, base, 0.3)
		if len(base) > 0 && (len(a) == 0 || len(b) == 0) {
			continue
		}
		o := BisyncOptions{Now: t0, Checksum: i%3 == 0}
		lb, la, lbb := base.list(), a.list(), b.list()
		if i%3 == 1 { // no hashes at all: size+mtime decide
			lb, la, lbb = nohash(lb...), nohash(la...), nohash(lbb...)
		}
		acts, err := Bisync(lb, la, lbb, o)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		for _, act := range acts {
			for _, k := range categories {
				if strings.Contains(act.Reason, k) {
					seen[k]++
				}
			}
		}
		t.Run("", func(t *testing.T) {
			converges(t, lb, la, lbb, acts, o)
		})
		if t.Failed() {
			t.Fatalf("case %d:\nbase %v\na    %v\nb    %v", i, lb, la, lbb)
		}
	}
	// The random cases must reach every rule, else they prove little.
	for _, k := range categories {
		if seen[k] == 0 {
			t.Errorf("no random case reached %q", k)
		}
	}
	t.Logf("rules reached: %v", seen)
}

var categories = []string{
	"new on", "changed on A", "changed on B", "deleted on A", "deleted on B", "deleted on both sides",
	"keeping the changed file", "has new or changed files inside", "conflict: both changed", "conflict: both new",
	"conflict: file on", "identical on both sides", "new directory on both sides",
	"replaced by a file", "replaced by a directory",
}
