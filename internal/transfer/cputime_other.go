//go:build !unix

package transfer

import "time"

// processCPU cannot read the CPU time here: the link rate alone decides.
func processCPU() (time.Duration, bool) { return 0, false }
