package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/iostreams"
	"github.com/netops-dev/netops/internal/store"
)

func TestExitCodeMapping(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		interrupted bool
		want        int
	}{
		{"nil", nil, false, ExitOK},
		{"plain", errors.New("boom"), false, ExitFailure},
		{"usage", usageErrorf(errors.New("bad flag")), false, ExitUsage},
		{"wrapped usage", fmt.Errorf("x: %w", usageErrorf(errors.New("bad"))), false, ExitUsage},
		{"cobra unknown command", errors.New(`unknown command "x" for "netops"`), false, ExitUsage},
		{"config", &config.Error{Issues: []config.Issue{{File: "a.yaml", Line: 1, Key: "k", Msg: "bad"}}}, false, ExitConfig},
		{"state corrupt", fmt.Errorf("open: %w", store.ErrCorrupt), false, ExitConfig},
		{"state too new", &store.TooNewError{Path: "x", Have: 9, Supported: 1}, false, ExitConfig},
		{"state dir", &stateError{err: errors.New("mkdir: permission denied")}, false, ExitConfig},
		{"explicit", &exitError{code: ExitCritical, silent: true}, false, ExitCritical},
		{"interrupted", context.Canceled, true, ExitInterrupted},
		{"interrupted other error", errors.New("read: closed"), true, ExitInterrupted},
		{"canceled without signal", context.Canceled, false, ExitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err, tt.interrupted); got != tt.want {
				t.Errorf("exitCode(%v, %v) = %d, want %d", tt.err, tt.interrupted, got, tt.want)
			}
		})
	}
}

// The README and --help must show the same exit code table as exitCodes().
func TestExitCodeTableDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	help := exitCodeHelp()
	for _, e := range exitCodes() {
		row := fmt.Sprintf("| %d | %s |", e.Code, e.Meaning)
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md lacks exit code row %q", row)
		}
		if !strings.Contains(help, fmt.Sprintf("%3d  %s", e.Code, e.Meaning)) {
			t.Errorf("--help lacks exit code %d", e.Code)
		}
	}
}

func run(t *testing.T, ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ios, out, errOut := iostreams.Test("")
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code = Run(ctx, args, ios, lookup, Build{Version: "v1", Commit: "abc"})
	return code, out.String(), errOut.String()
}

func TestInterruptedExits130(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as if SIGINT arrived before the state database was opened
	code, _, stderr := run(t, ctx, nil, "state", "info", "--state-dir", t.TempDir())
	if code != ExitInterrupted {
		t.Fatalf("code = %d, want %d (stderr %q)", code, ExitInterrupted, stderr)
	}
	if strings.TrimSpace(stderr) != "netops: interrupted" {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestVersionInProcess(t *testing.T) {
	code, stdout, stderr := run(t, context.Background(), nil, "version", "-o", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, `"version": "v1"`) || !strings.Contains(stdout, `"commit": "abc"`) {
		t.Errorf("stdout = %q", stdout)
	}
}

func TestTTYOutputAligned(t *testing.T) {
	ios, out, _ := iostreams.Test("")
	ios.SetTTY(false, true, true)
	if code := Run(context.Background(), []string{"version", "--no-color"}, ios, nil, Build{Version: "v1", Commit: "abc"}); code != 0 {
		t.Fatalf("code %d", code)
	}
	if !strings.HasPrefix(out.String(), "version:   v1\n") {
		t.Errorf("tty output = %q", out.String())
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("--no-color output has escapes: %q", out.String())
	}
}
