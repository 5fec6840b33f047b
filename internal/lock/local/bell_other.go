//go:build !linux

package local

import "time"

// watchBell has no event source here: the caller polls the bell.
func watchBell(path string, rung time.Time) (<-chan struct{}, func()) { return nil, func() {} }
