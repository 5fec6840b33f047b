package store

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDefaultDir(t *testing.T) {
	tests := []struct {
		name string
		euid int
		env  map[string]string
		want string
	}{
		{"root ignores env", 0, map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/root"}, "/var/lib/netops"},
		{"xdg set", 1000, map[string]string{"XDG_STATE_HOME": "/home/u/state", "HOME": "/home/u"}, "/home/u/state/netops"},
		{"only home", 1000, map[string]string{"HOME": "/home/u"}, "/home/u/.local/state/netops"},
		{"relative xdg ignored", 1000, map[string]string{"XDG_STATE_HOME": "rel/state", "HOME": "/home/u"}, "/home/u/.local/state/netops"},
		{"nothing set", 1000, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DefaultDir(tt.euid, func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Fatalf("DefaultDir = %q, want %q", got, tt.want)
			}
		})
	}
}

func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestEnsureDir(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) // dir does not exist yet
		wantErr string                         // "" = success; else substring, besides dir
	}{
		{"creates with parents", func(*testing.T, string) {}, ""},
		{"tightens 0755", func(t *testing.T, dir string) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(dir, 0o755) // beat the umask
		}, ""},
		{"tightens 0777", func(t *testing.T, dir string) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			os.Chmod(dir, 0o777)
		}, ""},
		{"is a file", func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Dir(dir), 0o700)
			if err := os.WriteFile(dir, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a directory"},
		{"parent is a file", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Dir(dir), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "create state directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "parent", "state")
			tt.setup(t, dir)
			err := EnsureDir(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("EnsureDir = %v, want an error naming %s and containing %q", err, dir, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p := perm(t, dir); p != 0o700 {
				t.Fatalf("dir mode = %v, want 0700", p)
			}
		})
	}
	if err := EnsureDir(""); err == nil {
		t.Fatal(`EnsureDir("") succeeded`)
	}
}

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "state")
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.RecordRun(t.Context(), Run{Kind: "diag"}); err != nil {
		t.Fatal(err)
	}
	if p := perm(t, dir); p != 0o700 {
		t.Errorf("%s: mode %v, want 0700", dir, p)
	}
	db := filepath.Join(dir, FileName)
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		if f != db {
			if _, err := os.Stat(f); err != nil { // may be absent
				continue
			}
		}
		if p := perm(t, f); p != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, p)
		}
	}
}

func TestOpenTightensExistingFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(dir, 0o700)
	db := filepath.Join(dir, FileName)
	if err := os.WriteFile(db, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(db, 0o644)
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if p := perm(t, db); p != 0o600 {
		t.Fatalf("mode %v, want 0600", p)
	}
}

// A state directory this process cannot write to gives a clear error
// naming it. As root (as in CI) permissions do not bind, so the check runs
// in a child process with the uid of nobody.
func TestOpenUnwritableDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	check := func(msg string) {
		t.Helper()
		if !strings.Contains(msg, dir) || !strings.Contains(msg, "not writable") {
			t.Fatalf("Open error = %q, want it to name %s and say it is not writable", msg, dir)
		}
	}
	if os.Geteuid() != 0 {
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		_, err := Open(t.Context(), dir)
		if err == nil {
			t.Fatal("Open succeeded in an unwritable dir")
		}
		check(err.Error())
		return
	}

	// Root: dir stays root's 0755; a copy of the test binary runs as nobody.
	bin := filepath.Join(root, "store.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir and its parent are 0700: let nobody reach the binary.
	for _, d := range []string{root, filepath.Dir(root)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const nobody = 65534
	cmd := exec.CommandContext(t.Context(), bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=open", childDirEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("child failed: %v: %s", err, ee.Stderr)
		}
		t.Skipf("cannot run a child as uid %d: %v", nobody, err)
	}
	check(strings.TrimSpace(string(out)))
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		t.Fatal("a database file was created anyway")
	}
}
