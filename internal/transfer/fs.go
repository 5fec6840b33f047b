// Package transfer moves files between local paths, SFTP servers and HTTP(S)
// sources: verified (SHA-256 computed while reading), landed atomically
// (temporary name, fsync, rename), retried with backoff and resumed after an
// interruption. Modes copy, sync and bisync; sync and bisync decisions come
// from internal/transfer/plan.
//
// The package never prints: progress is reported through Options.Progress
// and results are returned as values.
package transfer

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"
)

// Info describes one file or directory of an endpoint.
type Info struct {
	Path    string // slash-separated; relative to the walk root in Walk, else as asked
	Size    int64  // -1 when unknown (HTTP without Content-Length)
	ModTime time.Time
	Mode    fs.FileMode // permission bits only
	IsDir   bool
}

// Reader is an open source file.
type Reader struct {
	io.Reader
	io.Closer
	// Offset is where the data of Reader starts in the file. It can be less
	// than the offset asked for (an HTTP server that ignores Range, or whose
	// entity changed since the first request): the caller restarts there.
	Offset int64
	// Size is the total size of the file, -1 when unknown.
	Size    int64
	ModTime time.Time
	// Validator identifies the version of an HTTP entity (ETag or
	// Last-Modified), for If-Range when resuming.
	Validator string
}

// FS is one side of a transfer: the local file system, an SFTP server or an
// HTTP server. Paths are in the FS's own namespace (absolute for local and
// SFTP, the URL for HTTP).
type FS interface {
	// Stat describes p. A missing p gives an error wrapping fs.ErrNotExist.
	Stat(ctx context.Context, p string) (Info, error)
	// Walk calls fn for every file and directory below the directory root
	// (not root itself), parents before children, with Info.Path relative
	// to root. fn returning fs.SkipDir for a directory skips its contents.
	Walk(ctx context.Context, root string, fn func(Info) error) error
	// Open opens p for reading at offset.
	Open(ctx context.Context, p string, offset int64) (*Reader, error)
	// String names the FS for messages ("local", "sftp://backup@host:22").
	String() string
	Close() error
}

// Writer is a file being written on a WritableFS.
type Writer interface {
	// WriteFrom copies r to the file from the current offset until EOF and
	// returns the number of bytes read from r. After an error, Offset tells
	// up to where the file is known to hold the data contiguously.
	WriteFrom(r io.Reader) (int64, error)
	// Offset is the end of the contiguous data written so far.
	Offset() int64
	// Sync flushes the file to stable storage; errors.ErrUnsupported when
	// the server cannot.
	Sync() error
	Close() error
}

// WritableFS is an FS files can be written to.
type WritableFS interface {
	FS
	// Mkdir creates the directory p (its parent must exist); an existing
	// directory is not an error.
	Mkdir(ctx context.Context, p string, perm fs.FileMode) error
	// Create opens p for writing. offset 0 creates or truncates it (mode
	// 0600); offset > 0 reopens an existing file, cuts it to offset and
	// continues there (an error if it is shorter).
	Create(ctx context.Context, p string, offset int64) (Writer, error)
	// Replace renames from over to, atomically where the server allows.
	Replace(ctx context.Context, from, to string) error
	// Rename renames from to to; to must not exist.
	Rename(ctx context.Context, from, to string) error
	// Remove removes the file or empty directory p.
	Remove(ctx context.Context, p string) error
	// SetAttrs sets the permission bits and the modification time of p.
	SetAttrs(ctx context.Context, p string, perm fs.FileMode, mtime time.Time) error
}

// Hasher is an optional FS capability: the SHA-256 of p computed where p
// lives (remote sha256sum), without sending the data.
type Hasher interface {
	SHA256(ctx context.Context, p string) (string, error)
}

// ErrChecksum is a SHA-256 mismatch between what was read and what landed
// (or what the profile expects).
var ErrChecksum = errors.New("SHA-256 mismatch")

// ErrSourceChanged means the source changed while it was being copied.
var ErrSourceChanged = errors.New("source changed during the transfer")

// ErrNoSpace means the destination ran out of space.
var ErrNoSpace = errors.New("no space left on the destination")
