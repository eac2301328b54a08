// Package raftnode wires hashicorp/raft to raftkv's state machine.
//
// # Basics
//
// A Node owns one raft instance: its log store, behind a raft.LogCache,
// holds the log and the stable store (the term and vote), snapshots/ the
// FileSnapshotStore, and a TCP transport carries raft traffic. The log
// store is of one of two kinds (logstore.go, Config.LogStore): raft.db,
// raft-boltdb/v2 with the map freelist and NoFreelistSync (the default),
// or wal/, hashicorp/raft-wal. A data directory holds one kind for its
// whole life: Open refuses the other kind's directory
// (ErrLogStoreMismatch), since a member that loses its log and vote could
// vote twice in a term and drop entries a quorum counted. The state
// machine, a *store.Store, is opened and closed by the caller.
//
// Writes go through Apply. Concurrent writes are gathered into shared raft
// entries (group commit, commit.go) by an internal/writeq queue: the
// committer supplies only where an entry ends (a second write of one key
// starts the next entry; transactions and prefix deletes go alone) and a
// send that calls raft.Apply, one entry at a time in arrival order, on the
// queue's gatherer; each entry's future is waited for on a goroutine of
// its own. A write whose caller gives up before it is handed to raft is
// dropped. Apply maps raft's errors onto the kv sentinels: kv.ErrNotLeader
// (nothing applied), kv.ErrNoLeader (nothing applied), kv.ErrTimeout
// (dropped while queued: nothing applied), kv.ErrOutcomeUnknown (handed to
// raft, outcome not known), kv.ErrClosed (the node is closing: nothing
// applied). It never retries.
//
// Leadership changes have one source (leadership.go): a watcher goroutine
// owns raft's LeaderCh and a raft observer of leader and state changes,
// and fans this node's view (the known leader's id and raft address, the
// term, whether this node leads) out to SubscribeLeadership's channels.
// Each channel holds only the latest view, so no subscriber can hold up
// raft or another subscriber; a slow one may miss intermediate views.
// WaitLeader waits, bounded by a context, until some leader is known.
//
// Linearizable reads go through ReadIndex / LinearizableBarrier: after
// winning an election the leader applies a no-op of its term (one
// leadership subscriber, readindex.go); a read records the commit index,
// confirms leadership with one heartbeat round (shared by every read
// waiting at that moment), checks that the term did not change, and waits
// until the state machine's own applied index reaches the recorded index.
//
// # Caveats
//
// Recover (recover.go) works on a stopped member's directory, never on a
// running Node: it rewrites the configuration with raft.RecoverCluster,
// replaying the log onto a scratch store so the state file is replaced
// only once the new configuration is written.
//
// raftnode knows nothing of HTTP: forming a cluster from --join addresses
// is done by the caller with Bootstrap and AddVoter. Bootstrap happens once;
// ErrAlreadyBootstrapped on restart is normal. IsLeader, and a
// Leadership view, are only beliefs: only a ReadIndex round proves that a
// leader still leads.
package raftnode
