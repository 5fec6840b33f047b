// Package cli is the command-line front end of netops: the only package that
// imports cobra and viper. Each verb lives in its own file; errors from the domain
// packages become exit codes in exitcode.go and nowhere else.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/netops-dev/netops/internal/iostreams"
)

// Build describes the binary; set from ldflags in cmd/netops.
type Build struct {
	Version string
	Commit  string
	Date    string
}

// Main runs netops with the process's arguments, environment and streams and
// returns the exit code. cmd/netops calls os.Exit with it.
func Main(build Build) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal netops shuts down cleanly; a second one gets the
	// default action and ends the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	ios := iostreams.System(os.LookupEnv)
	return Run(ctx, os.Args[1:], ios, os.LookupEnv, build)
}

// Run executes one netops invocation. It never calls os.Exit, so tests can call it.
func Run(ctx context.Context, args []string, ios *iostreams.IOStreams, lookup iostreams.Env, build Build) int {
	a := newApp(ios, lookup, build)
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(ios.In)
	root.SetOut(ios.Out)
	root.SetErr(ios.ErrOut)

	err := root.ExecuteContext(ctx)
	a.close()
	interrupted := ctx.Err() != nil
	code := exitCode(err, interrupted)
	if err != nil {
		reportError(ios.ErrOut, err, code, a.opts.quiet)
	}
	return code
}

// reportError prints err to stderr: one "netops: ..." line per line of the error,
// plus a usage hint for usage errors. Errors that carry their own report are silent.
func reportError(w io.Writer, err error, code int, quiet bool) {
	var ee *exitError
	if errors.As(err, &ee) && ee.silent {
		return
	}
	if code == ExitInterrupted {
		fmt.Fprintln(w, "netops: interrupted")
		return
	}
	for _, line := range strings.Split(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(w, "netops: %s\n", line)
	}
	if code == ExitUsage && !quiet {
		fmt.Fprintln(w, "Run 'netops --help' for usage.")
	}
}

// newLogger returns the slog logger for this run: text to stderr, level from
// --verbose / --quiet.
func newLogger(w io.Writer, verbose, quiet bool) *slog.Logger {
	level := slog.LevelWarn
	switch {
	case verbose:
		level = slog.LevelDebug
	case quiet:
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// CommandTree returns the full command tree, for documentation generators
// (cmd/genman). It is not connected to any streams.
func CommandTree() *cobra.Command {
	ios, _, _ := iostreams.Test("")
	return newRootCmd(newApp(ios, nil, Build{}))
}
