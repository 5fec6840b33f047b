//go:build !linux

package probe

import (
	"os"
	"syscall"
)

// Outside Linux, a timeout kills the program itself, not what it started.

func execProcAttr() *syscall.SysProcAttr { return nil }

// execAwaitExit waits for p and reaps it.
func execAwaitExit(p *os.Process) (*os.ProcessState, error) { return p.Wait() }

func execKillGroup(p *os.Process) { _ = p.Kill() }
