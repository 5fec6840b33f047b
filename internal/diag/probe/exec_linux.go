package probe

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// execProcAttr puts the program in its own process group so that a timeout
// kills everything it started.
func execProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// execAwaitExit blocks until p has exited without reaping it (the state is
// nil: the caller reaps with p.Wait). While the zombie exists its pid, and so
// its process group id, cannot be reused, which makes execKillGroup safe.
func execAwaitExit(p *os.Process) (*os.ProcessState, error) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("waitid %d: %w", p.Pid, err)
		}
		return nil, nil
	}
}

// execKillGroup sends SIGKILL to p's process group (p is its leader).
func execKillGroup(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) }
