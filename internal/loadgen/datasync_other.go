//go:build !linux

package loadgen

import "os"

// datasync is File.Sync where there is no fdatasync(2).
func datasync(f *os.File) error { return f.Sync() }
