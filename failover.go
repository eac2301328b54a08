package raftkv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftnode"
	"github.com/raftkv/raftkv/store"
)

// A write or a linearizable read needs a leader. During an election there
// is none for a second or two, and right after a leader dies the others
// still name it for up to an election timeout. Rather than answer 503 at
// once, the node waits for a leader, as etcd's server holds a proposal,
// when it is certain that nothing was sent anywhere: no leader known, the
// leader refused the connection, or it answered that it no longer leads
// (kv.ErrNoLeader, and kv.ErrNotLeader from a read-index request). Then it
// tries again. Nothing that may have been sent is ever sent again: an
// outcome_unknown stays one. The wait is bounded by the request (its
// context: ?wait, the client disconnecting) and by Tuning.LeaderWait from
// the first failure; past it the answer is the 503 the last attempt got.

// DefaultLeaderWait is Tuning.LeaderWait's default.
const DefaultLeaderWait = 5 * time.Second

// submit hands cmd to raft here when this node leads, else to the leader
// in the next batch this follower sends, waiting out an election when no
// leader took it.
func (n *Node) submit(ctx context.Context, cmd *store.Command) (*store.Result, error) {
	var deadline time.Time
	for {
		tried, _ := n.raft.Leader()
		res, err := n.raft.Apply(ctx, cmd)
		if errors.Is(err, kv.ErrNotLeader) {
			res, err = n.toLeader.Apply(ctx, cmd)
		}
		if !errors.Is(err, kv.ErrNoLeader) {
			return res, err
		}
		// Certainly not applied, and no leader took it.
		if deadline.IsZero() {
			deadline = time.Now().Add(n.cfg.Tuning.LeaderWait)
		}
		if werr := n.awaitLeader(ctx, deadline, tried); werr != nil {
			return nil, err
		}
	}
}

// linearizableIndex returns a read index: this node's own when it leads,
// else the leader's (also when this node lost the leadership meanwhile),
// waiting out an election when no leader answers.
func (n *Node) linearizableIndex(ctx context.Context) (uint64, error) {
	var deadline time.Time
	for {
		tried, _ := n.raft.Leader()
		index, err := n.readIndexOnce(ctx)
		if err == nil || !errors.Is(err, kv.ErrNoLeader) && !errors.Is(err, kv.ErrNotLeader) {
			return index, err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(n.cfg.Tuning.LeaderWait)
		}
		if werr := n.awaitLeader(ctx, deadline, tried); werr != nil {
			return 0, err
		}
	}
}

func (n *Node) readIndexOnce(ctx context.Context) (uint64, error) {
	if n.raft.IsLeader() {
		index, err := n.raft.ReadIndex(ctx)
		if !errors.Is(err, kv.ErrNotLeader) {
			return index, err
		}
	}
	return n.leaderReadIndex(ctx)
}

// awaitLeader waits, until ctx ends or deadline passes, for a leader other
// than tried (the one known before the attempt that failed; "" for none),
// or for tried again in a later term. A change it cannot see (the leader
// view holds no term of its own for an unchanged leader) is covered by
// trying again every retryBackoff while a leader is known.
func (n *Node) awaitLeader(ctx context.Context, deadline time.Time, tried string) error {
	wait := time.Until(deadline)
	if wait <= 0 {
		return kv.ErrNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	events, unsubscribe := n.raft.SubscribeLeadership()
	defer unsubscribe()
	var first raftnode.Leadership
	backoff := time.NewTimer(retryBackoff)
	defer backoff.Stop()
	for seen := 0; ; seen++ {
		select {
		case l, ok := <-events:
			if !ok {
				return kv.ErrClosed
			}
			if seen == 0 {
				first = l
			}
			if l.LeaderID != "" && (l.LeaderID != tried || l.Term != first.Term) {
				return nil
			}
		case <-backoff.C:
			if id, _ := n.raft.Leader(); id != "" {
				return nil // try again: the same leader may answer now
			}
			backoff.Reset(retryBackoff)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", kv.ErrNoLeader, ctx.Err())
		}
	}
}

// retryBackoff is the pause before trying a leader that failed again,
// when no change of leadership was seen.
const retryBackoff = 100 * time.Millisecond
