package store

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenNotADatabase(t *testing.T) {
	random := make([]byte, 8192)
	rand.Read(random)
	headerThenJunk := append([]byte("SQLite format 3\x00"), random[:4000]...)
	tests := []struct {
		name    string
		content []byte
	}{
		{"random bytes", random},
		{"text file", []byte("this is not a database\n")},
		{"sqlite header then junk", headerThenJunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, FileName)
			if err := os.WriteFile(db, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(t.Context(), dir)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			assertCorrupt(t, err, db)
			after, _ := os.ReadFile(db)
			if !bytes.Equal(after, tt.content) {
				t.Fatal("Open modified the file")
			}
		})
	}
}

// A database whose pages are damaged after its header: Open may or may not
// notice, but Check does, and nothing panics.
func TestCheckDamagedDatabase(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	detail := []byte(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 300)))
	if err := s.Update(t.Context(), func(tx *sql.Tx) error {
		for i := range 400 {
			if _, err := tx.Exec(`INSERT INTO runs (kind, name, started_ns, detail) VALUES ('diag', ?, ?, ?)`,
				fmt.Sprint(i), i, string(detail)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatalf("Check on a good database: %v", err)
	}
	s.Close() // checkpoints: everything is in the main file now

	db := filepath.Join(dir, FileName)
	f, err := os.OpenFile(db, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0xA5}, 3*4096)
	if _, err := f.WriteAt(junk, 2*4096); err != nil { // pages 3-5
		t.Fatal(err)
	}
	f.Close()

	s, err = Open(t.Context(), dir)
	if err != nil {
		assertCorrupt(t, err, db)
		return
	}
	defer s.Close()
	assertCorrupt(t, s.Check(t.Context()), db)
	if _, err := s.Runs(t.Context(), "", 0); err != nil {
		assertCorrupt(t, err, db)
	}
}

func assertCorrupt(t *testing.T, err error, path string) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v does not match ErrCorrupt", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, path) || !strings.Contains(msg, "move it aside; netops will create a new one") || strings.Contains(msg, "\n") {
		t.Fatalf("error message %q should be one line naming %s and saying what to do", msg, path)
	}
}

func TestOpenTooNew(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordRun(t.Context(), Run{Kind: "diag"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaLatest+5)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, FileName)
	before, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}

	s, err = Open(t.Context(), dir)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded")
	}
	var tooNew *TooNewError
	if !errors.As(err, &tooNew) {
		t.Fatalf("Open = %v, want *TooNewError", err)
	}
	if tooNew.Path != db || tooNew.Have != SchemaLatest+5 || tooNew.Supported != SchemaLatest {
		t.Fatalf("TooNewError = %+v", tooNew)
	}
	want := fmt.Sprintf("state database %s has schema version %d, newer than this netops supports (%d): upgrade netops or use another --state-dir",
		db, SchemaLatest+5, SchemaLatest)
	if err.Error() != want {
		t.Fatalf("message:\n got %s\nwant %s", err, want)
	}
	after, _ := os.ReadFile(db)
	if !bytes.Equal(before, after) {
		t.Fatal("Open modified a database from a newer netops")
	}
}
