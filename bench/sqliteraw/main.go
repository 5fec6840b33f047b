// Command sqliteraw is the anchor of the local half of bench/ipc.sh: raw
// SQLite inserts through the same driver (modernc.org/sqlite) and the same
// settings as the netops state database (WAL, synchronous NORMAL,
// busy_timeout, BEGIN IMMEDIATE), in transactions of -batch rows, which is
// what `netops ipc send --lines` does at its best. The table is the
// simplest that holds a message: an integer key and the body.
//
//	sqliteraw -db /tmp/x/raw.db -n 100000 < lines.txt
//
// It reads one row body per stdin line and prints one line:
// "insert <n> rows in <seconds> s: <rate> rows/s".
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"time"

	_ "modernc.org/sqlite"
)

func main() {
	path := flag.String("db", "", "database file to create")
	batch := flag.Int("batch", 1000, "rows per transaction")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "usage: sqliteraw -db FILE [-batch N] < lines")
		os.Exit(2)
	}
	if err := run(*path, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "sqliteraw:", err)
		os.Exit(1)
	}
}

func run(path string, batch int) error {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, body BLOB NOT NULL)`); err != nil {
		return err
	}
	var lines [][]byte
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		return err
	}
	start := time.Now()
	for i := 0; i < len(lines); i += batch {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO raw (body) VALUES (?)`)
		if err != nil {
			return err
		}
		for _, l := range lines[i:min(i+batch, len(lines))] {
			if _, err := stmt.ExecContext(ctx, l); err != nil {
				return err
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	d := time.Since(start)
	fmt.Printf("insert %d rows in %.3f s: %.0f rows/s\n", len(lines), d.Seconds(), float64(len(lines))/d.Seconds())
	return nil
}
