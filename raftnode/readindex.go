package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// prepareReads is the readiness side of leadership, one subscriber of
// SubscribeLeadership for the life of the node. Each time this node leads
// in a term it has not made ready yet, it applies a no-op entry of that
// term; once that entry is applied, every entry committed by earlier
// leaders is in the state machine and the node may serve linearizable
// reads (docs/consistency.md, "Linearizable reads on the leader"). The
// no-op is a state machine command rather than raft.Barrier because raft
// does not hand barrier and no-op entries to the FSM, and reads wait on
// the FSM's own applied index. A slow no-op holds up only this
// subscriber: when it returns, the latest view says whether to go again.
func (n *Node) prepareReads(events <-chan Leadership) {
	defer n.wg.Done()
	for l := range events {
		if l.IsLeader && n.readyTerm.Load() != l.Term {
			n.establishLeadership()
		}
	}
}

func (n *Node) establishLeadership() {
	noop := (&store.Command{Op: store.OpNoop}).Encode(nil)
	backoff := 10 * time.Millisecond
	for {
		term := n.raft.CurrentTerm()
		if n.raft.State() != raft.Leader {
			return
		}
		if !n.direct.enter() {
			return // closing
		}
		err := n.raft.Apply(noop, n.cfg.ApplyTimeout).Error()
		n.direct.leave()
		if err == nil {
			if n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term {
				n.setReady(term)
				n.log.Info("leader ready for linearizable reads", "term", term)
			}
			return
		}
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			return
		}
		n.log.Warn("leader no-op failed; retrying", "error", err)
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (n *Node) setReady(term uint64) {
	n.readyMu.Lock()
	n.readyTerm.Store(term)
	close(n.readyCh)
	n.readyCh = make(chan struct{})
	n.readyMu.Unlock()
}

// LeaderReady reports whether this node leads and has applied an entry of
// its current term: its state machine then holds every entry committed
// by earlier leaders (what a leader's timers must see before they act).
func (n *Node) LeaderReady() bool {
	return n.raft.State() == raft.Leader && n.readyTerm.Load() == n.raft.CurrentTerm()
}

// waitReady waits until this node is a leader that has applied an entry of
// its current term. It returns kv.ErrNotLeader as soon as the node is not
// the leader.
func (n *Node) waitReady(ctx context.Context) (term uint64, err error) {
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		n.readyMu.Lock()
		ch := n.readyCh
		n.readyMu.Unlock()
		if n.raft.State() != raft.Leader {
			return 0, fmt.Errorf("read index: %w", kv.ErrNotLeader)
		}
		term = n.raft.CurrentTerm()
		if n.readyTerm.Load() == term {
			return term, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: leader not ready: %w", kv.ErrNoLeader, ctx.Err())
		case <-n.shutdownCh:
			return 0, kv.ErrClosed
		case <-ch:
		case <-poll.C: // leadership may be lost without a signal here
		}
	}
}

// ReadIndex returns an index such that a state machine that has applied it
// reflects every write acknowledged before the call: the leader's commit
// index, recorded after the leader has committed an entry of its term and
// confirmed by a round of heartbeats that it was still the leader. Only the
// leader can answer; others get kv.ErrNotLeader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	term, err := n.waitReady(ctx)
	if err != nil {
		return 0, err
	}
	index := n.raft.CommitIndex()
	if _, err := n.verify.Do(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("%w: verifying leadership: %w", kv.ErrTimeout, err)
		}
		return 0, err
	}
	if n.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("read index: term changed: %w", kv.ErrNotLeader)
	}
	return index, nil
}

// LinearizableBarrier returns once this node's state machine reflects every
// write acknowledged before the call, or an error. Only the leader can
// answer; others get kv.ErrNotLeader.
func (n *Node) LinearizableBarrier(ctx context.Context) (uint64, error) {
	index, err := n.ReadIndex(ctx)
	if err != nil {
		return 0, err
	}
	if err := n.fsm.WaitApplied(ctx, index); err != nil {
		return 0, fmt.Errorf("%w: waiting for applied index %d: %w", kv.ErrTimeout, index, err)
	}
	return index, nil
}
