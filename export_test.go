package raftkv

import (
	"context"
	"time"
)

// RaftStats returns raft's own statistics of n (last_snapshot_index, ...),
// for tests in package raftkv_test.
func RaftStats(n *Node) map[string]string { return n.raft.Raft().Stats() }

// SetApplyDelay makes the node's state machine stall for d after every
// applied batch (a test widening a window, such as a rebuild's replay).
func SetApplyDelay(cfg *Config, d time.Duration) { cfg.applyDelay = d }

// TransferLeadership hands n's leadership to the most caught-up voter
// (n must lead).
func TransferLeadership(n *Node) error {
	return n.raft.TransferLeadership(context.Background(), "")
}

// SetProtocolVersion makes the node state and check protocol version v
// instead of kv.ProtocolVersion: a stand-in for a build of another version.
func SetProtocolVersion(cfg *Config, v int) { cfg.protocolVersion = v }

// SetWALSegmentSize makes a node on the WAL (Config.LogStore "wal") start
// new segment files of size bytes instead of 64 MiB, so that a test's few
// writes fill segments, rotate them, and compaction deletes them.
func SetWALSegmentSize(cfg *Config, size int) { cfg.walSegmentSize = size }
