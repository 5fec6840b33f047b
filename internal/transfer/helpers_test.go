package transfer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/sshconn/sshtest"
)

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func writeFile(t *testing.T, p string, data []byte, mode os.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noTemps fails if a netops temporary file is left under dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(fi.Name(), tempMarker) {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

// tempsIn lists netops temporary files under dir.
func tempsIn(dir string) []string {
	var out []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(fi.Name(), tempMarker) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func loc(t *testing.T, s string) Location {
	t.Helper()
	l, err := ParseLocation(s)
	if err != nil {
		t.Fatalf("ParseLocation(%q): %v", s, err)
	}
	return l
}

// sshEnv is an in-process SSH+SFTP server with a client key and known_hosts.
type sshEnv struct {
	srv  *sshtest.Server
	opts sshconn.Options
	user string
}

func startSSH(t *testing.T, cfg sshtest.Config) *sshEnv {
	t.Helper()
	id, signer := sshtest.GenerateKey(t)
	cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, signer.PublicKey())
	if cfg.User == "" {
		cfg.User = "backup"
	}
	srv := sshtest.Start(t, cfg)
	kh := sshtest.WriteKnownHosts(t, srv)
	home := t.TempDir()
	return &sshEnv{srv: srv, user: cfg.User, opts: sshconn.Options{
		KnownHostsFile: kh, HostKeyPolicy: sshconn.PolicyStrict, IdentityFiles: []string{id},
		ConfigFile: "none", ConnectTimeout: 5 * time.Second, HomeDir: home, Getenv: func(string) string { return "" },
	}}
}

// url returns sftp://user@127.0.0.1:port + p.
func (e *sshEnv) url(p string) string {
	return fmt.Sprintf("sftp://%s@127.0.0.1:%d%s", e.user, e.srv.Port, p)
}

// urlVia returns the URL through another port (a proxy).
func (e *sshEnv) urlVia(port int, p string) string {
	return fmt.Sprintf("sftp://%s@127.0.0.1:%d%s", e.user, port, p)
}

func (e *sshEnv) dialer() Dialer { return NewDialer(e.opts, nil, "netops-test") }

func sshconnZero() sshconn.Options { return sshconn.Options{ConfigFile: "none"} }
