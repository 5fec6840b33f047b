//go:build !unix

package local

import (
	"errors"
	"os"
)

var errNoFlock = errors.New("the local lock backend needs flock(2), which this system lacks; use the nats backend")

func createLockFile(path string) (*os.File, error) { return nil, errNoFlock }

func fileHeld(path string) bool { return true }

func waitUnlocked(f *os.File) {}
