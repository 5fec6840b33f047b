package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Run is one entry of the history: a diag, a transfer, ...
type Run struct {
	ID       int64           `json:"id"`                // assigned by RecordRun
	Kind     string          `json:"kind"`              // "diag", "transfer", ...; required
	Name     string          `json:"name"`              // what ran, e.g. the target
	Status   string          `json:"status"`            // e.g. "ok", "failed"
	Started  time.Time       `json:"started"`           // zero means now
	Finished time.Time       `json:"finished,omitzero"` // zero while unknown
	Detail   json.RawMessage `json:"detail,omitempty"`  // optional JSON document
}

// RecordRun stores r (its ID is ignored) and returns the new ID. Times keep
// nanosecond precision; the location is not stored.
func (s *Store) RecordRun(ctx context.Context, r Run) (int64, error) {
	if r.Kind == "" {
		return 0, errors.New("record run: empty kind")
	}
	var detail any // NULL when absent
	if len(r.Detail) > 0 {
		if !json.Valid(r.Detail) {
			return 0, fmt.Errorf("record %s run %q: detail is not valid JSON", r.Kind, r.Name)
		}
		detail = string(r.Detail)
	}
	if r.Started.IsZero() {
		r.Started = time.Now()
	}
	var id int64
	err := s.update(ctx, "record run", false, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`INSERT INTO runs (kind, name, status, started_ns, finished_ns, detail) VALUES (?, ?, ?, ?, ?, ?)`,
			r.Kind, r.Name, r.Status, r.Started.UnixNano(), nsOrNull(r.Finished), detail)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// Runs returns up to limit runs of kind (all kinds when kind is ""), newest
// first by start time. limit <= 0 means no limit.
func (s *Store) Runs(ctx context.Context, kind string, limit int) ([]Run, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	const cols = `SELECT id, kind, name, status, started_ns, finished_ns, detail FROM runs`
	query, args := cols+` ORDER BY started_ns DESC, id DESC LIMIT ?`, []any{limit}
	if kind != "" {
		query, args = cols+` WHERE kind = ? ORDER BY started_ns DESC, id DESC LIMIT ?`, []any{kind, limit}
	}
	var runs []Run
	err := s.view(ctx, "list runs", false, func(tx *sql.Tx) error {
		runs = runs[:0]
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r        Run
				started  int64
				finished sql.NullInt64
				detail   sql.NullString
			)
			if err := rows.Scan(&r.ID, &r.Kind, &r.Name, &r.Status, &started, &finished, &detail); err != nil {
				return err
			}
			r.Started = time.Unix(0, started)
			if finished.Valid {
				r.Finished = time.Unix(0, finished.Int64)
			}
			if detail.Valid {
				r.Detail = json.RawMessage(detail.String)
			}
			runs = append(runs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return runs, nil
}

func nsOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}
