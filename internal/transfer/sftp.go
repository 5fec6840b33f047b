package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/pkg/sftp"

	"github.com/netops-dev/netops/internal/sshconn"
)

// SFTP tuning: 32 KiB packets (the size every server accepts) and up to 128
// requests in flight per file, so one file moves at up to 4 MiB per round
// trip. A server that states larger limits (limits@openssh.com: OpenSSH
// 8.7 and later) gets packets of up to 255 KiB (the 256 KiB message limit
// of pkg/sftp and sftp-server, less room for the header) and 4 MiB / packet
// size requests in flight (16 for 255 KiB): the same 4 MiB per file, with an
// eighth of the requests, replies and server system calls. Memory per file
// in flight is bounded by the packet buffers of pkg/sftp (concurrency x
// packet size).
const (
	SFTPMaxPacket        = 32 << 10
	SFTPConcurrency      = 128
	SFTPLargePacket      = 255 << 10
	SFTPLargeConcurrency = 16
)

// SFTPClientOptions are the pkg/sftp options netops uses: pipelined
// (concurrent) reads and writes.
func SFTPClientOptions() []sftp.ClientOption {
	return []sftp.ClientOption{
		sftp.MaxPacketUnchecked(SFTPMaxPacket),
		sftp.UseConcurrentWrites(true),
		sftp.UseConcurrentReads(true),
		sftp.MaxConcurrentRequestsPerFile(SFTPConcurrency),
		sftp.UseFstat(true),
	}
}

// SFTPTune returns the options for a server's stated limits (nil: none
// stated, the defaults of SFTPClientOptions apply).
func SFTPTune(l *sshconn.SFTPLimits) []sftp.ClientOption {
	p := sftpPacketSize(l)
	if p == SFTPMaxPacket {
		return nil
	}
	// The same bytes in flight per file as with the defaults (4 MiB).
	conc := min(max(SFTPConcurrency*SFTPMaxPacket/p, SFTPLargeConcurrency), SFTPConcurrency)
	return []sftp.ClientOption{sftp.MaxPacketUnchecked(p), sftp.MaxConcurrentRequestsPerFile(conc)}
}

// sftpPacketSize is the data size of a read or write request for a server
// with limits l: the smaller of its read and write limits and
// SFTPLargePacket, with 1 KiB of its packet limit left for the header.
// Unknown (0) or absurd (< 1 KiB) limits give SFTPMaxPacket.
func sftpPacketSize(l *sshconn.SFTPLimits) int {
	if l == nil || l.MaxRead == 0 || l.MaxWrite == 0 {
		return SFTPMaxPacket
	}
	p := min(l.MaxRead, l.MaxWrite, SFTPLargePacket)
	if l.MaxPacket > 0 {
		if l.MaxPacket <= 1024 {
			return SFTPMaxPacket
		}
		p = min(p, l.MaxPacket-1024)
	}
	if p < 1024 {
		return SFTPMaxPacket
	}
	return int(p)
}

// SFTP is a remote file system reached over SFTP.
type SFTP struct {
	c    *sftp.Client
	name string
	// sum computes a SHA-256 on the server (sha256sum over SSH exec); nil
	// when not available.
	sum func(ctx context.Context, p string) (string, error)
	// hashStream hashes a file on the server as it lands; nil when not
	// available.
	hashStream func(ctx context.Context, p string) (HashFeed, error)
	// batchSum hashes several files with one remote sha256sum; nil when not
	// available.
	batchSum func(ctx context.Context, ps []string) ([]string, error)
	// syncSum flushes the file systems holding syncs (remote `sync -f`)
	// and then hashes sums, with one remote command; nil when not
	// available.
	syncSum func(ctx context.Context, syncs, sums []string) ([]string, error)
	closer  func() error
	home    string
}

var _ WritableFS = (*SFTP)(nil)

// NewSFTP wraps an SFTP client. name is shown in messages; sum (optional)
// hashes a file on the server; closer (optional) is called by Close after
// the client is closed (to close the SSH connection).
func NewSFTP(c *sftp.Client, name string, sum func(ctx context.Context, p string) (string, error), closer func() error) *SFTP {
	return &SFTP{c: c, name: name, sum: sum, closer: closer}
}

func (s *SFTP) String() string { return s.name }

// Close closes the SFTP session and the connection under it.
func (s *SFTP) Close() error {
	err := s.c.Close()
	if s.closer != nil {
		if cerr := s.closer(); err == nil {
			err = cerr
		}
	}
	return err
}

// Abs resolves a path as written in a location: "" is the login
// directory, "~" and "~/x" are relative to it (sftp://host/~/x), a relative
// path is relative to it (user@host:x), an absolute path stays.
func (s *SFTP) Abs(p string) (string, error) {
	rel := ""
	switch {
	case p == "" || p == "~" || p == "/~":
	case strings.HasPrefix(p, "/~/"):
		rel = p[3:]
	case strings.HasPrefix(p, "~/"):
		rel = p[2:]
	case strings.HasPrefix(p, "/"):
		return path.Clean(p), nil
	default:
		rel = p
	}
	if s.home == "" {
		h, err := s.c.Getwd()
		if err != nil {
			return "", fmt.Errorf("find the login directory: %w", err)
		}
		s.home = h
	}
	return path.Join(s.home, rel), nil
}

func sftpInfo(name string, fi fs.FileInfo) Info {
	return Info{Path: name, Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode().Perm(), IsDir: fi.IsDir()}
}

// Stat implements FS (links followed).
func (s *SFTP) Stat(_ context.Context, p string) (Info, error) {
	fi, err := s.c.Stat(p)
	if err != nil {
		return Info{}, sftpErr("stat", p, err)
	}
	return sftpInfo(p, fi), nil
}

// Walk implements FS.
func (s *SFTP) Walk(ctx context.Context, root string, fn func(Info) error) error {
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := s.c.ReadDir(dir)
		if err != nil {
			return sftpErr("list", dir, err)
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, fi := range ents {
			full := path.Join(dir, fi.Name())
			r := path.Join(rel, fi.Name())
			if fi.Mode()&fs.ModeSymlink != 0 {
				st, err := s.c.Stat(full)
				if err != nil || st.IsDir() {
					continue
				}
				fi = st
			}
			if !fi.Mode().IsRegular() && !fi.IsDir() {
				continue
			}
			if err := fn(sftpInfo(r, fi)); err != nil {
				if err == fs.SkipDir {
					continue
				}
				return err
			}
			if fi.IsDir() {
				if err := walk(full, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(root, "")
}

// Open implements FS. The returned Reader implements io.WriterTo through
// (*sftp.File).WriteTo, which pipelines reads.
func (s *SFTP) Open(_ context.Context, p string, offset int64) (*Reader, error) {
	f, err := s.c.Open(p)
	if err != nil {
		return nil, sftpErr("open", p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, sftpErr("stat", p, err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open %s: is a directory", p)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, sftpErr("seek", p, err)
		}
	}
	return &Reader{Reader: f, Closer: f, Offset: offset, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Mkdir implements WritableFS.
func (s *SFTP) Mkdir(_ context.Context, p string, perm fs.FileMode) error {
	err := s.c.Mkdir(p)
	if err != nil {
		if fi, serr := s.c.Stat(p); serr == nil && fi.IsDir() {
			return nil
		}
		return sftpErr("mkdir", p, err)
	}
	_ = s.c.Chmod(p, perm) // best effort: the server's umask applies otherwise
	return nil
}

// Create implements WritableFS.
func (s *SFTP) Create(_ context.Context, p string, offset int64) (Writer, error) {
	if offset == 0 {
		f, err := s.c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return nil, sftpErr("create", p, err)
		}
		_ = f.Chmod(0o600) // a temporary file is private until it lands
		return &sftpWriter{f: f, p: p}, nil
	}
	f, err := s.c.OpenFile(p, os.O_WRONLY)
	if err != nil {
		return nil, sftpErr("open", p, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() < offset {
		err = fmt.Errorf("holds %d bytes, fewer than the %d to resume from", fi.Size(), offset)
	}
	if err == nil && fi.Size() > offset {
		err = f.Truncate(offset)
	}
	if err == nil {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, sftpErr("resume", p, err)
	}
	return &sftpWriter{f: f, p: p, off: offset}, nil
}

type sftpWriter struct {
	f   *sftp.File
	p   string
	off int64
}

// WriteFrom sends r with pipelined writes (ReadFromWithConcurrency: plain
// ReadFrom only pipelines when r reports its size, and a hashing reader
// does not). On error pkg/sftp leaves the file offset at the earliest
// failed write, so everything before it is on the server.
func (w *sftpWriter) WriteFrom(r io.Reader) (int64, error) {
	n, err := w.f.ReadFromWithConcurrency(r, 0) // 0: the client's requests per file
	if off, serr := w.f.Seek(0, io.SeekCurrent); serr == nil {
		w.off = off
	} else if err == nil {
		w.off += n
	}
	if err != nil {
		return n, sftpErr("write", w.p, err)
	}
	return n, nil
}

func (w *sftpWriter) Offset() int64 { return w.off }

func (w *sftpWriter) Sync() error {
	err := w.f.Sync()
	var se *sftp.StatusError
	if errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported {
		return errors.ErrUnsupported
	}
	if err != nil {
		return sftpErr("fsync", w.p, err)
	}
	return nil
}

func (w *sftpWriter) Close() error {
	if err := w.f.Close(); err != nil {
		return sftpErr("close", w.p, err)
	}
	return nil
}

// Replace implements WritableFS with posix-rename@openssh.com (atomic
// replace). Servers without it get a plain SFTP rename, which refuses an
// existing target; then the target is removed first and renamed over, so
// for a moment neither the old nor the new file is under the final name
// (never a partial one).
func (s *SFTP) Replace(_ context.Context, from, to string) error {
	if _, ok := s.c.HasExtension("posix-rename@openssh.com"); ok {
		if err := s.c.PosixRename(from, to); err != nil {
			return sftpErr("rename", from+" -> "+to, err)
		}
		return nil
	}
	if err := s.c.Rename(from, to); err == nil {
		return nil
	}
	if err := s.c.Remove(to); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return sftpErr("replace", to, err)
	}
	if err := s.c.Rename(from, to); err != nil {
		return sftpErr("rename", from+" -> "+to, err)
	}
	return nil
}

// Rename implements WritableFS.
func (s *SFTP) Rename(_ context.Context, from, to string) error {
	if _, err := s.c.Lstat(to); err == nil {
		return &fs.PathError{Op: "rename", Path: to, Err: fs.ErrExist}
	}
	if err := s.c.Rename(from, to); err != nil {
		return sftpErr("rename", from+" -> "+to, err)
	}
	return nil
}

// Remove implements WritableFS.
func (s *SFTP) Remove(_ context.Context, p string) error {
	if err := s.c.Remove(p); err != nil {
		return sftpErr("remove", p, err)
	}
	return nil
}

// SetAttrs implements WritableFS.
func (s *SFTP) SetAttrs(_ context.Context, p string, perm fs.FileMode, mtime time.Time) error {
	if err := s.c.Chmod(p, perm); err != nil {
		return sftpErr("chmod", p, err)
	}
	if err := s.c.Chtimes(p, mtime, mtime); err != nil {
		return sftpErr("set times on", p, err)
	}
	return nil
}

// SetTimes sets the modification (and access) time of p.
func (s *SFTP) SetTimes(_ context.Context, p string, mtime time.Time) error {
	if err := s.c.Chtimes(p, mtime, mtime); err != nil {
		return sftpErr("set times on", p, err)
	}
	return nil
}

// SHA256 implements Hasher when the server runs sha256sum for us.
func (s *SFTP) SHA256(ctx context.Context, p string) (string, error) {
	if s.sum == nil {
		return "", errors.ErrUnsupported
	}
	return s.sum(ctx, p)
}

// SHA256Batch hashes the files ps on the server with one command; the
// digests come back in the order of ps. errors.ErrUnsupported when the
// server runs no commands for us.
func (s *SFTP) SHA256Batch(ctx context.Context, ps []string) ([]string, error) {
	if s.batchSum == nil {
		return nil, errors.ErrUnsupported
	}
	return s.batchSum(ctx, ps)
}

// SyncAndSHA256 makes the files in syncs durable by flushing the file
// systems that hold them (syncfs(2) through `sync -f` on the server: one
// journal commit for a whole batch of files instead of one fsync each), and
// then hashes the files in sums, all with one remote command; the digests
// come back in the order of sums. errors.ErrUnsupported when the server
// cannot (no exec, no sh, no `sync -f`).
func (s *SFTP) SyncAndSHA256(ctx context.Context, syncs, sums []string) ([]string, error) {
	if s.syncSum == nil {
		return nil, errors.ErrUnsupported
	}
	return s.syncSum(ctx, syncs, sums)
}

// HasFsync reports whether the server offers fsync@openssh.com.
func (s *SFTP) HasFsync() bool {
	_, ok := s.c.HasExtension("fsync@openssh.com")
	return ok
}

// createSmall writes a small file in one go: open (create, truncate), set
// its mode (0600 or narrower keeps it private until it lands), write data (one request per 32 KiB packet), fsync when
// asked, close. It is the batch path's upload: no pipelining machinery for
// data that fits in a few packets.
func (s *SFTP) createSmall(p string, data []byte, mode fs.FileMode, fsync bool) error {
	f, err := s.c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return sftpErr("create", p, err)
	}
	err = f.Chmod(mode)
	if err == nil && len(data) > 0 {
		_, err = f.Write(data)
	}
	if err == nil && fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return sftpErr("write", p, err)
	}
	return nil
}

// HashStream implements StreamHasher when the server runs sh, dd and
// openssl or sha256sum for us.
func (s *SFTP) HashStream(ctx context.Context, p string) (HashFeed, error) {
	if s.hashStream == nil {
		return nil, errors.ErrUnsupported
	}
	return s.hashStream(ctx, p)
}

// sftpErr wraps an SFTP error with the operation and path, and maps SFTP
// status codes to fs errors (permission, not exist) so callers can test
// them with errors.Is.
func sftpErr(op, p string, err error) error {
	var se *sftp.StatusError
	if errors.As(err, &se) {
		switch se.FxCode() {
		case sftp.ErrSSHFxPermissionDenied:
			return &fs.PathError{Op: op, Path: p, Err: fs.ErrPermission}
		case sftp.ErrSSHFxNoSuchFile:
			return &fs.PathError{Op: op, Path: p, Err: fs.ErrNotExist}
		}
		if strings.Contains(strings.ToLower(se.Error()), "no space") {
			return &fs.PathError{Op: op, Path: p, Err: ErrNoSpace}
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return &fs.PathError{Op: op, Path: p, Err: fs.ErrNotExist}
	}
	if errors.Is(err, os.ErrPermission) {
		return &fs.PathError{Op: op, Path: p, Err: fs.ErrPermission}
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}
