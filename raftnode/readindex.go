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
	return n.ReadIndexFor(ctx, "", 0)
}

// ReadIndexFor is ReadIndex for a follower's reads, on that follower's
// word: voter, asking for them, says its current term was voterTerm at a
// moment after they began. A voter whose term was this leader's had voted
// for no candidate of a later term by then, so when that voter and this
// leader make a quorum of the configuration's voters, no later leader
// could have been elected before the reads began, and the commit index
// serves them without a leadership check (docs/consistency.md, "Linearizable
// reads on followers"). Otherwise (no voter named, another term, a
// non-voter, more voters needed) it is ReadIndex. The word counts for the
// asker's reads only: a caller that lies misleads no one but itself.
func (n *Node) ReadIndexFor(ctx context.Context, voter string, voterTerm uint64) (uint64, error) {
	term, err := n.waitReady(ctx)
	if err != nil {
		return 0, err
	}
	index := n.raft.CommitIndex()
	if voterTerm == term && n.completesQuorum(voter) {
		n.vouched.Add(1)
	} else if _, err := n.verify.Do(ctx); err != nil {
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

// completesQuorum reports whether voter is a voter of the configuration,
// not this node, and with this node a quorum of its voters.
func (n *Node) completesQuorum(voter string) bool {
	if voter == "" || voter == n.cfg.ID {
		return false
	}
	servers, err := n.Servers()
	return err == nil && pairIsQuorum(servers, n.cfg.ID, voter)
}

// pairIsQuorum reports whether a and b are two distinct voters of servers
// that together are a quorum of its voters.
func pairIsQuorum(servers []Server, a, b string) bool {
	if a == b {
		return false
	}
	voters, hasA, hasB := 0, false, false
	for _, s := range servers {
		if !s.Voter {
			continue
		}
		voters++
		hasA = hasA || s.ID == a
		hasB = hasB || s.ID == b
	}
	return hasA && hasB && 2 >= voters/2+1
}

// LeadershipChecks is the number of leadership checks (rounds of
// Config.ConfirmLeadership, or of raft's VerifyLeader) run for reads.
func (n *Node) LeadershipChecks() uint64 { return n.verify.Rounds() }

// Vouched is the number of read indexes served on a follower's word
// (ReadIndexFor) without a leadership check of their own.
func (n *Node) Vouched() uint64 { return n.vouched.Load() }

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
