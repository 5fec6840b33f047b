package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// FileName is the name of the database file inside the state directory.
const FileName = "netops.db"

// DefaultDir returns the default state directory: "/var/lib/netops" when
// euid is 0, else $XDG_STATE_HOME/netops, else $HOME/.local/state/netops.
// getenv is os.Getenv in production. As the XDG spec says, a relative
// XDG_STATE_HOME is ignored. It returns "" when neither variable gives an
// absolute base; the caller must then ask for an explicit state directory.
func DefaultDir(euid int, getenv func(string) string) string {
	if euid == 0 {
		return "/var/lib/netops"
	}
	if x := getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "netops")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "netops")
	}
	return ""
}

// EnsureDir creates dir (and missing parents) with mode 0700. When dir
// already exists and group or others have any access to it, EnsureDir
// removes that access; a directory owned by another user is left as it is.
// It fails with an error naming dir when dir is not a directory or this
// process cannot create files in it.
func EnsureDir(dir string) error {
	if dir == "" {
		return errors.New("no state directory: set --state-dir (or HOME)")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory: move it aside or use another --state-dir", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, bare(err))
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", dir, bare(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory: move it aside or use another --state-dir", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		// Not the owner: we cannot tighten it, and the writability check
		// below still tells whether it is usable.
		if err := os.Chmod(dir, perm&^0o077); err != nil && !errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("restrict permissions of state directory %s to 0700: %w", dir, bare(err))
		}
	}
	if err := checkWritable(dir); err != nil {
		return fmt.Errorf("state directory %s is not writable (%w): fix its owner or permissions, or use another --state-dir", dir, err)
	}
	return nil
}

// bare strips the *fs.PathError from err, whose path the message around it
// already names, keeping the cause (errors.Is(err, fs.ErrNotExist) etc.
// still work on it).
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
