package raftkv

import "sync/atomic"

// rebuildHold keeps a node's reads from going back in time after Open
// discarded kv.db (store.Discarded: it was open without fsync when the
// machine stopped), found it left open by a process that died (the
// transaction of entries applied since its last commit went with it:
// store.Interrupted), or found it missing while raft has state (an
// operator set a corrupted kv.db aside). The store then restarts from the
// newest snapshot or its last commit, below the index it had applied, and
// raft's replay of the log brings it back, once a leader tells it the
// commit index. Until then its state is older than what it may have served
// before the stop, so reads wait.
//
// The floor is the last index of the raft log at start-up: every entry
// this node had applied is at or below it. A read index from the leader
// is as good a floor (it covers every entry committed before it was
// asked, so every entry this node had applied), and the better one when
// the log's tail was never committed and will be replaced: a read that
// gets one waits for the lower of the two.
type rebuildHold struct{ floor atomic.Uint64 } // 0: not holding

// hold starts holding reads until the applied index reaches floor.
func (h *rebuildHold) hold(floor uint64) { h.floor.Store(floor) }

// until returns the index a read must wait for, or 0 once the hold is
// over (applied reached the floor).
func (h *rebuildHold) until(applied uint64) uint64 {
	f := h.floor.Load()
	if f == 0 {
		return 0
	}
	if applied >= f {
		h.floor.CompareAndSwap(f, 0)
		return 0
	}
	return f
}

// release ends the hold: the node applied a read index obtained after
// start-up, so it reflects everything it had applied before the stop.
func (h *rebuildHold) release() { h.floor.Store(0) }
