package raftkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Locks and elections are queues of keys (kv.LockQueue, kv.ElectionQueue):
// a waiter puts its queue key, attached to its lease, and holds the lock
// (or leads) once no key in the queue is older, by create_index, than its
// own. Each waiter watches only the key just ahead of it, so a release
// wakes one waiter, not all. The holder's create_index is the fencing
// token. Everything goes through the ordinary write, watch and read paths:
// a node serves its waiters from its own applied state, and a waiter on a
// follower sees the queue as the follower has applied it.

// queueKeepalive is how often a wait renews a lease it granted itself
// (LockOptions.TTL), in TTLs: the lease must outlive a long wait.
const queueKeepalive = 3

// abandonTimeout bounds the removal of a waiter's key after its wait
// failed.
const abandonTimeout = 5 * time.Second

// Lock acquires lock name: it blocks until the lock is held (first come,
// first served), or opts.Wait passes (kv.ErrTimeout; the waiter's key is
// removed), or ctx ends. The hold hangs on opts.Lease, or on a lease of
// opts.TTL granted for it (kept alive while waiting; after that, keeping
// it alive is the caller's part, as for any lease). When the lease ends,
// the lock passes to the next waiter. The Hold's Token increases with
// every acquisition of name: writes can require it (kv.WithFence).
func (n *Node) Lock(ctx context.Context, name string, opts kv.LockOptions) (kv.Hold, error) {
	return n.acquire(ctx, name, kv.LockQueue(name), nil, opts)
}

// Unlock releases the lock held with token: it deletes the holder's queue
// key, and the next waiter acquires it. A token that does not hold the
// lock (released, or lost with its lease) is a *kv.PreconditionError. It
// returns the index of the entry that released it. A lease granted for the
// lock is left to expire: revoke it (Hold.OwnLease) to end it now.
func (n *Node) Unlock(ctx context.Context, name string, token uint64) (uint64, error) {
	return n.release(ctx, name, kv.LockQueue(name), token)
}

// Campaign campaigns in election name with value: it blocks, as Lock
// does, until this candidate leads, and returns its Hold (Token is its
// term of leadership, increasing with every new leader).
func (n *Node) Campaign(ctx context.Context, name string, value []byte, opts kv.LockOptions) (kv.Hold, error) {
	return n.acquire(ctx, name, kv.ElectionQueue(name), value, opts)
}

// Resign ends the leadership (or the candidacy) of token in election name,
// as Unlock releases a lock.
func (n *Node) Resign(ctx context.Context, name string, token uint64) (uint64, error) {
	return n.release(ctx, name, kv.ElectionQueue(name), token)
}

// ElectionLeader returns the leader of election name (a linearizable
// read), or kv.ErrNoElectionLeader.
func (n *Node) ElectionLeader(ctx context.Context, name string) (kv.Hold, error) {
	if err := kv.ValidateLockName(name); err != nil {
		return kv.Hold{}, err
	}
	if err := n.readBarrier(ctx, kv.ReadOptions{}); err != nil {
		return kv.Hold{}, err
	}
	recs, index, err := n.store.Queue(kv.ElectionQueue(name))
	if err != nil {
		return kv.Hold{}, err
	}
	if len(recs) == 0 {
		return kv.Hold{}, fmt.Errorf("%w: election %q at index %d", kv.ErrNoElectionLeader, name, index)
	}
	return holdOf(name, recs[0], index), nil
}

// ObserveElection yields the leader of election name as this node's
// applied state has it: at once (a zero Hold, Token 0, when there is
// none), then each time the leader, or its value, changes. The sequence
// ends after it yields an error (kv.ErrClosed when the node shuts down,
// ctx's error, kv.ErrTooManyWatchers), or when the loop breaks.
func (n *Node) ObserveElection(ctx context.Context, name string) iter.Seq2[kv.Hold, error] {
	return func(yield func(kv.Hold, error) bool) {
		if err := kv.ValidateLockName(name); err != nil {
			yield(kv.Hold{}, err)
			return
		}
		queue := kv.ElectionQueue(name)
		var last kv.Hold
		first := true
		for {
			// The leader at some index, then a watch from the next one:
			// a change in between is in the watch.
			recs, index, err := n.store.Queue(queue)
			if err != nil {
				yield(kv.Hold{}, err)
				return
			}
			w, err := n.openWatch(kv.WatchOptions{Key: queue, Prefix: true, FromIndex: index + 1, ProgressInterval: time.Hour})
			if errors.Is(err, kv.ErrCompacted) {
				continue // history off or moved on: read again
			}
			if err != nil {
				yield(kv.Hold{}, err)
				return
			}
			cur := kv.Hold{Name: name, Index: index}
			if len(recs) > 0 {
				cur = holdOf(name, recs[0], index)
			}
			if first || !sameLeader(cur, last) {
				first, last = false, cur
				if !yield(cur, nil) {
					w.Close()
					return
				}
			}
			// Wait for a change of the queue, then read it again.
			for {
				rs, err := w.Next(ctx)
				if errors.Is(err, kv.ErrCompacted) {
					break
				}
				if err != nil {
					w.Close()
					yield(kv.Hold{}, err)
					return
				}
				if countEvents(rs) > 0 {
					break
				}
			}
			w.Close()
		}
	}
}

func sameLeader(a, b kv.Hold) bool {
	return a.Token == b.Token && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value)
}

func holdOf(name string, r kv.Record, index uint64) kv.Hold {
	return kv.Hold{Name: name, Key: r.Key, Token: r.CreateIndex, Lease: r.Lease, Value: r.Value, Index: index}
}

// acquire queues this waiter's key under queue and waits until it is the
// oldest there.
func (n *Node) acquire(ctx context.Context, name string, queue, value []byte, opts kv.LockOptions) (kv.Hold, error) {
	if err := kv.ValidateLockName(name); err != nil {
		return kv.Hold{}, err
	}
	if err := opts.Validate(); err != nil {
		return kv.Hold{}, err
	}
	if opts.TTL != 0 {
		if err := kv.ValidateTTL(opts.TTL, n.minLeaseTTL()); err != nil {
			return kv.Hold{}, err
		}
	}
	if int64(len(value)) > n.cfg.MaxValueSize {
		return kv.Hold{}, fmt.Errorf("%w: value is %d bytes, the limit is %d", kv.ErrTooLarge, len(value), n.cfg.MaxValueSize)
	}
	waitCtx := ctx
	if opts.Wait > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, opts.Wait)
		defer cancel()
	}
	hold := kv.Hold{Name: name, Lease: opts.Lease, Value: value}
	if opts.TTL != 0 {
		l, err := n.Grant(waitCtx, opts.TTL)
		if err != nil {
			return kv.Hold{}, waitErr(ctx, err, opts.Wait)
		}
		hold.Lease, hold.OwnLease = l.ID, true
		// Keep it alive while waiting; the caller takes over after.
		kctx, stop := context.WithCancel(waitCtx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.keepQueued(kctx, l.ID, opts.TTL)
		}()
		defer func() { stop(); <-done }()
	}
	hold.Key = append(bytes.Clone(queue), hold.Lease.String()...)
	// The queue key goes in as a transaction of one put, because group
	// commit gives a transaction a raft entry of its own: keys created in
	// one entry share their create_index, which is the fencing token, and
	// two waiters with one token would let a holder whose key is gone
	// write fenced by the token of the waiter that took over.
	put, err := n.txn(waitCtx, kv.Txn{Success: []kv.TxnOp{{Type: kv.TxnPut, Key: hold.Key, Value: value, Lease: hold.Lease}}}, kv.WriteOptions{})
	if err != nil {
		if !errors.Is(err, kv.ErrLeaseNotFound) {
			n.abandon(hold)
		}
		return kv.Hold{}, waitErr(ctx, err, opts.Wait)
	}
	hold.Token, hold.Index, err = n.waitOldest(waitCtx, queue, hold.Key, put.Index)
	if err != nil {
		n.abandon(hold)
		return kv.Hold{}, waitErr(ctx, err, opts.Wait)
	}
	return hold, nil
}

// waitErr turns the end of a wait into the caller's error: the wait's own
// bound is kv.ErrTimeout (504 timeout); the caller's context is its error.
func waitErr(ctx context.Context, err error, wait time.Duration) error {
	if ctx.Err() == nil && wait > 0 && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kv.ErrTimeout) || errors.Is(err, kv.ErrOutcomeUnknown)) {
		return fmt.Errorf("%w: not acquired within %s: %w", kv.ErrTimeout, wait, err)
	}
	return err
}

// keepQueued keeps lease id alive until ctx ends (the wait is over).
func (n *Node) keepQueued(ctx context.Context, id kv.LeaseID, ttl time.Duration) {
	t := time.NewTicker(ttl / queueKeepalive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := n.KeepAliveOnce(ctx, id); errors.Is(err, kv.ErrLeaseNotFound) {
				return
			}
		}
	}
}

// abandon removes the key of a wait that failed: its own lease revoked
// (which deletes the key), else the key deleted. It runs on the node's
// life, not the failed request's; a failure is left to the lease.
func (n *Node) abandon(h kv.Hold) {
	ctx, cancel := context.WithTimeout(n.life, abandonTimeout)
	defer cancel()
	var err error
	if h.OwnLease {
		_, err = n.Revoke(ctx, h.Lease)
	} else {
		_, err = n.Delete(ctx, h.Key)
	}
	if err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
		n.log.Warn("could not remove an abandoned lock waiter; its lease will", "key", string(h.Key), "err", err)
	}
}

// waitOldest waits until key, applied at or after index after, is the
// oldest key under queue, and returns its create_index and the applied
// index at which it was. It watches only the key just ahead of it.
func (n *Node) waitOldest(ctx context.Context, queue, key []byte, after uint64) (token, index uint64, err error) {
	for {
		if err := n.store.WaitApplied(ctx, after); err != nil {
			return 0, 0, err
		}
		recs, index, err := n.store.Queue(queue)
		if err != nil {
			return 0, 0, err
		}
		pos := -1
		for i, r := range recs {
			if bytes.Equal(r.Key, key) {
				pos = i
				break
			}
		}
		if pos < 0 {
			return 0, 0, n.lostWaiter(key)
		}
		if pos == 0 {
			return recs[0].CreateIndex, index, nil
		}
		deleted, err := n.waitDeleted(ctx, recs[pos-1].Key, index+1)
		if err != nil {
			return 0, 0, err
		}
		after = deleted
	}
}

// lostWaiter explains a queue key that vanished while it waited.
func (n *Node) lostWaiter(key []byte) error {
	return fmt.Errorf("%w: the queue key %q was deleted while it waited (its lease expired or was revoked, or the key was deleted)", kv.ErrLeaseNotFound, key)
}

// waitDeleted waits until key is deleted at an index from from on, and
// returns that index (or the applied index when the history no longer
// reaches back to from: the caller reads the queue again).
func (n *Node) waitDeleted(ctx context.Context, key []byte, from uint64) (uint64, error) {
	w, err := n.openWatch(kv.WatchOptions{Key: key, FromIndex: from, ProgressInterval: time.Hour})
	if errors.Is(err, kv.ErrCompacted) {
		return n.store.AppliedIndex(), nil
	}
	if err != nil {
		return 0, err
	}
	defer w.Close()
	for {
		rs, err := w.Next(ctx)
		if errors.Is(err, kv.ErrCompacted) {
			return n.store.AppliedIndex(), nil
		}
		if err != nil {
			return 0, err
		}
		for _, r := range rs {
			for _, e := range r.Events {
				if e.Type == kv.EventDelete {
					return r.Index, nil
				}
			}
		}
	}
}

// release deletes the queue key created at token, if it is still there.
func (n *Node) release(ctx context.Context, name string, queue []byte, token uint64) (uint64, error) {
	if err := kv.ValidateLockName(name); err != nil {
		return 0, err
	}
	if token == 0 {
		return 0, fmt.Errorf("%w: a token is positive", kv.ErrBadRequest)
	}
	if err := n.readBarrier(ctx, kv.ReadOptions{}); err != nil {
		return 0, err
	}
	recs, _, err := n.store.Queue(queue)
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		if r.CreateIndex != token {
			continue
		}
		res, err := n.txn(ctx, kv.Txn{
			Compare: []kv.Compare{{Key: r.Key, Target: kv.TargetCreateIndex, Op: kv.OpEqual, Number: token}},
			Success: []kv.TxnOp{{Type: kv.TxnDelete, Key: r.Key}},
		}, kv.WriteOptions{})
		if err != nil {
			return 0, err
		}
		if !res.Succeeded {
			break
		}
		return res.Index, nil
	}
	return 0, fmt.Errorf("%w: token %d holds no place in %q", kv.ErrPreconditionFailed, token, name)
}
