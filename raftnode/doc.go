// Package raftnode wires hashicorp/raft to raftkv's state machine.
//
// # Basics
//
// A Node owns one raft instance: raft.db (raft-boltdb/v2 with the map
// freelist and NoFreelistSync, behind a raft.LogCache) holds the log and
// stable store, snapshots/ the FileSnapshotStore, and a TCP transport
// carries raft traffic. The state machine, a *store.Store, is opened and
// closed by the caller.
//
// Writes go through Apply. Concurrent writes are gathered into shared raft
// entries (group commit, commit.go); a write whose caller gives up before
// it is handed to raft is dropped. Apply maps raft's errors onto the kv
// sentinels: kv.ErrNotLeader (nothing applied),
// kv.ErrNoLeader (nothing applied), kv.ErrOutcomeUnknown (handed to raft,
// outcome not known). It never retries.
//
// Linearizable reads go through ReadIndex / LinearizableBarrier: after
// winning an election the leader applies a no-op of its term; a read
// records the commit index, confirms leadership with one heartbeat round
// (shared by every read waiting at that moment), checks that the term did
// not change, and waits until the state machine's own applied index reaches
// the recorded index.
//
// # Caveats
//
// raftnode knows nothing of HTTP: forming a cluster from --join addresses
// is done by the caller with Bootstrap and AddVoter. Bootstrap happens once;
// ErrAlreadyBootstrapped on restart is normal. IsLeader is only a belief.
package raftnode
