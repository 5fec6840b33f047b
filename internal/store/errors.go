package store

import (
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrCorrupt is matched (errors.Is) by every error about a state database
// that is damaged or is not a SQLite database at all.
var ErrCorrupt = errors.New("state database is corrupt")

// TooNewError is returned by Open for a database whose schema was written by
// a newer netops. Open leaves such a database untouched.
type TooNewError struct {
	Path      string // the database file
	Have      int    // its schema version
	Supported int    // SchemaLatest of this build
}

func (e *TooNewError) Error() string {
	return fmt.Sprintf("state database %s has schema version %d, newer than this netops supports (%d): upgrade netops or use another --state-dir",
		e.Path, e.Have, e.Supported)
}

// corruptError is the error for a damaged database: it names the file, says
// what to do, matches ErrCorrupt and unwraps to the cause.
type corruptError struct {
	path   string
	reason string
	err    error
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("state database %s is corrupt or not a netops database (%s): move it aside; netops will create a new one",
		e.path, e.reason)
}

func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }
func (e *corruptError) Unwrap() error        { return e.err }

// sqliteCode returns the primary SQLite result code of err (the driver
// reports extended codes, e.g. SQLITE_BUSY_SNAPSHOT = 517), or 0 when err
// carries none.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// isBusy reports whether err means another connection holds a lock that a
// retry of the whole transaction can get past.
func isBusy(err error) bool {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// isCorrupt reports whether err says the file is damaged or no database.
func isCorrupt(err error) bool {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return true
	}
	return false
}

// wrap turns an error from the database into one naming the file and the
// operation. Errors already carrying that (corrupt, too new) pass through.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var tooNew *TooNewError
	if errors.As(err, &tooNew) || errors.Is(err, ErrCorrupt) {
		return err
	}
	if isCorrupt(err) {
		var se *sqlite.Error
		errors.As(err, &se)
		return &corruptError{path: s.path, reason: se.Error(), err: err}
	}
	return fmt.Errorf("%s: state database %s: %w", op, s.path, err)
}
