package transfer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/sshconn"
)

// NewDialer returns a Dialer for local paths, SFTP (over sshconn with ssh
// as the base options; a password in the URL is added) and HTTP(S) (with
// client, NewHTTPClient(DefaultHTTPIdle) when nil).
func NewDialer(ssh sshconn.Options, client *http.Client, userAgent string) Dialer {
	if client == nil {
		client = NewHTTPClient(DefaultHTTPIdle)
	}
	return func(ctx context.Context, e config.Endpoint) (FS, error) {
		switch e.Kind {
		case config.EndpointLocal:
			return Local{}, nil
		case config.EndpointHTTP:
			return NewHTTP(client, userAgent), nil
		case config.EndpointSFTP:
			o := ssh
			if e.Password != "" {
				o.Password = e.Password
			}
			return DialSFTP(ctx, sshconn.Target{User: e.User, Host: e.Host, Port: e.Port}, o)
		}
		return nil, fmt.Errorf("unsupported endpoint kind %q", e.Kind)
	}
}

// DialSFTP connects to t and opens a tuned SFTP session. The returned FS
// verifies files with `sha256sum` run over SSH exec while the server allows
// it, and falls back to reading back after the first refusal.
func DialSFTP(ctx context.Context, t sshconn.Target, o sshconn.Options) (*SFTP, error) {
	c, err := sshconn.Dial(ctx, t, o)
	if err != nil {
		return nil, err
	}
	sc, _, err := c.SFTPWithLimits(SFTPTune, SFTPClientOptions()...)
	if err != nil {
		c.Close()
		return nil, err
	}
	var noExec, noSumScript atomic.Bool
	sum := func(ctx context.Context, p string) (string, error) {
		if noExec.Load() {
			return "", errors.ErrUnsupported
		}
		if !noSumScript.Load() {
			out, err := c.Run(ctx, []string{"sh", "-c", sumScript, "sh", p})
			if err == nil {
				return parseSHA256Sum(string(out))
			}
			if sshconn.SessionRefused(err) {
				return "", errors.ErrUnsupported // too many sessions now: read this one back
			}
			if !sshconn.ExecUnavailable(err) {
				return "", fmt.Errorf("sha256sum %s: %w", p, err)
			}
			noSumScript.Store(true) // no sh: run sha256sum itself
		}
		out, err := c.Run(ctx, []string{"sha256sum", "--", p})
		if err != nil {
			if sshconn.SessionRefused(err) {
				return "", errors.ErrUnsupported
			}
			if sshconn.ExecUnavailable(err) {
				noExec.Store(true)
				return "", errors.ErrUnsupported
			}
			return "", fmt.Errorf("sha256sum %s: %w", p, err)
		}
		return parseSHA256Sum(string(out))
	}
	s := NewSFTP(sc, "sftp://"+c.String(), sum, c.Close)
	s.batchSum = func(ctx context.Context, ps []string) ([]string, error) {
		if noExec.Load() {
			return nil, errors.ErrUnsupported
		}
		out, err := c.Run(ctx, append([]string{"sha256sum", "--"}, ps...))
		if err != nil {
			if sshconn.ExecUnavailable(err) {
				noExec.Store(true)
				return nil, errors.ErrUnsupported
			}
			return nil, fmt.Errorf("sha256sum of %d files: %w", len(ps), err)
		}
		return parseSHA256Lines(string(out), len(ps))
	}
	var noScript atomic.Bool
	s.syncSum = func(ctx context.Context, syncs, sums []string) ([]string, error) {
		if noScript.Load() || noExec.Load() {
			return nil, errors.ErrUnsupported
		}
		// A constant script; the count and the paths are positional
		// parameters, each quoted by sshconn.Run.
		argv := append([]string{"sh", "-c", syncSumScript, "sh", strconv.Itoa(len(syncs))}, syncs...)
		out, err := c.Run(ctx, append(argv, sums...))
		var ee *sshconn.ExitError
		if sshconn.ExecUnavailable(err) || (errors.As(err, &ee) && ee.Status == 90) {
			// No exec, no sh, or a sync without -f (BSD, old busybox):
			// the caller fsyncs file by file over SFTP.
			noScript.Store(true)
			return nil, errors.ErrUnsupported
		}
		if err != nil {
			return nil, fmt.Errorf("sync and sha256sum %d files: %w", len(sums), err)
		}
		if len(sums) == 0 {
			return nil, nil
		}
		return parseSHA256Lines(string(out), len(sums))
	}
	var noStream atomic.Bool
	// Each streamed hash holds a session for a whole file: at most
	// maxHashStreams at once, so that with the SFTP session and the odd
	// whole-file hash they stay under OpenSSH's MaxSessions (10 by
	// default). A file that finds none free is hashed whole at the end.
	streams := make(chan struct{}, maxHashStreams)
	s.hashStream = func(ctx context.Context, p string) (HashFeed, error) {
		if noStream.Load() || noExec.Load() {
			return nil, errors.ErrUnsupported
		}
		select {
		case streams <- struct{}{}:
		default:
			return nil, errors.ErrUnsupported
		}
		done := func() { <-streams }
		f, err := startHashFeed(ctx, c, p, func() { noStream.Store(true) }, done)
		if err != nil {
			done()
		}
		return f, err
	}
	return s, nil
}

// sumScript hashes the file $1. Both scripts prefer `openssl dgst -sha256`
// (SHA extensions / vectorized code: about 0.5 s of CPU per GiB on the
// bench machine) to coreutils' sha256sum (about 3 s per GiB, portable C),
// and use sha256sum when openssl is missing or fails (an old openssl
// without -r or --). Both print "HEX ..." for parseSHA256Sum.
const sumScript = `openssl dgst -sha256 -r -- "$1" 2>/dev/null || exec sha256sum -- "$1"`

// parseSHA256Sum takes the digest from sha256sum's output ("HEX  NAME";
// a leading backslash marks an escaped name).
func parseSHA256Sum(out string) (string, error) {
	f := strings.Fields(out)
	if len(f) == 0 {
		return "", errors.New("sha256sum printed nothing")
	}
	d := strings.ToLower(strings.TrimPrefix(f[0], "\\"))
	if len(d) != 64 || strings.Trim(d, "0123456789abcdef") != "" {
		return "", fmt.Errorf("unexpected sha256sum output %q", strings.TrimSpace(out))
	}
	return d, nil
}

// syncSumScript flushes the file systems of the first $1 paths (syncfs(2)
// through `sync -f`; exit 90 when sync cannot) and then hashes the other
// paths, one output line each, in order. One line: login shells that are
// not POSIX (csh) reject a newline inside quotes.
const syncSumScript = `n=$1; shift; while [ "$n" -gt 0 ]; do sync -f -- "$1" || exit 90; shift; n=$((n-1)); done; [ "$#" -eq 0 ] || exec sha256sum -- "$@"`

// parseSHA256Lines takes n digests, one per line and in order, from the
// output of `sha256sum -- f1 ... fn` that exited 0 (names with a newline
// are escaped by sha256sum, so each file is one line).
func parseSHA256Lines(out string, n int) ([]string, error) {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n {
		return nil, fmt.Errorf("sha256sum printed %d lines for %d files", len(lines), n)
	}
	sums := make([]string, n)
	for i, l := range lines {
		d, err := parseSHA256Sum(l)
		if err != nil {
			return nil, err
		}
		sums[i] = d
	}
	return sums, nil
}

// Permanent reports the errors a retry cannot fix: authentication and host
// key failures.
func Permanent(err error) bool {
	return errors.Is(err, sshconn.ErrAuth) || errors.Is(err, sshconn.ErrHostKeyChanged) ||
		errors.Is(err, sshconn.ErrHostKeyUnknown)
}
