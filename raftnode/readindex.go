package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// watchLeadership runs for the life of the node. Each time this node wins an
// election it applies a no-op entry of its own term; once that entry is
// applied, every entry committed by earlier leaders is in the state machine
// and the node may serve linearizable reads (design.md §5.1). The no-op is a
// state machine command rather than raft.Barrier because raft does not hand
// barrier and no-op entries to the FSM, and reads wait on the FSM's own
// applied index.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.shutdownCh:
			return
		case isLeader := <-n.raft.LeaderCh():
			if isLeader {
				n.establishLeadership()
			}
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
		err := n.raft.Apply(noop, n.cfg.ApplyTimeout).Error()
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
	if err := n.verify.do(ctx); err != nil {
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

// verifier batches raft.VerifyLeader: at most one round is in flight, and
// every caller that arrives while it runs shares the next round. A caller's
// round always starts after the caller recorded its commit index, which is
// what makes the read index safe.
type verifier struct {
	verify  func() error // one round: raft's VerifyLeader
	mu      sync.Mutex
	waiters []chan error
	running bool
	rounds  atomic.Uint64 // VerifyLeader rounds run, for tests and metrics
}

func (v *verifier) do(ctx context.Context) error {
	ch := make(chan error, 1)
	v.mu.Lock()
	v.waiters = append(v.waiters, ch)
	if !v.running {
		v.running = true
		go v.loop()
	}
	v.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: verifying leadership: %w", kv.ErrTimeout, ctx.Err())
	}
}

// loop runs rounds while there are waiters; it exits when a round ends with
// none waiting. Every round ends: VerifyLeader fails on shutdown.
func (v *verifier) loop() {
	for {
		v.mu.Lock()
		batch := v.waiters
		v.waiters = nil
		if len(batch) == 0 {
			v.running = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		v.rounds.Add(1)
		err := v.verify()
		if err != nil {
			if errors.Is(err, raft.ErrRaftShutdown) {
				err = kv.ErrClosed
			}
			err = fmt.Errorf("verify leader: %w: %w", kv.ErrNotLeader, err)
		}
		for _, ch := range batch {
			ch <- err
		}
	}
}
