package transfer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/netops-dev/netops/internal/fsutil"
)

// journalEntry records an interrupted file so a later run resumes it: the
// temporary file on the destination, how much of it is good, and the source
// size and mtime it was copied from (a changed source starts over).
type journalEntry struct {
	Src        string    `json:"src"`
	Dst        string    `json:"dst"`
	Temp       string    `json:"temp"`
	Offset     int64     `json:"offset"`
	SrcSize    int64     `json:"src_size"`
	SrcModTime time.Time `json:"src_mtime"`
	Validator  string    `json:"validator,omitempty"` // HTTP ETag or Last-Modified
	Saved      time.Time `json:"saved"`
}

// journal is a directory of entries, one 0600 file per destination file,
// under <state dir>/transfer/journal (0700).
type journal struct{ dir string }

func openJournal(stateDir string) (*journal, error) {
	dir := filepath.Join(stateDir, "transfer", "journal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &journal{dir: dir}, nil
}

// journalKey names the entry of one destination file of one source.
func journalKey(srcLoc, dstLoc, rel string) string {
	h := sha256.Sum256([]byte(srcLoc + "\x00" + dstLoc + "\x00" + rel))
	return hex.EncodeToString(h[:12])
}

func (j *journal) path(key string) string { return filepath.Join(j.dir, key+".json") }

func (j *journal) load(key string) (journalEntry, bool) {
	b, err := os.ReadFile(j.path(key))
	if err != nil {
		return journalEntry{}, false
	}
	var e journalEntry
	if json.Unmarshal(b, &e) != nil || e.Temp == "" || e.Offset < 0 {
		return journalEntry{}, false
	}
	return e, true
}

// save writes an entry; a failure only costs the ability to resume.
func (j *journal) save(key string, e journalEntry) {
	e.Saved = time.Now()
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	_ = fsutil.WriteFileAtomic(j.path(key), b, 0o600)
}

// checkpoint records progress during a transfer: atomically (a temporary
// file renamed over the entry) but without fsync, as it happens every
// segment; an entry lost or older after a crash only means resuming from an
// earlier offset or from the start, never from data that is not there.
func (j *journal) checkpoint(key string, e journalEntry) {
	e.Saved = time.Now()
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	f, err := os.CreateTemp(j.dir, "."+key+".*.tmp")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if werr != nil || cerr != nil || os.Rename(f.Name(), j.path(key)) != nil {
		_ = os.Remove(f.Name())
	}
}

func (j *journal) remove(key string) { _ = os.Remove(j.path(key)) }
