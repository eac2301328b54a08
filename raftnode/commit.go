package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/writeq"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Group commit: concurrent writes are gathered into one raft entry (one
// future, one log record, one replication slot), and each caller still
// gets its own result and index. The queue (internal/writeq) owns the
// gathering, the in-flight bound and closing; the committer supplies where
// an entry must end (splitEntry) and how an entry is handed to raft
// (sendEntry). The queue's gatherer calls raft.Apply for one entry at a
// time, so entries reach the log in the order their writes arrived; the
// entries' futures are then waited for in log order on one goroutine
// (writeq.Config.InOrder: raft completes them in that order anyway, and
// freeing their slots back to back lets the next entries reach raft
// together, to share its disk writes and the state machine's commits). At
// most maxInflight rounds are in raft at once; while they are, new writes
// queue up and form the next, larger, round. A round is as many entries as
// the queue holds when a slot frees (up to perRound): with writes spread
// over many keys that is one entry, but writers of a few hot keys fill an
// entry per distinct-key run, and those entries reach raft's leader loop
// together (raft.Config.BatchApplyCh buffers its apply channel), so they
// share one log write, one replication message and one state machine
// batch instead of each waiting for a slot of its own.
type committer = writeq.Queue[*store.Command, *store.Result]

func newCommitter(n *Node, maxBatch, maxBytes, maxInflight, perRound int) *committer {
	return writeq.New(writeq.Config[*store.Command, *store.Result]{
		Where:       "raft",
		MaxBatch:    maxBatch,
		MaxBytes:    maxBytes,
		MaxInflight: maxInflight,
		PerRound:    perRound,
		Size:        (*store.Command).Size,
		Split:       splitEntry,
		Send:        n.sendEntry,
		InOrder:     true,
	})
}

// splitEntry stops an entry before a write that touches a key an earlier
// write of the entry touches (writes of one entry share its index, and two
// changes of one key must not share a mod_index). Ops that touch many keys
// (the op table's TouchesMany: transactions, prefix deletes, revokes), and
// ops older members cannot decode (set_cluster), go in an entry of their
// own (Op.Alone). Commands without a key (lease grants,
// keepalives, checkpoints) touch no key: any number share an entry.
func splitEntry(entry []*store.Command, next *store.Command) writeq.Fit {
	if next.Op.Alone() {
		return writeq.Alone
	}
	if len(next.Key) == 0 {
		return writeq.Join
	}
	for _, c := range entry {
		if bytes.Equal(c.Key, next.Key) {
			return writeq.Next
		}
	}
	return writeq.Join
}

// sendEntry hands one entry to raft (on the queue's gatherer, in order) and
// returns the wait for its future. A running raft answers every future it
// was handed, including those still in its buffered apply channel when
// leadership ends (ErrNotLeader), so the wait needs no context of its own:
// Node.Close closes the committer, which waits for the entries in flight,
// before it shuts raft down (a future still buffered at shutdown would
// never be answered).
func (n *Node) sendEntry(_ context.Context, _ []context.Context, cmds []*store.Command) writeq.Wait[*store.Result] {
	f := n.raft.Apply(store.EncodeEntry(nil, cmds), n.cfg.ApplyTimeout)
	return func() ([]writeq.Outcome[*store.Result], error) {
		if err := f.Error(); err != nil {
			return nil, applyError(err)
		}
		return entryOutcomes(f, len(cmds)), nil
	}
}

// entryOutcomes turns an applied entry's response into one outcome per
// command.
func entryOutcomes(f raft.ApplyFuture, n int) []writeq.Outcome[*store.Result] {
	outs := make([]writeq.Outcome[*store.Result], n)
	rs, ok := f.Response().([]*store.Result)
	for i := range outs {
		if !ok || len(rs) != n || rs[i] == nil {
			outs[i].Err = fmt.Errorf("%w: unexpected state machine response %#v", kv.ErrOutcomeUnknown, f.Response())
			continue
		}
		outs[i].Res, outs[i].Err = commandOutcome(rs[i])
	}
	return outs
}

// commandOutcome turns a command's Result into what Apply returns.
func commandOutcome(res *store.Result) (*store.Result, error) {
	switch {
	case res.Err == nil, errors.Is(res.Err, kv.ErrPreconditionFailed), errors.Is(res.Err, kv.ErrIdempotencyKeyReused),
		errors.Is(res.Err, kv.ErrLeaseNotFound):
		return res, nil // the command's own outcome, the same on every node
	case errors.Is(res.Err, store.ErrBadCommand):
		// Deterministic: every node skipped it. Nothing was applied.
		return nil, fmt.Errorf("apply at index %d: %w", res.Index, res.Err)
	default:
		// The entry is committed, but this node's state machine failed to
		// apply it; the others may have.
		return nil, fmt.Errorf("%w: state machine failed at index %d: %w", kv.ErrOutcomeUnknown, res.Index, res.Err)
	}
}
