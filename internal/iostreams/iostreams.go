// Package iostreams holds the standard streams of one netops invocation and what is
// known about them: whether stdout/stderr are terminals and whether color is wanted.
// Commands write results to Out and progress/logs to ErrOut; nothing else prints.
package iostreams

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/term"
)

// IOStreams is passed to every command. It carries no global state.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	stdinTTY  bool
	stdoutTTY bool
	stderrTTY bool
	color     bool
}

// Env is the subset of the environment iostreams looks at.
type Env func(key string) (string, bool)

// System returns streams bound to the process's stdin, stdout and stderr.
// Color is on when stdout is a terminal, NO_COLOR is unset (any value disables it,
// see no-color.org) and TERM is not "dumb".
func System(lookup Env) *IOStreams {
	s := &IOStreams{
		In:        os.Stdin,
		Out:       os.Stdout,
		ErrOut:    os.Stderr,
		stdinTTY:  isTerminal(os.Stdin),
		stdoutTTY: isTerminal(os.Stdout),
		stderrTTY: isTerminal(os.Stderr),
	}
	s.color = s.stdoutTTY && colorAllowed(lookup)
	return s
}

func colorAllowed(lookup Env) bool {
	if lookup == nil {
		return true
	}
	if _, ok := lookup("NO_COLOR"); ok {
		return false
	}
	if t, ok := lookup("TERM"); ok && t == "dumb" {
		return false
	}
	return true
}

func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}

// Test returns streams backed by buffers: stdin from in, stdout and stderr captured.
// TTY flags are false unless set with SetTTY.
func Test(in string) (s *IOStreams, out, errOut *bytes.Buffer) {
	out, errOut = &bytes.Buffer{}, &bytes.Buffer{}
	s = &IOStreams{In: bytes.NewBufferString(in), Out: out, ErrOut: errOut}
	return s, out, errOut
}

// SetTTY marks the streams as terminals (or not), for tests. Color follows stdout.
func (s *IOStreams) SetTTY(stdin, stdout, stderr bool) {
	s.stdinTTY, s.stdoutTTY, s.stderrTTY = stdin, stdout, stderr
	s.color = stdout
}

// IsStdinTTY reports whether stdin is a terminal.
func (s *IOStreams) IsStdinTTY() bool { return s.stdinTTY }

// IsStdoutTTY reports whether stdout is a terminal (human text output) or a pipe/file
// (stable tab-separated output).
func (s *IOStreams) IsStdoutTTY() bool { return s.stdoutTTY }

// IsStderrTTY reports whether stderr is a terminal (progress output allowed).
func (s *IOStreams) IsStderrTTY() bool { return s.stderrTTY }

// ColorEnabled reports whether ANSI color may be written to Out.
func (s *IOStreams) ColorEnabled() bool { return s.color }

// DisableColor turns color off (the --no-color flag).
func (s *IOStreams) DisableColor() { s.color = false }
