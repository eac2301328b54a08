//go:build !unix

package loadgen

import "time"

// processCPU returns 0: this platform's CPU time is not read, so load_cpu
// reads 0.
func processCPU() time.Duration { return 0 }
