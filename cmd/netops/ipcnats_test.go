package main

import (
	"context"
	"fmt"
	"os"
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
	testscript.Run(t, testscript.Params{
		Files:               files,
		RequireExplicitExec: true,
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"listen":     cmdListen,
			"envsubst":   cmdEnvsubst,
			"natsserver": cmdNATSServer,
			"waitport":   cmdWaitPort,
			"waitfile":   cmdWaitFile,
		},
		Setup: func(env *testscript.Env) error {
			work := env.WorkDir
			env.Setenv("HOME", filepath.Join(work, "home"))
			env.Setenv("XDG_STATE_HOME", filepath.Join(work, "xdg-state"))
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(work, "home", ".config"))
			env.Setenv("NETOPS_STATE_DIR", filepath.Join(work, "state"))
			env.Setenv("NO_COLOR", "1")
			env.Setenv("REPO", repo)
			gorace := os.Getenv("GORACE")
			if gorace == "" {
				gorace = "atexit_sleep_ms=0"
			}
			env.Setenv("GORACE", gorace)
			srv, err := server.Start(context.Background(), server.Options{
				Listen:   "127.0.0.1:-1",
				StoreDir: filepath.Join(work, "nats-store"),
			})
			if err != nil {
				return err
			}
			env.Defer(func() { srv.Shutdown(); srv.WaitForShutdown() })
			env.Setenv("NETOPS_BACKEND_KIND", "nats")
			env.Setenv("NETOPS_BACKEND_URL", srv.ClientURL())
			return nil
		},
	})
}
