//go:build !linux

package fsutil

import "time"

// WatchBell has no event source here: the caller polls the bell.
func WatchBell(path string, rung time.Time) (<-chan struct{}, func()) { return nil, func() {} }
