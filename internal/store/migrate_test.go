package store

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// A database left at an older schema by a previous netops is brought up to
// SchemaLatest at Open, keeping its rows.
func TestMigrateFromEachVersion(t *testing.T) {
	for from := 1; from < SchemaLatest; from++ {
		t.Run(fmt.Sprintf("from %d", from), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if err := EnsureDir(dir); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, FileName)
			db, err := sql.Open("sqlite", dsn(path, rwParams))
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range migrations()[:from] {
				for _, stmt := range step {
					if _, err := db.Exec(stmt); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", from)); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`INSERT INTO runs (kind, started_ns) VALUES ('diag', 1)`); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			s, err := Open(t.Context(), dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if v, err := s.SchemaVersion(t.Context()); err != nil || v != SchemaLatest {
				t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, SchemaLatest)
			}
			if n := countRuns(t, s); n != 1 {
				t.Fatalf("%d runs after migration, want 1", n)
			}
			// Schema 2: lock tickets.
			if err := s.Update(t.Context(), func(tx *sql.Tx) error {
				_, err := tx.Exec(`INSERT INTO lock_tickets (name, mode, owner, state, ttl_ns, created_ns)
					VALUES ('job', 'exclusive', 'me', 'waiting', 1, 1)`)
				return err
			}); err != nil {
				t.Fatalf("lock_tickets after migration: %v", err)
			}
			// Schema 3: ipc queues and channels.
			if err := s.Update(t.Context(), func(tx *sql.Tx) error {
				_, err := tx.Exec(`INSERT INTO ipc_queues (name, max_size, overflow, max_deliveries, visibility_ns, created_ns)
					VALUES ('jobs', 10, 'reject', 5, 1, 1)`)
				return err
			}); err != nil {
				t.Fatalf("ipc_queues after migration: %v", err)
			}
			// Schema 4: semaphore slots of lock tickets.
			if err := s.View(t.Context(), func(tx *sql.Tx) error {
				var n int
				return tx.QueryRow(`SELECT COUNT(*) FROM lock_tickets WHERE slots = 0`).Scan(&n)
			}); err != nil {
				t.Fatalf("lock_tickets.slots after migration: %v", err)
			}
			if err := s.Check(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Schema 5 rebuilds ipc_messages keyed in delivery order: messages of a
// schema 4 database survive, and new ids continue after the old ones.
func TestMigrateIPCMessagesToV5(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), rwParams))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range migrations()[:4] {
		for _, stmt := range step {
			if _, err := db.Exec(stmt); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, stmt := range []string{
		`PRAGMA user_version = 4`,
		`INSERT INTO ipc_queues (name, max_size, overflow, max_deliveries, visibility_ns, created_ns, depth) VALUES ('jobs', 10, 'reject', 5, 1, 1, 1)`,
		`INSERT INTO ipc_messages (qid, priority, sent_ns, sender, body) VALUES (1, 3, 1, 's', 'first')`,
		`INSERT INTO ipc_messages (qid, dead, priority, sent_ns, sender, body, reason) VALUES (1, 1, 2, 2, 's', 'dead', 'why')`,
		`INSERT INTO ipc_messages (qid, priority, sent_ns, sender, body) VALUES (1, 2, 3, 's', 'gone')`,
		`DELETE FROM ipc_messages WHERE body = 'gone'`, // id 3 stays used
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var bodies string
	var last int64
	if err := s.View(t.Context(), func(tx *sql.Tx) error {
		if err := tx.QueryRow(`SELECT group_concat(id || ':' || dead || ':' || priority || ':' || body, ',') FROM
			(SELECT * FROM ipc_messages ORDER BY qid, dead, priority DESC, id)`).Scan(&bodies); err != nil {
			return err
		}
		return tx.QueryRow(`SELECT last FROM ipc_seq`).Scan(&last)
	}); err != nil {
		t.Fatal(err)
	}
	if bodies != "1:0:3:first,2:1:2:dead" || last != 3 {
		t.Fatalf("after migration: messages %q, ipc_seq.last %d; want 1:0:3:first,2:1:2:dead and 3", bodies, last)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
}
