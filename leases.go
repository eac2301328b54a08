package raftkv

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Leases: the state machine records each lease's TTL, the remaining time
// its last keepalive or checkpoint recorded, and that keepalive's index
// (store/lease.go); it never reads a clock. Every node keeps a timer per
// lease, started from the remaining time of the entry that last recorded
// it, at the moment the node applies that entry (leaseTimers). Only the
// ready leader acts on its timers: it appends a revoke for each lease
// whose timer ran out, guarded by the keepalive index the timer started
// from (a keepalive that reached the log first keeps the lease), and,
// every Config.LeaseCheckpoint, a checkpoint of the remaining time of
// each lease the log has not recorded for that long.
//
// The bounds (docs/leases.md): a node applies an entry after the leader
// appended it, so a timer never runs out before the time the entry
// recorded, counted from when its writer sent it: a key is never removed
// earlier than TTL after its last acknowledged keepalive was sent. A new
// leader's timers ran on since it applied the same entries, so a leader
// change adds only the election (and the replication delay), never a
// fresh TTL; a node that restarted resumes from the last checkpoint, so
// it may add up to one checkpoint interval.

// DefaultLeaseCheckpoint is the default of Config.LeaseCheckpoint.
const DefaultLeaseCheckpoint = 2 * time.Second

// leaseTick is how often the leader looks at its timers.
const leaseTick = 50 * time.Millisecond

// maxCheckpointsPerCommand bounds one checkpoint command; more leases
// take more commands (group commit may still share an entry).
const maxCheckpointsPerCommand = 4096

// leaseTimers holds a node's timer for every lease. store.Options.OnLeases
// feeds it from the apply path; the leader's loop reads it.
type leaseTimers struct {
	mu sync.Mutex
	m  map[kv.LeaseID]*leaseTimer
}

type leaseTimer struct {
	ttl      time.Duration
	deadline time.Time
	// keepalive is the index of the keepalive (or grant) the timer
	// started from: the leader's revoke names it.
	keepalive uint64
	// recorded is when this node applied the entry that last recorded the
	// lease's remaining time.
	recorded time.Time
}

// onLeases follows what applied entries recorded (store.Options.OnLeases).
// A keepalive or a grant (a new keepalive index) starts the timer from the
// TTL, now. A checkpoint starts it from the recorded remaining time,
// unless the timer already runs out sooner from the same keepalive: both
// are never early, and the sooner is closer (on the leader, the
// checkpoint was read off this very timer). A reset (a restore) replaces
// every timer.
func (lt *leaseTimers) onLeases(changes []store.LeaseChange, reset bool) {
	now := time.Now()
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if reset || lt.m == nil {
		lt.m = make(map[kv.LeaseID]*leaseTimer, len(changes))
	}
	for _, c := range changes {
		if c.Gone {
			delete(lt.m, c.ID)
			continue
		}
		deadline := now.Add(c.Remaining)
		t := lt.m[c.ID]
		if t == nil {
			t = &leaseTimer{}
			lt.m[c.ID] = t
		} else if !reset && t.keepalive == c.KeepaliveIndex && t.deadline.Before(deadline) {
			deadline = t.deadline
		}
		t.ttl, t.deadline, t.keepalive, t.recorded = c.TTL, deadline, c.KeepaliveIndex, now
	}
}

// remaining is lease id's time left by this node's timer.
func (lt *leaseTimers) remaining(id kv.LeaseID, now time.Time) (time.Duration, bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	t, ok := lt.m[id]
	if !ok {
		return 0, false
	}
	return max(t.deadline.Sub(now), 0), true
}

// count is how many leases the node holds timers for.
func (lt *leaseTimers) count() int {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return len(lt.m)
}

// due returns the revokes for the leases whose timers ran out by now, and
// the checkpoints of those whose remaining time the log has not recorded
// for interval (rounded up to the millisecond: a checkpoint is never
// early).
func (lt *leaseTimers) due(now time.Time, interval time.Duration, checkpoint bool) (revokes []*store.Command, cps []store.LeaseCheckpoint) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for id, t := range lt.m {
		left := t.deadline.Sub(now)
		switch {
		case left <= 0:
			revokes = append(revokes, &store.Command{Op: store.OpLeaseRevoke, Lease: uint64(id), IfKeepalive: t.keepalive})
		case checkpoint && now.Sub(t.recorded) >= interval:
			ms := uint64(math.Ceil(float64(left) / float64(time.Millisecond)))
			cps = append(cps, store.LeaseCheckpoint{Lease: uint64(id), Remaining: ms})
		}
	}
	slices.SortFunc(revokes, func(a, b *store.Command) int { return cmp.Compare(a.Lease, b.Lease) })
	slices.SortFunc(cps, func(a, b store.LeaseCheckpoint) int { return cmp.Compare(a.Lease, b.Lease) })
	return revokes, cps
}

// seedLeases starts the timers of the leases kv.db holds at Open, from
// their recorded remaining times (the entries raft replays next move them
// on).
func (n *Node) seedLeases() error {
	ls, index, err := n.store.Leases()
	if err != nil {
		return fmt.Errorf("raftkv: read leases: %w", err)
	}
	changes := make([]store.LeaseChange, len(ls))
	for i, l := range ls {
		changes[i] = store.LeaseChange{LeaseState: l, Index: index}
	}
	n.leases.onLeases(changes, true)
	return nil
}

// runLeases is the leader's side of leases, for the life of the node: on
// every tick, while this node is the ready leader, it expires the leases
// whose timers ran out and, every LeaseCheckpoint, records remaining
// times.
func (n *Node) runLeases(ctx context.Context) {
	tick := time.NewTicker(leaseTick)
	defer tick.Stop()
	var last time.Time // last checkpoint
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !n.raft.LeaderReady() {
			last = time.Time{}
			continue
		}
		now := time.Now()
		if last.IsZero() {
			// A new reign: its first checkpoint comes a full interval on.
			last = now
		}
		checkpoint := now.Sub(last) >= n.cfg.LeaseCheckpoint
		revokes, cps := n.leases.due(now, n.cfg.LeaseCheckpoint, checkpoint)
		if checkpoint {
			last = now
		}
		cmds := revokes
		for len(cps) > 0 {
			k := min(len(cps), maxCheckpointsPerCommand)
			cmds = append(cmds, &store.Command{Op: store.OpLeaseCheckpoint, Checkpoints: cps[:k]})
			cps = cps[k:]
		}
		if len(cmds) == 0 {
			continue
		}
		n.applyLeaseCommands(ctx, cmds, len(revokes))
	}
}

// applyLeaseCommands hands the leader's revokes and checkpoints to raft
// and waits for them: the timers move when they apply, so the next tick
// does not propose them again. A failure (leadership lost, a timeout) is
// left to the next tick, or the next leader.
func (n *Node) applyLeaseCommands(ctx context.Context, cmds []*store.Command, revokes int) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ctxs := make([]context.Context, len(cmds))
	for i := range ctxs {
		ctxs[i] = ctx
	}
	res, errs := n.raft.ApplyMany(ctxs, cmds)
	for i, c := range cmds {
		err := errs[i]
		if err == nil && res[i] != nil {
			err = res[i].Err
		}
		switch {
		case c.Op == store.OpLeaseRevoke && err == nil:
			n.metrics.leasesExpired.Inc()
			n.log.Debug("lease expired", "lease", c.Lease, "keys_deleted", res[i].Delete.Deleted, "index", res[i].Index)
		case c.Op == store.OpLeaseCheckpoint && err == nil:
			n.metrics.leaseCheckpoints.Add(float64(len(c.Checkpoints)))
		case err != nil && i < revokes:
			n.log.Debug("lease expiry not applied", "lease", c.Lease, "err", err)
		case err != nil:
			n.log.Debug("lease checkpoint not applied", "err", err)
		}
	}
}

// minLeaseTTL is the shortest TTL this node grants: twice the election
// timeout.
func (n *Node) minLeaseTTL() time.Duration { return 2 * n.raft.ElectionTimeout() }

func ttlMillis(d time.Duration) uint64 { return uint64(d / time.Millisecond) }

// Grant grants a lease of ttl (from twice the election timeout to
// kv.MaxLeaseTTL, in whole milliseconds; else kv.ErrBadRequest). It
// lives until it is revoked, or until ttl passes without a keepalive;
// then the keys attached to it are deleted. On a follower the grant is
// sent to the leader.
func (n *Node) Grant(ctx context.Context, ttl time.Duration) (kv.Lease, error) {
	if err := kv.ValidateTTL(ttl, n.minLeaseTTL()); err != nil {
		return kv.Lease{}, err
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpLeaseGrant, TTL: ttlMillis(ttl)}, kv.WriteOptions{})
	if err != nil {
		return kv.Lease{}, err
	}
	return kv.Lease{ID: res.Lease.ID, TTL: res.Lease.TTL, Index: res.Index}, nil
}

// KeepAliveOnce restarts the lease's TTL and returns it. It returns once
// the keepalive is in the log on a quorum: from then on the lease lives at
// least TTL from when the call was made. Keepalives arriving together
// share a raft entry. A lease that expired or was revoked is
// kv.ErrLeaseNotFound.
func (n *Node) KeepAliveOnce(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	if id == 0 {
		return kv.Lease{}, fmt.Errorf("%w: lease id 0", kv.ErrBadRequest)
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpLeaseKeepalive, Lease: uint64(id)}, kv.WriteOptions{})
	if err != nil {
		return kv.Lease{}, err
	}
	return kv.Lease{ID: id, TTL: res.Lease.TTL, Index: res.Index}, nil
}

// Revoke removes the lease and deletes every key attached to it, in one
// raft entry (a watch sees one delete event per key, at that index).
func (n *Node) Revoke(ctx context.Context, id kv.LeaseID) (kv.RevokeResult, error) {
	if id == 0 {
		return kv.RevokeResult{}, fmt.Errorf("%w: lease id 0", kv.ErrBadRequest)
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpLeaseRevoke, Lease: uint64(id)}, kv.WriteOptions{})
	if err != nil {
		return kv.RevokeResult{}, err
	}
	return kv.RevokeResult{ID: id, Deleted: res.Delete.Deleted, Index: res.Index}, nil
}

// LeaseInfo describes a lease: its TTL, the time it has left as the
// leader's timer sees it, and its keys. It is a linearizable read; on a
// follower it is the leader's answer.
func (n *Node) LeaseInfo(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	if id == 0 {
		return kv.Lease{}, fmt.Errorf("%w: lease id 0", kv.ErrBadRequest)
	}
	if !n.raft.IsLeader() {
		var out kv.LeaseJSON
		if err := n.askLeader(ctx, "/v1/lease/"+id.String(), &out); err != nil {
			return kv.Lease{}, err
		}
		return out.Lease()
	}
	if err := n.readBarrier(ctx, kv.ReadOptions{}); err != nil {
		return kv.Lease{}, err
	}
	l, keys, index, err := n.store.Lease(id)
	if err != nil {
		return kv.Lease{}, err
	}
	rem, ok := n.leases.remaining(id, time.Now())
	if !ok {
		rem = l.Remaining
	}
	return kv.Lease{ID: id, TTL: l.TTL, Remaining: min(rem, l.TTL), Keys: keys, Index: index}, nil
}

// Leases lists every lease, in id order, with its TTL and the time it has
// left as the leader sees it (a linearizable read; on a follower, the
// leader's answer).
func (n *Node) Leases(ctx context.Context) ([]kv.Lease, error) {
	if !n.raft.IsLeader() {
		var out struct {
			Leases []kv.LeaseJSON `json:"leases"`
		}
		if err := n.askLeader(ctx, "/v1/lease", &out); err != nil {
			return nil, err
		}
		ls := make([]kv.Lease, 0, len(out.Leases))
		for _, j := range out.Leases {
			l, err := j.Lease()
			if err != nil {
				return nil, fmt.Errorf("lease list from the leader: %w", err)
			}
			ls = append(ls, l)
		}
		return ls, nil
	}
	if err := n.readBarrier(ctx, kv.ReadOptions{}); err != nil {
		return nil, err
	}
	states, index, err := n.store.Leases()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]kv.Lease, len(states))
	for i, l := range states {
		rem, ok := n.leases.remaining(l.ID, now)
		if !ok {
			rem = l.Remaining
		}
		out[i] = kv.Lease{ID: l.ID, TTL: l.TTL, Remaining: min(rem, l.TTL), Index: index}
	}
	return out, nil
}

// askLeader sends a GET for path to the leader, marked as forwarded (a
// member that does not lead refuses it rather than sending it on), and
// decodes its JSON answer into out.
func (n *Node) askLeader(ctx context.Context, path string, out any) error {
	leader := n.leaderAPIAddr()
	if leader == "" {
		return fmt.Errorf("%w: no leader known", kv.ErrNoLeader)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.Scheme()+"://"+leader+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set(httpapi.HeaderForwardedBy, n.cfg.ID)
	resp, err := n.peers.Do(req)
	if err != nil {
		return fmt.Errorf("%w: leader at %s unreachable: %w", kv.ErrNoLeader, leader, err)
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		return client.DecodeError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%w: answer of the leader at %s: %w", kv.ErrNoLeader, leader, err)
	}
	return nil
}
