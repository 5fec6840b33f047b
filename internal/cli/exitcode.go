package cli

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/netops-dev/netops/internal/config"
	"github.com/netops-dev/netops/internal/ipc"
	"github.com/netops-dev/netops/internal/ipc/socket"
	"github.com/netops-dev/netops/internal/lock"
	"github.com/netops-dev/netops/internal/natsbackend"
	"github.com/netops-dev/netops/internal/sshconn"
	"github.com/netops-dev/netops/internal/store"
)

// Exit codes. This is the one table: README.md, `netops --help` and the tests
// read from here. Change it only together with all three.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitCritical    = 2
	ExitUnknown     = 3
	ExitUsage       = 64
	ExitUnavailable = 69
	ExitLockTimeout = 75
	ExitLeaseLost   = 76
	ExitConfig      = 78
	ExitCannotRun   = 127
	ExitInterrupted = 130
)

type exitCodeDoc struct {
	Code    int
	Meaning string
}

// exitCodes returns the documented exit code table.
func exitCodes() []exitCodeDoc {
	return []exitCodeDoc{
		{ExitOK, "success / all checks OK"},
		{ExitFailure, "failure (a transfer failed, message not received in time, a check at WARNING for diag)"},
		{ExitCritical, "diag: CRITICAL (a check failed)"},
		{ExitUnknown, "diag: UNKNOWN (a check could not run, e.g. no permission)"},
		{ExitUsage, "usage error (bad flag or argument)"},
		{ExitUnavailable, "backend or server unavailable (ipc connect: nobody listens or unreachable; ipc listen: address in use)"},
		{ExitLockTimeout, "temporary failure: lock not acquired within the wait, or ipc queue full (overflow reject)"},
		{ExitLeaseLost, "lock run: the lease was lost while the command ran; the command was stopped"},
		{ExitConfig, "configuration error (bad config file or value, unusable state dir or database)"},
		{ExitCannotRun, "lock run, ipc consume/subscribe/listen --exec: the command could not be started (not found or not executable)"},
		{ExitInterrupted, "interrupted (SIGINT/SIGTERM)"},
	}
}

// usageError is a bad flag, argument or command name.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(err error) error { return &usageError{err: err} }

// exitError carries an explicit exit code. When silent is true the command has
// already reported the outcome (e.g. diag printed its results) and nothing more
// is printed.
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return "exit status " + strconv.Itoa(e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// exitCode maps an error returned by a command to the process exit code.
// It is the only place where domain errors become exit codes.
func exitCode(err error, interrupted bool) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if interrupted && (errors.Is(err, context.Canceled) || errors.Is(err, errInterrupted)) {
		return ExitInterrupted
	}
	if errors.Is(err, errInterrupted) {
		return ExitInterrupted
	}
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsageError(err) || errors.Is(err, lock.ErrInvalid) {
		return ExitUsage
	}
	switch {
	case errors.Is(err, ipc.ErrInvalid), errors.Is(err, ipc.ErrTooLarge), errors.Is(err, ipc.ErrNotFound):
		return ExitUsage // bad input: invalid name or message, unknown queue
	case errors.Is(err, ipc.ErrFull):
		return ExitLockTimeout // temporary failure: queue full (overflow reject)
	case errors.Is(err, ipc.ErrUnavailable):
		return ExitUnavailable
	case errors.Is(err, ipc.ErrUnsupported):
		return ExitConfig // the configured backend cannot do it
	case errors.Is(err, lock.ErrTimeout):
		return ExitLockTimeout
	case errors.Is(err, lock.ErrUnavailable):
		return ExitUnavailable
	case errors.Is(err, socket.ErrUnavailable), errors.Is(err, socket.ErrAddrInUse):
		return ExitUnavailable
	case errors.Is(err, lock.ErrLost):
		return ExitLeaseLost
	case errors.Is(err, lock.ErrChildStart):
		return ExitCannotRun
	}
	var ce *config.Error
	if errors.As(err, &ce) || errors.Is(err, natsbackend.ErrConfig) {
		return ExitConfig
	}
	var tooNew *store.TooNewError
	var se *stateError
	if errors.As(err, &se) || errors.As(err, &tooNew) || errors.Is(err, store.ErrCorrupt) {
		return ExitConfig
	}
	if interrupted {
		return ExitInterrupted
	}
	return ExitFailure
}

var errInterrupted = errors.New("interrupted")

// transferExitCode maps the failures of 'transfer run/copy': 130 when
// interrupted, 69 when every failure was an unreachable server, 78 when
// every failure was a configuration error, else 1 (a transfer failed).
func transferExitCode(errs []error, interrupted bool) int {
	if interrupted {
		return ExitInterrupted
	}
	unreachable, cfg := 0, 0
	for _, err := range errs {
		var ce *config.Error
		var oe *net.OpError
		switch {
		case errors.Is(err, sshconn.ErrUnreachable), errors.As(err, &oe) && oe.Op == "dial":
			unreachable++
		case errors.As(err, &ce):
			cfg++
		}
	}
	switch len(errs) {
	case unreachable:
		return ExitUnavailable
	case cfg:
		return ExitConfig
	}
	return ExitFailure
}

// stateError is a state directory or database that cannot be used (permissions,
// corruption, a newer schema): the user must fix the environment, like a bad config.
type stateError struct{ err error }

func (e *stateError) Error() string { return e.err.Error() }
func (e *stateError) Unwrap() error { return e.err }

// isCobraUsageError recognises the errors cobra returns before any of our code
// runs (it has no typed errors for these): an unknown subcommand.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command ")
}
