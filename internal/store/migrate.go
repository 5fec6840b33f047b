package store

import (
	"context"
	"database/sql"
	"fmt"
)

// SchemaLatest is the highest schema version this build knows: the number
// of migrations.
const SchemaLatest = 5

// migrations returns the schema steps in order: element i takes the schema
// from version i to version i+1. Steps are append-only: never edit or
// reorder a released one, add a new one and bump SchemaLatest.
func migrations() [][]string {
	return [][]string{
		// 1: history of runs (diag, transfer, ...).
		{
			`CREATE TABLE runs (
				id          INTEGER PRIMARY KEY,
				kind        TEXT    NOT NULL,
				name        TEXT    NOT NULL DEFAULT '',
				status      TEXT    NOT NULL DEFAULT '',
				started_ns  INTEGER NOT NULL,
				finished_ns INTEGER,
				detail      TEXT
			)`,
			`CREATE INDEX runs_kind_started ON runs (kind, started_ns)`,
			`CREATE INDEX runs_started ON runs (started_ns)`,
		},
		// 2: lock tickets (internal/lock/local). The id is the FIFO order
		// and the fencing token: AUTOINCREMENT never reuses an id, even
		// after the newest rows are deleted, so tokens keep increasing
		// across releases and restarts.
		{
			`CREATE TABLE lock_tickets (
				id         INTEGER PRIMARY KEY AUTOINCREMENT,
				name       TEXT    NOT NULL,
				mode       TEXT    NOT NULL CHECK (mode IN ('exclusive', 'shared')),
				owner      TEXT    NOT NULL,
				host       TEXT    NOT NULL DEFAULT '',
				pid        INTEGER NOT NULL DEFAULT 0,
				command    TEXT    NOT NULL DEFAULT '',
				session    INTEGER NOT NULL DEFAULT 0,
				file       TEXT    NOT NULL DEFAULT '',
				state      TEXT    NOT NULL CHECK (state IN ('waiting', 'held')),
				ttl_ns     INTEGER NOT NULL,
				created_ns INTEGER NOT NULL,
				granted_ns INTEGER,
				expires_ns INTEGER
			)`,
			`CREATE INDEX lock_tickets_name ON lock_tickets (name, id)`,
		},
		// 3: ipc queues and channels (internal/ipc/local). Message ids
		// (AUTOINCREMENT, never reused) are the FIFO order; depth counts
		// the live (not dead) messages of a queue so that the size bound
		// is checked without counting rows.
		{
			`CREATE TABLE ipc_queues (
				id             INTEGER PRIMARY KEY AUTOINCREMENT,
				name           TEXT    NOT NULL UNIQUE,
				max_size       INTEGER NOT NULL,
				overflow       TEXT    NOT NULL CHECK (overflow IN ('drop-oldest', 'reject')),
				max_deliveries INTEGER NOT NULL,
				visibility_ns  INTEGER NOT NULL,
				created_ns     INTEGER NOT NULL,
				depth          INTEGER NOT NULL DEFAULT 0,
				sent           INTEGER NOT NULL DEFAULT 0,
				acked          INTEGER NOT NULL DEFAULT 0,
				dropped        INTEGER NOT NULL DEFAULT 0
			)`,
			`CREATE TABLE ipc_messages (
				id         INTEGER PRIMARY KEY AUTOINCREMENT,
				qid        INTEGER NOT NULL,
				dead       INTEGER NOT NULL DEFAULT 0,
				priority   INTEGER NOT NULL,
				visible_ns INTEGER NOT NULL DEFAULT 0,
				deliveries INTEGER NOT NULL DEFAULT 0,
				receipt    INTEGER NOT NULL DEFAULT 0,
				sent_ns    INTEGER NOT NULL,
				sender     TEXT    NOT NULL DEFAULT '',
				headers    TEXT,
				body       BLOB    NOT NULL,
				reason     TEXT
			)`,
			`CREATE INDEX ipc_messages_next ON ipc_messages (qid, dead, priority DESC, id)`,
			`CREATE TABLE ipc_channels (
				name       TEXT    PRIMARY KEY,
				published  INTEGER NOT NULL DEFAULT 0,
				stored     INTEGER NOT NULL DEFAULT 0,
				created_ns INTEGER NOT NULL,
				last_ns    INTEGER NOT NULL DEFAULT 0
			)`,
			`CREATE TABLE ipc_channel_messages (
				id       INTEGER PRIMARY KEY AUTOINCREMENT,
				channel  TEXT    NOT NULL,
				priority INTEGER NOT NULL,
				sent_ns  INTEGER NOT NULL,
				sender   TEXT    NOT NULL DEFAULT '',
				headers  TEXT,
				body     BLOB    NOT NULL
			)`,
			`CREATE INDEX ipc_channel_messages_channel ON ipc_channel_messages (channel, id)`,
			`CREATE TABLE ipc_subscribers (
				channel    TEXT    NOT NULL,
				name       TEXT    NOT NULL,
				cursor     INTEGER NOT NULL,
				created_ns INTEGER NOT NULL,
				active_ns  INTEGER NOT NULL,
				PRIMARY KEY (channel, name)
			)`,
		},
		// 4: semaphore size of lock tickets (0: no limit).
		{
			`ALTER TABLE lock_tickets ADD COLUMN slots INTEGER NOT NULL DEFAULT 0`,
		},
		// 5: ipc messages keyed in delivery order. The table of schema 3
		// becomes a WITHOUT ROWID table with the primary key (qid, dead,
		// priority DESC, id), so that sends, receives and acks touch one
		// b-tree instead of a table and an index; ids now come from
		// ipc_seq, which starts after the last id schema 3 gave.
		{
			`CREATE TABLE ipc_seq (
				one  INTEGER PRIMARY KEY CHECK (one = 1),
				last INTEGER NOT NULL
			)`,
			`INSERT INTO ipc_seq (one, last) VALUES (1, max(
				coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'ipc_messages'), 0),
				coalesce((SELECT max(id) FROM ipc_messages), 0)))`,
			`CREATE TABLE ipc_messages_v5 (
				qid        INTEGER NOT NULL,
				dead       INTEGER NOT NULL,
				priority   INTEGER NOT NULL,
				id         INTEGER NOT NULL,
				visible_ns INTEGER NOT NULL DEFAULT 0,
				deliveries INTEGER NOT NULL DEFAULT 0,
				receipt    INTEGER NOT NULL DEFAULT 0,
				sent_ns    INTEGER NOT NULL,
				sender     TEXT    NOT NULL DEFAULT '',
				headers    TEXT,
				body       BLOB    NOT NULL,
				reason     TEXT,
				PRIMARY KEY (qid, dead, priority DESC, id)
			) WITHOUT ROWID`,
			`INSERT INTO ipc_messages_v5 (qid, dead, priority, id, visible_ns, deliveries, receipt, sent_ns, sender, headers, body, reason)
				SELECT qid, dead, priority, id, visible_ns, deliveries, receipt, sent_ns, sender, headers, body, reason FROM ipc_messages`,
			`DROP TABLE ipc_messages`,
			`ALTER TABLE ipc_messages_v5 RENAME TO ipc_messages`,
		},
	}
}

// migrate brings the schema to SchemaLatest. The common case, an up-to-date
// database, is settled with a read; otherwise one immediate transaction
// re-reads the version and applies the missing steps, so processes racing
// to open a new database migrate it exactly once.
func (s *Store) migrate(ctx context.Context) error {
	// The version is read on the write pool, outside a transaction: that
	// connects the pool (its first connection sets WAL mode), so problems
	// surface at Open rather than at the first Update, and a short-lived
	// process that only writes opens one connection instead of two.
	var v int
	err := s.retry(ctx, "read schema version", func() (step, error) {
		return stepBegin, s.rw.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	})
	if err != nil {
		return err
	}
	if err := s.checkVersion(v); err != nil {
		return err
	}
	if v == SchemaLatest {
		return nil
	}
	return s.update(ctx, "migrate", false, func(tx *sql.Tx) error {
		v, err := userVersion(ctx, tx)
		if err != nil {
			return err
		}
		if err := s.checkVersion(v); err != nil || v == SchemaLatest {
			return err
		}
		for i, step := range migrations()[v:SchemaLatest] {
			for _, stmt := range step {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("schema version %d: %w", v+i+1, err)
				}
			}
		}
		// PRAGMA takes no parameters; SchemaLatest is a constant.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", SchemaLatest)); err != nil {
			return fmt.Errorf("schema version %d: %w", SchemaLatest, err)
		}
		return nil
	})
}

// checkVersion refuses a schema this build cannot use.
func (s *Store) checkVersion(v int) error {
	switch {
	case v > SchemaLatest:
		return &TooNewError{Path: s.path, Have: v, Supported: SchemaLatest}
	case v < 0:
		return &corruptError{path: s.path, reason: fmt.Sprintf("schema version %d", v), err: ErrCorrupt}
	}
	return nil
}

// SchemaVersion returns the schema version of the database (its
// PRAGMA user_version).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.view(ctx, "read schema version", false, func(tx *sql.Tx) error {
		var err error
		v, err = userVersion(ctx, tx)
		return err
	})
	if err != nil {
		return 0, err
	}
	return v, nil
}

func userVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, err
	}
	return v, nil
}
