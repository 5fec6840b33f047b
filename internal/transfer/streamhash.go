package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/netops-dev/netops/internal/sshconn"
)

// StreamHasher is an optional FS capability: hash a file where it lives
// while it is being written, in order, so that verifying an upload costs no
// pass over the landed file after the transfer.
type StreamHasher interface {
	// HashStream starts hashing p, which must exist. errors.ErrUnsupported
	// means the server cannot (no exec, no sh).
	HashStream(ctx context.Context, p string) (HashFeed, error)
}

// HashFeed is a file being hashed on its server as it lands.
type HashFeed interface {
	// Add says that the next n bytes of the file (n a multiple of
	// hashBlock) are written: the server hashes them now.
	Add(n int64) error
	// Sum says that the rest of the file is written and returns the
	// SHA-256 of the whole file as the server read it.
	Sum(ctx context.Context) (string, error)
	// Close abandons the hash (after an error); safe after Sum.
	Close()
}

// hashBlock is the unit of HashFeed.Add.
const hashBlock = 1 << 20

// maxHashStreams is how many streamed hashes one SSH connection runs at once.
const maxHashStreams = 6

// streamScript hashes the file $1 as it lands: each line on its standard
// input is a number of 1 MiB blocks now written after the ones already
// read, which dd reads at once (from the page cache); at the end of the
// input, cat reads the rest of the file. Everything goes through one pipe
// into one `openssl dgst -sha256` (or sha256sum), so the whole file is hashed
// once, in order, while the transfer runs. A failing dd or a short read
// gives a wrong digest, never a false match: the caller then hashes the
// landed file as a whole, and that decides.
const streamScript = `exec 3<"$1" || exit 1
{ while read -r n; do dd bs=1048576 count="$n" <&3 2>/dev/null || exit 1; done; cat <&3; } | { openssl dgst -sha256 -r 2>/dev/null || sha256sum; }`

// sshHashFeed is a HashFeed run by streamScript over SSH exec.
type sshHashFeed struct {
	p           *sshconn.Process
	in          io.WriteCloser
	unavailable func()
	done        func()
	err         error
}

// startHashFeed starts streamScript for p on c; unavailable is called when
// the server cannot run it (no exec, no sh), so later files skip it, and
// done once when the feed has ended (summed or closed).
func startHashFeed(ctx context.Context, c *sshconn.Client, p string, unavailable, done func()) (HashFeed, error) {
	// A constant script; the path is a positional parameter, quoted by
	// sshconn: nothing from it becomes shell syntax.
	proc, err := c.Start(ctx, []string{"sh", "-c", streamScript, "sh", p})
	if err != nil {
		if sshconn.ExecUnavailable(err) {
			unavailable()
		}
		if sshconn.ExecUnavailable(err) || sshconn.SessionRefused(err) {
			return nil, errors.ErrUnsupported
		}
		return nil, fmt.Errorf("hash %s on the server: %w", p, err)
	}
	return &sshHashFeed{p: proc, in: proc.Stdin(), unavailable: unavailable, done: sync.OnceFunc(done)}, nil
}

func (f *sshHashFeed) Add(n int64) error {
	if f.err != nil {
		return f.err
	}
	if n <= 0 || n%hashBlock != 0 {
		f.err = fmt.Errorf("hash feed: %d bytes is not a whole number of blocks", n)
		return f.err
	}
	if _, err := io.WriteString(f.in, strconv.FormatInt(n/hashBlock, 10)+"\n"); err != nil {
		f.err = err
	}
	return f.err
}

func (f *sshHashFeed) Sum(ctx context.Context) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	defer f.done()
	if err := f.in.Close(); err != nil {
		f.err = err
		return "", err
	}
	out, err := f.p.Wait(ctx)
	if err != nil {
		if sshconn.ExecUnavailable(err) {
			f.unavailable()
		}
		f.err = err
		return "", err
	}
	f.err = errors.New("hash feed: already summed")
	return parseSHA256Sum(string(out))
}

func (f *sshHashFeed) Close() {
	if f.err == nil {
		f.err = errors.New("hash feed: closed")
	}
	f.p.Kill()
	f.done()
}
