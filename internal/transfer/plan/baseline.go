package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/fsutil"
)

// baselineVersion is the format version Save writes and Load accepts.
const baselineVersion = 1

// Baseline is the state both sides of a bisync agreed on after the last
// successful action for each path: path -> entry (size, mtime, hash). It is
// kept in a JSON file (one per profile; the engine picks the path) and saved
// after each file, so one failed file does not lock the profile out: its old
// entry stays, and the next run sees the change again.
//
// A Baseline is safe for concurrent use. Concurrent Saves are coalesced: a
// Save returns once a write that includes every change made before the call
// has reached the disk.
type Baseline struct {
	path string

	mu       sync.Mutex // guards entries, gen, savedGen
	entries  map[string]Entry
	gen      uint64 // bumped by every change
	savedGen uint64 // gen of the last write; savedGen < gen: dirty
	exists   bool   // the file exists (loaded or saved)

	saveMu sync.Mutex // one write at a time
}

type baselineFile struct {
	Version int             `json:"version"`
	Entries []baselineEntry `json:"entries"`
}

type baselineEntry struct {
	Path    string      `json:"path"`
	Dir     bool        `json:"dir,omitempty"`
	Size    int64       `json:"size"`
	ModTime time.Time   `json:"mtime"`
	Mode    fs.FileMode `json:"mode"`
	SHA256  string      `json:"sha256,omitempty"`
}

// LoadBaseline reads the baseline at path. A missing file is an empty
// baseline (a first run); a file that cannot be parsed is an error naming it.
func LoadBaseline(path string) (*Baseline, error) {
	b := &Baseline{path: path, entries: map[string]Entry{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read bisync baseline %s: %w", path, err)
	}
	corrupt := func(why string) error {
		return fmt.Errorf("bisync baseline %s is corrupt: %s; move it away to start over with a first run (both sides are merged, differing files kept as conflicts)", path, why)
	}
	var f baselineFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, corrupt(err.Error())
	}
	if f.Version != baselineVersion {
		if f.Version == 0 {
			return nil, corrupt("no version field")
		}
		return nil, fmt.Errorf("bisync baseline %s has version %d, this netops reads version %d", path, f.Version, baselineVersion)
	}
	for _, fe := range f.Entries {
		if why := validPath(fe.Path); why != "" {
			return nil, corrupt(fmt.Sprintf("entry %q: %s", fe.Path, why))
		}
		if _, dup := b.entries[fe.Path]; dup {
			return nil, corrupt(fmt.Sprintf("entry %s is listed twice", fe.Path))
		}
		b.entries[fe.Path] = Entry{Path: fe.Path, IsDir: fe.Dir, Size: fe.Size, ModTime: fe.ModTime, Mode: fe.Mode, Hash: fe.SHA256}
	}
	b.exists = true
	return b, nil
}

// Path is the file the baseline is saved to.
func (b *Baseline) Path() string { return b.path }

// Len is the number of entries.
func (b *Baseline) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.entries)
}

// Entries returns the entries sorted by path, ready for Bisync.
func (b *Baseline) Entries() []Entry {
	b.mu.Lock()
	out := make([]Entry, 0, len(b.entries))
	for _, e := range b.entries {
		out = append(out, e)
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return treeLess(out[i].Path, out[j].Path) })
	return out
}

// Get returns the entry for path.
func (b *Baseline) Get(path string) (Entry, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[path]
	return e, ok
}

// Set records e as the agreed state of e.Path.
func (b *Baseline) Set(e Entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.entries == nil {
		b.entries = map[string]Entry{}
	}
	b.entries[e.Path] = e
	b.gen++
}

// Remove forgets path (only that path, not what is under it).
func (b *Baseline) Remove(path string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.entries[path]; ok {
		delete(b.entries, path)
		b.gen++
	}
}

// Clear forgets every entry: the next Bisync is a first run.
func (b *Baseline) Clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.entries) > 0 {
		b.entries = map[string]Entry{}
		b.gen++
	}
}

// Apply records the effect of a bisync action the engine has carried out
// successfully: Copy and Mkdir set act.Entry under act.Path (the engine fills
// in Entry.Hash when it computed it during the transfer), Delete and Backup
// remove act.Path, a Skip sets act.Entry (identical copies) or removes
// act.Path (deleted on both sides), a Conflict changes nothing (the Copy
// actions after it record both copies).
func (b *Baseline) Apply(act Action) {
	switch act.Op {
	case Copy, Mkdir:
		e := act.Entry
		e.Path = act.Path
		if act.Op == Mkdir {
			e.IsDir = true
		}
		b.Set(e)
	case Delete, Backup:
		b.Remove(act.Path)
	case Skip:
		if act.Entry.Path != "" {
			e := act.Entry
			e.Path = act.Path
			b.Set(e)
		} else {
			b.Remove(act.Path)
		}
	}
}

// Save writes the baseline atomically (mode 0600; its directory is created
// 0700). It does nothing when nothing changed since the last write.
func (b *Baseline) Save() error {
	if b.path == "" {
		return errors.New("save bisync baseline: no file name (use LoadBaseline)")
	}
	b.mu.Lock()
	want := b.gen
	b.mu.Unlock()

	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	b.mu.Lock()
	if b.exists && b.savedGen >= want {
		b.mu.Unlock()
		return nil // a write since our call started covered our changes
	}
	gen := b.gen
	f := baselineFile{Version: baselineVersion, Entries: make([]baselineEntry, 0, len(b.entries))}
	for _, e := range b.entries {
		f.Entries = append(f.Entries, baselineEntry{Path: e.Path, Dir: e.IsDir, Size: e.Size, ModTime: e.ModTime, Mode: e.Mode, SHA256: e.Hash})
	}
	b.mu.Unlock()
	sort.Slice(f.Entries, func(i, j int) bool { return treeLess(f.Entries[i].Path, f.Entries[j].Path) })
	data, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return fmt.Errorf("save bisync baseline %s: %w", b.path, err)
	}
	data = append(data, '\n')
	if err := os.MkdirAll(filepath.Dir(b.path), 0o700); err != nil {
		return fmt.Errorf("save bisync baseline: %w", err)
	}
	if err := fsutil.WriteFileAtomic(b.path, data, 0o600); err != nil {
		return fmt.Errorf("save bisync baseline: %w", err)
	}
	b.mu.Lock()
	b.savedGen = gen
	b.exists = true
	b.mu.Unlock()
	return nil
}
