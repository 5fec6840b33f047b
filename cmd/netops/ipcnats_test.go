package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/netops-dev/netops/internal/server"
)

// ipcScriptsOnNATS are the ipc scripts written for the local backend that
// TestScriptsIPCOnNATS runs again, unchanged, on the NATS backend: the same
// commands must mean the same thing on both.
var ipcScriptsOnNATS = []string{"ipc_queue", "ipc_consume", "ipc_channel", "ipc_badinput"}

// TestScriptsIPCOnNATS runs ipcScriptsOnNATS with NETOPS_BACKEND_KIND=nats
// against an embedded nats-server (internal/server, JetStream, file store)
// started for each script on a random loopback port.
func TestScriptsIPCOnNATS(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, name := range ipcScriptsOnNATS {
		files = append(files, filepath.Join(repo, "testdata", "script", name+".txtar"))
	}
	p := scriptParams(repo)
	p.Files = files
	isolate := p.Setup
	p.Setup = func(env *testscript.Env) error {
		if err := isolate(env); err != nil {
			return err
		}
		srv, err := server.Start(context.Background(), server.Options{
			Listen:   "127.0.0.1:-1",
			StoreDir: filepath.Join(env.WorkDir, "nats-store"),
		})
		if err != nil {
			return err
		}
		env.Defer(func() { srv.Shutdown(); srv.WaitForShutdown() })
		env.Setenv("NETOPS_BACKEND_KIND", "nats")
		env.Setenv("NETOPS_BACKEND_URL", srv.ClientURL())
		return nil
	}
	testscript.Run(t, p)
}
