package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/netops-dev/netops/internal/cli"
)

// TestMain lets the test binary act as the netops binary (and as the small
// "exitcode" helper) when testscript runs it under those names.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"netops": func() {
			os.Exit(cli.Main(cli.Build{Version: "v0.0.0-test", Commit: "0123456789abcdef", Date: "2026-01-02T03:04:05Z"}))
		},
		"exitcode":   exitcodeMain,
		"perm":       permMain,
		"lockworker": lockworkerMain,
		"lockstress": lockstressMain,
		"ipcstress":  ipcstressMain,
		"ipchandler": ipchandlerMain,
		"retry":      retryMain,
		"tokengt":    tokengtMain,
		// locksleep FILE SECONDS: create FILE, then sleep (a long-running command).
		"locksleep": func() {
			_ = os.WriteFile(os.Args[1], nil, 0o600)
			secs, _ := strconv.Atoi(os.Args[2])
			time.Sleep(time.Duration(secs) * time.Second)
		},
		"lockexit": func() {
			code, _ := strconv.Atoi(os.Args[len(os.Args)-1])
			os.Exit(code)
		},
	})
}

// exitcodeMain implements `exitcode N PROG ARGS...`: it runs PROG with the same
// environment, working directory and streams, and succeeds only if PROG exits
// with code N (or with any code for N = -any, when a test only needs the output). Scripts use it to pin exact exit codes:
//
//	exec exitcode 78 netops config validate bad.yaml
func exitcodeMain() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: exitcode N PROG [ARGS...]")
		os.Exit(2)
	}
	anyCode := os.Args[1] == "-any"
	want, err := strconv.Atoi(os.Args[1])
	if err != nil && !anyCode {
		fmt.Fprintf(os.Stderr, "exitcode: bad code %q\n", os.Args[1])
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	got := 0
	// Forward signals, so `kill` in a script reaches the program under test.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "exitcode: %v\n", err)
		os.Exit(2)
	}
	go func() {
		for sig := range sigs {
			_ = cmd.Process.Signal(sig)
		}
	}()
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintf(os.Stderr, "exitcode: %v\n", err)
			os.Exit(2)
		}
		got = ee.ExitCode()
	}
	if anyCode {
		fmt.Fprintf(os.Stderr, "exitcode: %s exited %d\n", os.Args[2], got)
		os.Exit(0)
	}
	if got != want {
		fmt.Fprintf(os.Stderr, "exitcode: %s exited %d, want %d\n", os.Args[2], got, want)
		os.Exit(1)
	}
	os.Exit(0)
}

// permMain implements `perm MODE PATH`: it succeeds if PATH's permission bits are
// exactly MODE (octal), e.g. `exec perm 700 $WORK/state`.
func permMain() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: perm MODE PATH")
		os.Exit(2)
	}
	want, err := strconv.ParseUint(os.Args[1], 8, 32)
	if err != nil {
		fmt.Fprintf(os.Stderr, "perm: bad mode %q\n", os.Args[1])
		os.Exit(2)
	}
	fi, err := os.Stat(os.Args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "perm: %v\n", err)
		os.Exit(1)
	}
	if got := uint64(fi.Mode().Perm()); got != want {
		fmt.Fprintf(os.Stderr, "perm: %s has mode %o, want %o\n", os.Args[2], got, want)
		os.Exit(1)
	}
	os.Exit(0)
}

func TestScripts(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	p := scriptParams(repo)
	p.Dir = filepath.Join(repo, "testdata", "script")
	testscript.Run(t, p)
}

// scriptParams are the settings every testscript run shares: its
// conditions, its commands, and a Setup that keeps each script away from the
// real home, config and state dirs (including /var/lib/netops as root).
func scriptParams(repo string) testscript.Params {
	return testscript.Params{
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
			"sshserver":  cmdSSHServer,
		},
		Setup: func(env *testscript.Env) error {
			work := env.WorkDir
			env.Setenv("HOME", filepath.Join(work, "home"))
			env.Setenv("XDG_STATE_HOME", filepath.Join(work, "xdg-state"))
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(work, "home", ".config"))
			env.Setenv("NETOPS_STATE_DIR", filepath.Join(work, "state"))
			env.Setenv("NO_COLOR", "1")
			env.Setenv("REPO", repo)
			// A -race binary sleeps 1s at exit by default (atexit_sleep_ms);
			// scripts run it hundreds of times.
			gorace := os.Getenv("GORACE")
			if gorace == "" {
				gorace = "atexit_sleep_ms=0"
			}
			env.Setenv("GORACE", gorace)
			return nil
		},
	}
}
