package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/crypto/ssh"

	"github.com/netops-dev/netops/internal/sshconn/sshtest"
)

// scriptTB lets sshtest (written for *testing.T) run inside a testscript
// command: failures stop the script, cleanups run when it ends. Only the
// methods sshtest.Start, GenerateKey and WriteKnownHosts use are implemented;
// the embedded interface is never called.
type scriptTB struct {
	testing.TB
	ts  *testscript.TestScript
	dir string
	n   int
}

func (s *scriptTB) Helper()                      {}
func (s *scriptTB) Fatal(args ...any)            { s.ts.Fatalf("%s", fmt.Sprint(args...)) }
func (s *scriptTB) Fatalf(f string, args ...any) { s.ts.Fatalf(f, args...) }
func (s *scriptTB) Errorf(f string, args ...any) { s.ts.Fatalf(f, args...) }
func (s *scriptTB) Logf(f string, args ...any)   { s.ts.Logf(f, args...) }
func (s *scriptTB) Cleanup(f func())             { s.ts.Defer(f) }
func (s *scriptTB) Skipf(f string, args ...any)  { s.ts.Fatalf("sshserver: "+f, args...) }
func (s *scriptTB) Name() string                 { return "sshserver" }
func (s *scriptTB) TempDir() string {
	s.n++
	d := filepath.Join(s.dir, "tmp"+strconv.Itoa(s.n))
	if err := os.MkdirAll(d, 0o700); err != nil {
		s.ts.Fatalf("%v", err)
	}
	return d
}

// cmdSSHServer is the testscript builtin `sshserver [-noexec] [-password PW] NAME`:
// it starts an in-process SSH+SFTP server (internal/sshconn/sshtest, with a
// native sha256sum for exec) on a random loopback port for the rest of the
// script and sets $NAME_PORT, $NAME_ROOT (its SFTP and exec directory,
// created), $NAME_USER, $NAME_KEY (an authorized private key file),
// $NAME_KNOWN_HOSTS (a known_hosts file naming it) and $NAME_FINGERPRINT.
func cmdSSHServer(ts *testscript.TestScript, neg bool, args []string) {
	var cfg sshtest.Config
	for len(args) > 1 {
		switch args[0] {
		case "-noexec":
			cfg.NoExec = true
			args = args[1:]
		case "-password":
			cfg.Password = args[1]
			args = args[2:]
		default:
			ts.Fatalf("usage: sshserver [-noexec] [-password PW] NAME")
		}
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sshserver [-noexec] [-password PW] NAME")
	}
	name := args[0]
	base := filepath.Join(ts.Getenv("WORK"), ".sshserver-"+name)
	tb := &scriptTB{ts: ts, dir: base}
	root := filepath.Join(ts.Getenv("WORK"), name+"-root")
	ts.Check(os.MkdirAll(root, 0o755))
	id, signer := sshtest.GenerateKey(tb)
	cfg.AuthorizedKeys = []ssh.PublicKey{signer.PublicKey()}
	cfg.User = "backup"
	cfg.Root = root
	srv := sshtest.Start(tb, cfg)
	ts.Setenv(name+"_PORT", strconv.Itoa(srv.Port))
	ts.Setenv(name+"_ROOT", root)
	ts.Setenv(name+"_USER", cfg.User)
	ts.Setenv(name+"_KEY", id)
	ts.Setenv(name+"_KNOWN_HOSTS", sshtest.WriteKnownHosts(tb, srv))
	ts.Setenv(name+"_FINGERPRINT", srv.Fingerprint())
}
