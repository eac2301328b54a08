package loadgen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// FsyncResult is what MeasureFsync measured: the latency of one synced
// 4 KiB overwrite, in milliseconds.
type FsyncResult struct {
	Workload string    `json:"workload"`
	Dir      string    `json:"dir"`
	Writes   int       `json:"writes"`
	Latency  LatencyMS `json:"latency_ms"`
}

// fsyncFileSize is the scratch file MeasureFsync cycles through: written
// and synced once first, so the measured writes overwrite allocated blocks
// as a log that reuses its pages does.
const fsyncFileSize = 1 << 20

// MeasureFsync measures what one durable write costs on dir's file
// system: for d, it overwrites 4 KiB of a scratch file in dir and calls
// fdatasync (File.Sync where the platform has none), one after another,
// and reports the latency of each write-and-sync. The scratch file is
// removed afterwards.
func MeasureFsync(ctx context.Context, dir string, d time.Duration) (*FsyncResult, error) {
	f, err := os.CreateTemp(dir, "raftkv-fsync-*")
	if err != nil {
		return nil, fmt.Errorf("fsync: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	defer func() { _ = f.Close() }()
	if _, err := f.Write(make([]byte, fsyncFileSize)); err != nil {
		return nil, fmt.Errorf("fsync: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("fsync: %w", err)
	}
	buf := make([]byte, 4096)
	h := newHistogram()
	off := int64(0)
	for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; {
		buf[0]++
		start := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return nil, fmt.Errorf("fsync: %w", err)
		}
		if err := datasync(f); err != nil {
			return nil, fmt.Errorf("fsync: %w", err)
		}
		h.record(int64(time.Since(start)))
		off = (off + int64(len(buf))) % fsyncFileSize
	}
	if h.n == 0 {
		return nil, fmt.Errorf("fsync: no write finished in %v", d)
	}
	abs, _ := filepath.Abs(dir)
	return &FsyncResult{
		Workload: "fsync", Dir: abs, Writes: int(h.n), Latency: latencyMS(h),
	}, nil
}
