// Package store is netops' local state: one SQLite database (FileName) in a
// state directory, shared by every netops process on the host.
//
// Many netops processes (cron jobs, scripts) open the same database at the
// same time, so the package is built around that:
//
//   - the database runs in WAL mode, so readers never block the writer;
//   - every write goes through [Store.Update], which starts its transaction
//     with BEGIN IMMEDIATE and retries the whole transaction, with jittered
//     backoff, while another process holds the write lock, until the
//     context is done: contention never reaches the caller as SQLITE_BUSY;
//   - the schema is migrated with versioned steps tracked in
//     PRAGMA user_version, inside one immediate transaction that re-reads
//     the version first, so concurrent first opens migrate exactly once;
//   - the directory is kept 0700 and the database file 0600.
//
// Errors name the database file and say what to do: a file that is not a
// database or is damaged gives an error matching [ErrCorrupt], a database
// written by a newer netops gives a [*TooNewError].
package store
