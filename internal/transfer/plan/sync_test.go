package plan

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSync(t *testing.T) {
	all := SyncOptions{Delete: true, MaxDelete: -1}
	tests := []struct {
		name     string
		src, dst []Entry
		o        SyncOptions
		want     []string
		reasons  map[string]string // path -> reason of its (last) action
	}{
		{name: "both empty", want: []string{}},
		{
			name:    "new tree, parents first, tree order",
			src:     ls(file("a-c", "x", 0), file("a/b/f", "y", 0), dir("a"), file("b", "z", 0)),
			want:    []string{"mkdir a A", "mkdir a/b A", "copy a/b/f A", "copy a-c A", "copy b A"},
			reasons: map[string]string{"a/b": "new", "b": "new"},
		},
		{
			name: "unchanged: same size, same second",
			src:  ls(file("f", "abc", 5), dir("d")),
			dst:  ls(Entry{Path: "f", Size: 3, ModTime: t0.Add(5*time.Second + 999*time.Millisecond)}, dir("d")),
			want: []string{},
		},
		{
			name:    "size changed",
			src:     ls(file("f", "abcd", 5)),
			dst:     ls(file("f", "abc", 5)),
			want:    []string{"copy f A"},
			reasons: map[string]string{"f": "size changed"},
		},
		{
			name:    "mtime changed by one second",
			src:     ls(file("f", "abc", 6)),
			dst:     ls(file("f", "abc", 5)),
			want:    []string{"copy f A"},
			reasons: map[string]string{"f": "mtime changed"},
		},
		{
			name:    "older source still copied (mirror)",
			src:     ls(file("f", "abc", 1)),
			dst:     ls(file("f", "abc", 5)),
			want:    []string{"copy f A"},
			reasons: map[string]string{"f": "mtime changed"},
		},
		{
			name: "modify window 1s tolerates one second",
			src:  ls(file("f", "abc", 6)),
			dst:  ls(file("f", "abc", 5)),
			o:    SyncOptions{ModifyWindow: time.Second},
			want: []string{},
		},
		{
			name: "modify window 1s: two seconds differ",
			src:  ls(file("f", "abc", 7)),
			dst:  ls(file("f", "abc", 5)),
			o:    SyncOptions{ModifyWindow: time.Second},
			want: []string{"copy f A"},
		},
		{
			name:    "checksum: same hash, other mtime: the mtime follows",
			src:     ls(file("f", "abc", 7)),
			dst:     ls(file("f", "abc", 1)),
			o:       SyncOptions{Checksum: true},
			want:    []string{"attrs f A"},
			reasons: map[string]string{"f": "mtime changed"},
		},
		{
			name:    "same data, other mode: attrs, no copy",
			src:     ls(Entry{Path: "f", Size: 3, ModTime: t0, Mode: 0o600}),
			dst:     ls(Entry{Path: "f", Size: 3, ModTime: t0, Mode: 0o644}),
			want:    []string{"attrs f A"},
			reasons: map[string]string{"f": "mode changed"},
		},
		{
			name: "a listing without modes compares equal",
			src:  ls(Entry{Path: "f", Size: 3, ModTime: t0, Mode: 0o600}),
			dst:  ls(Entry{Path: "f", Size: 3, ModTime: t0}),
			want: []string{},
		},
		{
			name: "directories with known times: unchanged, nothing",
			src:  ls(dirT("d", 3), file("d/f", "x", 1)),
			dst:  ls(dirT("d", 3), file("d/f", "x", 1)),
			o:    all,
			want: []string{},
		},
		{
			name:    "directory times follow, last, deepest and shallowest in tree order",
			src:     ls(dirT("a", 3), dirT("a/new", 4), file("a/new/f", "x", 1), dirT("b", 5), dirT("c", 6), file("c/f", "y", 1)),
			dst:     ls(dirT("a", 3), dirT("b", 9), dirT("c", 6), file("c/f", "y", 1), file("c/old", "z", 1)),
			o:       all,
			want:    []string{"delete c/old A", "mkdir a/new A", "copy a/new/f A", "attrs a A", "attrs a/new A", "attrs b A", "attrs c A"},
			reasons: map[string]string{"a": "contents changed", "a/new": "new directory", "b": "mtime changed", "c": "contents changed"},
		},
		{
			name:    "a read-only source directory keeps rwx for its owner, and then stays put",
			src:     ls(Entry{Path: "d", IsDir: true, Mode: fs.ModeDir | 0o555, ModTime: t0}),
			dst:     ls(Entry{Path: "d", IsDir: true, Mode: fs.ModeDir | 0o700, ModTime: t0}),
			o:       all,
			want:    []string{"attrs d A"},
			reasons: map[string]string{"d": "mode changed"},
		},
		{
			name: "a read-only source directory landed as 755: nothing",
			src:  ls(Entry{Path: "d", IsDir: true, Mode: fs.ModeDir | 0o555, ModTime: t0}),
			dst:  ls(Entry{Path: "d", IsDir: true, Mode: fs.ModeDir | 0o755, ModTime: t0}),
			o:    all,
			want: []string{},
		},
		{
			name:    "directory mode follows",
			src:     ls(Entry{Path: "d", IsDir: true, Mode: fs.ModeDir | 0o700, ModTime: t0}),
			dst:     ls(Entry{Path: "d", IsDir: true, Mode: fs.ModeDir | 0o755, ModTime: t0}),
			want:    []string{"attrs d A"},
			reasons: map[string]string{"d": "mode changed"},
		},
		{
			name:    "checksum: same size and mtime, other hash",
			src:     ls(file("f", "abc", 7)),
			dst:     ls(file("f", "xyz", 7)),
			o:       SyncOptions{Checksum: true},
			want:    []string{"copy f A"},
			reasons: map[string]string{"f": "checksum differs"},
		},
		{
			name:    "checksum: sizes differ, no hashes needed",
			src:     nohash(file("f", "abcd", 7)),
			dst:     nohash(file("f", "abc", 7)),
			o:       SyncOptions{Checksum: true},
			want:    []string{"copy f A"},
			reasons: map[string]string{"f": "size changed"},
		},
		{
			name: "without delete extraneous entries stay",
			src:  ls(file("f", "a", 0)),
			dst:  ls(file("f", "a", 0), file("old", "x", 0), file("d/x", "x", 0)),
			want: []string{},
		},
		{
			name: "delete: files before their dirs, deepest first",
			src:  ls(file("keep", "a", 0)),
			dst: ls(file("keep", "a", 0), file("x/y/z", "1", 0), file("x/a", "2", 0), dir("x/y"), file("w", "3", 0),
				dir("x/e")),
			o:       all,
			want:    []string{"delete x/y/z A", "delete x/a A", "delete x/e A", "delete x/y A", "delete w A", "delete x A"},
			reasons: map[string]string{"x": "extraneous", "x/y/z": "extraneous"},
		},
		{
			name: "backup dir: files backed up, emptied dirs deleted",
			src:  ls(file("keep", "a", 0)),
			dst:  ls(file("keep", "a", 0), file("x/y", "1", 0), file("w", "3", 0)),
			o:    SyncOptions{Delete: true, MaxDelete: -1, BackupDir: "/srv/old"},
			want: []string{"backup x/y A", "backup w A", "delete x A"},
		},
		{
			name: "relative backup dir inside the destination is left alone, with its parents",
			src:  ls(file("keep", "a", 0)),
			dst:  ls(file("keep", "a", 0), file("var/bk/old", "1", 0), file("var/bk/x/y", "2", 0), file("var/other", "3", 0), file("w", "4", 0)),
			o:    SyncOptions{Delete: true, MaxDelete: -1, BackupDir: "var/bk/"},
			want: []string{"backup var/other A", "backup w A"},
		},
		{
			name: "max delete: exactly at the limit is fine",
			src:  ls(),
			dst:  ls(file("a", "1", 0), file("b", "2", 0)),
			o:    SyncOptions{Delete: true, MaxDelete: 2},
			want: []string{"delete a A", "delete b A"},
		},
		{
			name: "max delete 0 with nothing to delete",
			src:  ls(file("a", "1", 0)),
			dst:  ls(),
			o:    SyncOptions{Delete: true, MaxDelete: 0},
			want: []string{"copy a A"},
		},
		{
			name:    "type clash: file replaces a non-empty directory with delete",
			src:     ls(file("a", "1", 0)),
			dst:     ls(file("a/x", "2", 0), file("a/y/z", "3", 0)),
			o:       all,
			want:    []string{"delete a/y/z A", "delete a/x A", "delete a/y A", "delete a A", "copy a A"},
			reasons: map[string]string{"a": "type clash: replaces a directory"},
		},
		{
			name:    "type clash: non-empty directory kept without delete",
			src:     ls(file("a", "1", 0)),
			dst:     ls(file("a/x", "2", 0)),
			want:    []string{"skip a A"},
			reasons: map[string]string{"a": "destination is a non-empty directory; --delete replaces it with the file"},
		},
		{
			name: "type clash: empty directory replaced without delete",
			src:  ls(file("a", "1", 0)),
			dst:  ls(dir("a")),
			o:    SyncOptions{MaxDelete: -1},
			want: []string{"delete a A", "copy a A"},
		},
		{
			name:    "type clash: directory replaces a file",
			src:     ls(file("a/f", "1", 0)),
			dst:     ls(file("a", "2", 0)),
			o:       SyncOptions{MaxDelete: -1},
			want:    []string{"delete a A", "mkdir a A", "copy a/f A"},
			reasons: map[string]string{"a": "type clash: replaces a file"},
		},
		{
			name: "type clash with backup dir: the file is backed up",
			src:  ls(file("a/f", "1", 0)),
			dst:  ls(file("a", "2", 0)),
			o:    SyncOptions{MaxDelete: -1, BackupDir: "/bk"},
			want: []string{"backup a A", "mkdir a A", "copy a/f A"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Sync(tc.src, tc.dst, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			checkPlan(t, got, tc.want)
			for p, r := range tc.reasons {
				found := ""
				for _, a := range got {
					if a.Path == p {
						found = a.Reason
					}
				}
				if found != r {
					t.Errorf("reason for %s = %q, want %q", p, found, r)
				}
			}
			// Carry the plan out: the order must be valid, and a second
			// plan from the result must be empty (when it mirrors).
			sides := [2]tree{mkTree(tc.src), mkTree(tc.dst)}
			if err := execute(sides, got, tree{}, nil); err != nil {
				t.Fatal(err)
			}
			if tc.o.Delete && tc.o.BackupDir == "" {
				if d := sameData(sides[A], sides[B]); d != "" {
					t.Errorf("after the plan: %s", d)
				}
				// Attributes too: a second plan has nothing to do.
				again, err := Sync(sides[A].list(), sides[B].list(), tc.o)
				if err != nil {
					t.Fatal(err)
				}
				checkPlan(t, again, []string{})
			}
		})
	}
}

func TestSyncMaxDelete(t *testing.T) {
	var dst []Entry
	for i := range 120 {
		dst = append(dst, file("old/f"+string(rune('a'+i%26))+strings.Repeat("x", i/26), "x", 0))
	}
	got, err := Sync(ls(file("new", "n", 0)), dst, SyncOptions{Delete: true, MaxDelete: 50})
	var me *MaxDeleteError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want *MaxDeleteError", err)
	}
	if got != nil {
		t.Errorf("actions returned with the error: %v", render(got))
	}
	want := "sync would delete 121 files and directories (120 files, 1 directory), more than max_delete 50; nothing was changed"
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
	// Files only: the short message of the issue.
	_, err = Sync(nil, dst[:3], SyncOptions{Delete: true, MaxDelete: 2})
	if err == nil || !strings.HasPrefix(err.Error(), "sync would delete 4 files and directories") {
		t.Errorf("err = %v", err)
	}
	_, err = Sync(nil, ls(file("a", "1", 0), file("b", "1", 0), file("c", "1", 0)), SyncOptions{Delete: true, MaxDelete: 2})
	if err == nil || err.Error() != "sync would delete 3 files, more than max_delete 2; nothing was changed" {
		t.Errorf("err = %v", err)
	}
	// Type clash removals count too, even without Delete.
	_, err = Sync(ls(file("a/f", "1", 0)), ls(file("a", "2", 0)), SyncOptions{MaxDelete: 0})
	if !errors.As(err, &me) || me.Files != 1 {
		t.Errorf("type clash with max_delete 0: err = %v", err)
	}
	// Unlimited.
	got, err = Sync(nil, dst, SyncOptions{Delete: true, MaxDelete: -1})
	if err != nil || len(got) != 121 {
		t.Errorf("unlimited: %d actions, %v", len(got), err)
	}
}

func TestSyncErrors(t *testing.T) {
	tests := []struct {
		name     string
		src, dst []Entry
		o        SyncOptions
		want     string
	}{
		{"absolute path", ls(file("/etc/x", "1", 0)), nil, SyncOptions{}, `sync: source listing: "/etc/x": absolute path`},
		{"dot dot", ls(file("../x", "1", 0)), nil, SyncOptions{}, `sync: source listing: "../x": path leaves the root`},
		{"unclean", nil, ls(file("a//b", "1", 0)), SyncOptions{}, `sync: destination listing: "a//b": path is not clean`},
		{"empty path", ls(Entry{}), nil, SyncOptions{}, `sync: source listing: "": empty path`},
		{"duplicate", ls(file("a", "1", 0), file("a", "2", 0)), nil, SyncOptions{}, "sync: source listing: a is listed twice"},
		{"under a file", ls(file("a", "1", 0), file("a/b", "2", 0)), nil, SyncOptions{}, "sync: source listing: a/b is listed under a, which is not a directory"},
		{"checksum without source hash", nohash(file("f", "abc", 0)), ls(file("f", "abc", 0)), SyncOptions{Checksum: true}, "sync: source f: missing sha256 (checksum comparison needs the hash of both copies)"},
		{"checksum without destination hash", ls(file("f", "abc", 0)), nohash(file("f", "abc", 0)), SyncOptions{Checksum: true}, "sync: destination f: missing sha256"},
		{"backup dir is the root", nil, nil, SyncOptions{BackupDir: "./"}, `sync: backup dir "./" is the destination root`},
		{"source inside the backup dir", ls(file("bk/x", "1", 0)), nil, SyncOptions{BackupDir: "bk"}, "sync: source has bk"},
		{"negative window", nil, nil, SyncOptions{ModifyWindow: -time.Second}, "sync: negative modify window -1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Sync(tc.src, tc.dst, tc.o)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
			if got != nil {
				t.Errorf("actions with an error: %v", render(got))
			}
		})
	}
	_, err := Sync(nohash(file("f", "abc", 0)), ls(file("f", "abc", 0)), SyncOptions{Checksum: true})
	if !errors.Is(err, ErrMissingHash) {
		t.Errorf("missing hash error does not wrap ErrMissingHash: %v", err)
	}
}

// TestSyncRandom carries out plans for random trees: the destination must
// end up equal to the source, the order must be valid, and a second plan
// must be empty. Input order must not change the plan.
func TestSyncRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		src := randomTree(r, nil, 1)
		dst := randomTree(r, src, 0.5)
		o := SyncOptions{Delete: true, MaxDelete: -1, Checksum: i%2 == 0}
		acts, err := Sync(src.list(), dst.list(), o)
		if err != nil {
			t.Fatal(err)
		}
		shuffled := dst.list()
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, _ := Sync(src.list(), shuffled, o)
		if !sameStrings(render(acts), render(again)) {
			t.Fatalf("plan depends on input order:\n%q\n%q", render(acts), render(again))
		}
		if err := execute([2]tree{mkTree(src.list()), mkTree(dst.list())}, grouped(acts), tree{}, nil); err != nil {
			t.Fatalf("case %d, regrouped: %v\nplan %q", i, err, render(grouped(acts)))
		}
		sides := [2]tree{src, dst}
		if err := execute(sides, acts, tree{}, nil); err != nil {
			t.Fatalf("case %d: %v\nsrc %v\ndst %v\nplan %q", i, err, src.list(), dst.list(), render(acts))
		}
		if d := sameData(sides[A], sides[B]); d != "" {
			t.Fatalf("case %d: after the plan: %s\nplan %q", i, d, render(acts))
		}
		if acts, err := Sync(sides[A].list(), sides[B].list(), o); err != nil || len(acts) != 0 {
			t.Fatalf("case %d: second sync: %q, %v", i, render(acts), err)
		}
	}
}

// universe is the set of paths random trees are built from; some are files
// in one tree and directories in another.
var universe = []string{"a", "a/x", "a/y", "a/y/z", "a/y/w", "b", "b/q", "c", "d", "d/e", "d/e/f"}

var contents = []string{"v1", "v2", "v3"}

// randomTree builds a consistent tree; starting from base (may be nil), each
// path of the universe gets a new random state with probability p.
func randomTree(r *rand.Rand, base tree, p float64) tree {
	t := tree{}
	for _, u := range universe {
		e, ok := base[u]
		if base == nil || r.Float64() < p {
			switch r.IntN(3) {
			case 0:
				ok = false
			case 1:
				e, ok = dir(u), true
			default:
				c := contents[r.IntN(len(contents))]
				e, ok = file(u, c, len(c)*10+int(c[1])), true
			}
		}
		if !ok {
			continue
		}
		if q := parent(u); q != "" {
			if pe, pok := t[q]; !pok || !pe.IsDir {
				continue // parent absent or a file: not possible
			}
		}
		t[u] = e
	}
	return t
}

func TestTreeOrder(t *testing.T) {
	paths := []string{"a-c", "a/b/c", "a", "a/b", "b", "a.b", "a/b-c", "a/b/c/d", "A", "a0"}
	sortTree := func(ps []string) []string {
		out := append([]string(nil), ps...)
		slices.SortFunc(out, func(x, y string) int {
			if treeLess(x, y) {
				return -1
			}
			if treeLess(y, x) {
				return 1
			}
			return 0
		})
		return out
	}
	got := sortTree(paths)
	want := []string{"A", "a", "a/b", "a/b/c", "a/b/c/d", "a/b-c", "a-c", "a.b", "a0", "b"}
	if !sameStrings(got, want) {
		t.Errorf("tree order %q, want %q", got, want)
	}
	// Same as comparing with '/' replaced by the lowest byte.
	r := rand.New(rand.NewPCG(5, 6))
	alpha := "ab/-.0"
	for range 10000 {
		mk := func() string {
			b := make([]byte, 1+r.IntN(6))
			for i := range b {
				b[i] = alpha[r.IntN(len(alpha))]
			}
			return string(b)
		}
		x, y := mk(), mk()
		ref := strings.ReplaceAll(x, "/", "\x00") < strings.ReplaceAll(y, "/", "\x00")
		if treeLess(x, y) != ref {
			t.Fatalf("treeLess(%q, %q) = %v, want %v", x, y, !ref, ref)
		}
	}
}

// BenchmarkSync plans a no-change sync of 100k files in 1000 directories.
func BenchmarkSync(b *testing.B) {
	var src []Entry
	for d := range 1000 {
		for f := range 100 {
			src = append(src, file(fmt.Sprintf("dir%04d/file%03d.dat", d, f), "content", f))
		}
	}
	dst := append([]Entry(nil), src...)
	b.ResetTimer()
	for b.Loop() {
		acts, err := Sync(src, dst, SyncOptions{Delete: true, MaxDelete: -1})
		if err != nil || len(acts) != 0 {
			b.Fatal(len(acts), err)
		}
	}
}

func TestStrings(t *testing.T) {
	ops := map[Op]string{Copy: "copy", Delete: "delete", Backup: "backup", Mkdir: "mkdir", Conflict: "conflict", Skip: "skip", Op(42): "op(42)"}
	for op, want := range ops {
		if op.String() != want {
			t.Errorf("Op(%d) = %q, want %q", int(op), op.String(), want)
		}
	}
	if A.String() != "A" || B.String() != "B" || Side(7).String() != "side(7)" || A.Other() != B || B.Other() != A {
		t.Error("Side strings or Other")
	}
	a := Action{Op: Conflict, Path: "x", From: A, ConflictPath: "x.c", Reason: "conflict: both changed"}
	if got := a.String(); got != "conflict x A->B as x.c (conflict: both changed)" || a.Target() != B {
		t.Errorf("Action.String() = %q", got)
	}
	if _, err := Sync(ls(file("a\x00b", "1", 0)), nil, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "NUL in path") {
		t.Errorf("NUL path: %v", err)
	}
}
