package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Check runs PRAGMA integrity_check. A damaged database gives an error
// matching ErrCorrupt that names the file and the first problem found.
func (s *Store) Check(ctx context.Context) error {
	var problems []string
	err := s.view(ctx, "check", false, func(tx *sql.Tx) error {
		problems = problems[:0]
		rows, err := tx.QueryContext(ctx, "PRAGMA integrity_check")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				return err
			}
			if p != "ok" {
				problems = append(problems, p)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	if len(problems) == 0 {
		return nil
	}
	reason := "integrity check: " + strings.ReplaceAll(problems[0], "\n", " ")
	if len(problems) > 1 {
		reason += fmt.Sprintf(" and %d more problems", len(problems)-1)
	}
	return &corruptError{path: s.path, reason: reason, err: ErrCorrupt}
}

// Info describes a state database.
type Info struct {
	Path          string `json:"path"`
	SizeBytes     int64  `json:"size_bytes"` // database file plus its write-ahead log
	SchemaVersion int    `json:"schema_version"`
	JournalMode   string `json:"journal_mode"` // "wal" normally
	Runs          int64  `json:"runs"`         // rows in the run history
}

// Info reports facts about the database.
func (s *Store) Info(ctx context.Context) (Info, error) {
	info := Info{Path: s.path}
	err := s.view(ctx, "info", false, func(tx *sql.Tx) error {
		var err error
		if info.SchemaVersion, err = userVersion(ctx, tx); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&info.JournalMode); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT count(*) FROM runs").Scan(&info.Runs)
	})
	if err != nil {
		return Info{}, err
	}
	for _, p := range []string{s.path, s.path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return Info{}, fmt.Errorf("info: state database %s: %w", s.path, err)
		}
		info.SizeBytes += fi.Size()
	}
	return info, nil
}
