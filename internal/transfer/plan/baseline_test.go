package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBaselineRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	p := filepath.Join(tmp, "state", "transfer", "docs.baseline.json")
	b, err := LoadBaseline(p)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	if b.Len() != 0 || b.Path() != p {
		t.Fatalf("missing file: %d entries, path %q", b.Len(), b.Path())
	}
	mt := time.Date(2026, 11, 27, 12, 0, 0, 123456789, time.UTC)
	want := []Entry{
		dir("d"),
		{Path: "d/f.txt", Size: 42, ModTime: mt, Mode: 0o640, Hash: hashOf("x")},
		{Path: "d-e", Size: 0, ModTime: mt.Add(time.Hour), Mode: 0o600},
		{Path: "z", Size: 1 << 40, ModTime: mt, Mode: 0o755, Hash: hashOf("y")},
	}
	for _, e := range []Entry{want[3], want[1], want[0], want[2]} {
		b.Set(e)
	}
	b.Set(file("gone", "1", 0))
	b.Remove("gone")
	b.Remove("never-there")
	if err := b.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("baseline mode %v, want 0600", fi.Mode().Perm())
	}
	for _, d := range []string{filepath.Join(tmp, "state"), filepath.Join(tmp, "state", "transfer")} {
		di, err := os.Stat(d)
		if err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("dir %s: %v, %v, want 0700", d, di.Mode().Perm(), err)
		}
	}
	data, _ := os.ReadFile(p)
	if !strings.Contains(string(data), `"version": 1`) {
		t.Errorf("no version field:\n%s", data)
	}

	got, err := LoadBaseline(p)
	if err != nil {
		t.Fatal(err)
	}
	ents := got.Entries()
	if len(ents) != len(want) {
		t.Fatalf("entries %v, want %v", ents, want)
	}
	for i := range want {
		w, g := want[i], ents[i]
		if g.Path != w.Path || g.Size != w.Size || !g.ModTime.Equal(w.ModTime) || g.Mode != w.Mode || g.IsDir != w.IsDir || g.Hash != w.Hash {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
	if e, ok := got.Get("d/f.txt"); !ok || e.Size != 42 {
		t.Errorf("Get = %+v, %v", e, ok)
	}
	// Nothing changed: Save does not write (the file stays as it is).
	if err := os.Chmod(p, 0o400); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	if err := got.Save(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Errorf("unchanged baseline was rewritten")
	}
	// A change is written atomically (a new file replaces the old one, mode 0600 again).
	got.Remove("z")
	if err := got.Save(); err != nil {
		t.Fatal(err)
	}
	after, _ = os.Stat(p)
	if after.Mode().Perm() != 0o600 {
		t.Errorf("mode after rewrite %v", after.Mode().Perm())
	}
	again, err := LoadBaseline(p)
	if err != nil || again.Len() != 3 {
		t.Fatalf("after remove: %d entries, %v", again.Len(), err)
	}
	again.Clear()
	if err := again.Save(); err != nil {
		t.Fatal(err)
	}
	if b, err := LoadBaseline(p); err != nil || b.Len() != 0 {
		t.Fatalf("after clear: %d entries, %v", b.Len(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestBaselineSaveNew(t *testing.T) {
	// An empty baseline that was never saved is written (a first run that
	// found nothing still records the profile).
	p := filepath.Join(t.TempDir(), "p.baseline.json")
	b, _ := LoadBaseline(p)
	if err := b.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	var zero Baseline
	if err := zero.Save(); err == nil {
		t.Error("Save without a path succeeded")
	}
}

func TestBaselineLoadErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, content, want string }{
		{"not json", "{not json", "is corrupt: invalid character"},
		{"truncated", `{"version": 1, "entries": [{"path": "a"`, "is corrupt: unexpected end of JSON input"},
		{"no version", `{"entries": []}`, "is corrupt: no version field"},
		{"future version", `{"version": 7, "entries": []}`, "has version 7, this netops reads version 1"},
		{"bad path", `{"version": 1, "entries": [{"path": "../etc/passwd"}]}`, `is corrupt: entry "../etc/passwd": path leaves the root`},
		{"duplicate", `{"version": 1, "entries": [{"path": "a"}, {"path": "a"}]}`, "is corrupt: entry a is listed twice"},
		{"wrong type", `{"version": 1, "entries": [{"path": "a", "size": "big"}]}`, "is corrupt: json: cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadBaseline(p)
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want the file name and %q", err, tc.want)
			}
		})
	}
	// Unreadable: a directory where the file should be.
	_, err := LoadBaseline(dir)
	if err == nil || !strings.Contains(err.Error(), "read bisync baseline "+dir) {
		t.Errorf("err = %v", err)
	}
}

func TestBaselineApply(t *testing.T) {
	b := &Baseline{}
	b.Set(file("del", "1", 0))
	b.Set(file("both-gone", "1", 0))
	b.Set(file("x", "1", 0))
	acts := []Action{
		{Op: Copy, Path: "new", From: A, Entry: file("new", "2", 0)},
		{Op: Mkdir, Path: "d", From: B, Entry: dir("d")},
		{Op: Delete, Path: "del", From: A},
		{Op: Skip, Path: "both-gone", Reason: "deleted on both sides"},
		{Op: Skip, Path: "same", Entry: file("same", "3", 0)},
		{Op: Conflict, Path: "x", ConflictPath: "x.c"},
		{Op: Copy, Path: "x.c", From: B, Entry: file("x.c", "4", 0)},
	}
	for _, a := range acts {
		b.Apply(a)
	}
	var got []string
	for _, e := range b.Entries() {
		got = append(got, fmt.Sprintf("%s:%v:%d", e.Path, e.IsDir, e.Size))
	}
	want := []string{"d:true:0", "new:false:1", "same:false:1", "x:false:1", "x.c:false:1"}
	if !sameStrings(got, want) {
		t.Errorf("after Apply: %q, want %q", got, want)
	}
}

func TestBaselineConcurrentSave(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	b, _ := LoadBaseline(p)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 20 {
				b.Set(file(fmt.Sprintf("f%02d-%02d", i, j), "x", 0))
				if err := b.Save(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := LoadBaseline(p)
	if err != nil || got.Len() != 320 {
		t.Fatalf("after concurrent saves: %d entries, %v", got.Len(), err)
	}
}
