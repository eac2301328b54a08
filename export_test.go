package raftkv

// RaftStats returns raft's own statistics of n (last_snapshot_index, ...),
// for tests in package raftkv_test.
func RaftStats(n *Node) map[string]string { return n.raft.Raft().Stats() }
