package raftnode

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// Leadership is what this node knows of the cluster's leadership at one
// moment: a belief, as raft on this node holds it, not a proof (only a
// ReadIndex round proves that a leader still leads).
type Leadership struct {
	// LeaderID and LeaderAddr (its raft address) name the leader this node
	// knows; both are "" when it knows none (an election is under way, or
	// this node is cut off).
	LeaderID   string
	LeaderAddr string
	// Term is raft's current term on this node when the change was seen.
	Term uint64
	// IsLeader reports whether this node is the leader: its raft state is
	// Leader and it knows itself as the leader.
	IsLeader bool
}

// SubscribeLeadership returns a channel that delivers this node's view of
// the leadership: at once the view current at the call, then every change
// the node's leadership watcher sees, until cancel is called (the channel
// is then closed, and nothing buffered before is delivered) or the Node is
// closed (the channel is closed after any view still buffered). cancel is
// idempotent and never blocks.
//
// Ordering: views arrive in the order the watcher saw them, each differing
// from the one before. The channel holds one view: a subscriber that is
// slow to read gets the latest view, not every one in between, and a slow
// subscriber never holds up raft, the watcher or another subscriber. So a
// subscriber may miss intermediate states: leader A, then none, then B
// may reach it as A then B; this node losing and regaining leadership may
// reach it as two IsLeader views of different terms (compare Term to tell
// a new reign from the same one). The watcher wakes on raft's signals for
// a change of the known leader and of this node's raft state (follower,
// candidate, leader), and only then reads the term: a term that changes
// while the known leader and the state stay the same (a follower that
// misses the election that re-elects its leader) is not a change here.
// Different subscribers see the same sequence of views, but each at its
// own pace.
func (n *Node) SubscribeLeadership() (events <-chan Leadership, cancel func()) {
	return n.leadership.subscribe()
}

// WaitLeader returns this node's view of the leadership as soon as it
// knows a leader (at once when it already does); the view may name this
// node. It fails with an error wrapping kv.ErrNoLeader and ctx's error when
// ctx ends first, and with kv.ErrClosed when the Node is closed.
func (n *Node) WaitLeader(ctx context.Context) (Leadership, error) {
	events, cancel := n.SubscribeLeadership()
	defer cancel()
	for {
		select {
		case l, ok := <-events:
			if !ok {
				return Leadership{}, fmt.Errorf("wait for a leader: %w", kv.ErrClosed)
			}
			if l.LeaderID != "" {
				return l, nil
			}
		case <-ctx.Done():
			return Leadership{}, fmt.Errorf("%w: none known: %w", kv.ErrNoLeader, ctx.Err())
		}
	}
}

// leadershipNow reads this node's view of the leadership from raft.
func (n *Node) leadershipNow() Leadership {
	addr, id := n.raft.LeaderWithID()
	return Leadership{
		LeaderID:   string(id),
		LeaderAddr: string(addr),
		Term:       n.raft.CurrentTerm(),
		IsLeader:   n.raft.State() == raft.Leader && string(id) == n.cfg.ID,
	}
}

// startLeadershipWatch registers the watcher's raft observer, records the
// current view and starts the watcher; Open calls it once raft runs.
func (n *Node) startLeadershipWatch() {
	// raft sends observations from its own goroutines without blocking
	// (a full channel drops one): each only wakes the watcher, which then
	// reads the state from raft, so a dropped one loses nothing while one
	// is still queued ahead of it.
	obsCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(obs)
	// Registered before reading: a change from here on wakes the watcher.
	n.leadership.init(n.leadershipNow())
	n.wg.Add(1)
	go n.watchLeadership(obsCh, obs)
}

// watchLeadership is the one goroutine that reads raft's leadership
// signals (LeaderCh, which reports this node's own gains and losses, and
// the observer's leader and state changes). On each it reads the current
// view from raft and, if it changed, hands it to every subscriber. It
// runs until Close, then closes the subscriptions.
func (n *Node) watchLeadership(obsCh <-chan raft.Observation, obs *raft.Observer) {
	defer n.wg.Done()
	defer n.leadership.close()
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-n.raft.LeaderCh():
		case <-obsCh:
		}
		n.leadership.publish(n.leadershipNow())
	}
}

// leadershipHub fans one watcher's views out to the subscribers. Each
// subscriber's channel has room for one view, and only the hub sends on
// it, under mu: replacing a view not yet read never blocks.
type leadershipHub struct {
	mu     sync.Mutex
	cur    Leadership
	subs   map[chan Leadership]struct{}
	closed bool
}

func (h *leadershipHub) init(l Leadership) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = l
	h.subs = make(map[chan Leadership]struct{})
}

func (h *leadershipHub) subscribe() (<-chan Leadership, func()) {
	ch := make(chan Leadership, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch, func() {}
	}
	ch <- h.cur
	h.subs[ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; !ok {
			return // cancelled already, or closed by Close
		}
		delete(h.subs, ch)
		select {
		case <-ch:
		default:
		}
		close(ch)
	}
}

// publish hands l to every subscriber if it differs from the last view,
// replacing a view a subscriber has not read yet.
func (h *leadershipHub) publish(l Leadership) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || l == h.cur {
		return
	}
	h.cur = l
	for ch := range h.subs {
		select {
		case <-ch:
		default:
		}
		ch <- l
	}
}

// close ends every subscription; later ones are closed at once.
func (h *leadershipHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		close(ch)
	}
	h.subs = nil
}
