package raftkv_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

type holdOrErr struct {
	h   kv.Hold
	err error
}

// lockAsync runs n.Lock in the background.
func lockAsync(ctx context.Context, n *raftkv.Node, name string, opts kv.LockOptions) <-chan holdOrErr {
	ch := make(chan holdOrErr, 1)
	go func() {
		h, err := n.Lock(ctx, name, opts)
		ch <- holdOrErr{h, err}
	}()
	return ch
}

// queueLen is how many keys wait in lock name's queue on n.
func queueLen(t *testing.T, n *raftkv.Node, name string) int {
	t.Helper()
	res, err := n.List(context.Background(), kv.ListOptions{Prefix: kv.LockQueue(name)})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Items)
}

// waitQueue polls until lock name's queue on n holds want keys.
func waitQueue(t *testing.T, n *raftkv.Node, name string, want int) {
	t.Helper()
	if err := testkit.Eventually(10*time.Second, func() error {
		if got := queueLen(t, n, name); got != want {
			return fmt.Errorf("queue of %q holds %d keys, want %d", name, got, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Locks on the embedded node: first come, first served across nodes,
// tokens that increase with each acquisition, fenced writes that a lost
// holder cannot make, a bounded wait that leaves no waiter behind, and a
// lock handed on when its holder's lease expires.
func TestLockGoAPI(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx := context.Background()
	a, b, d := c.Node(0), c.Node(1), c.Node(2)

	for _, tt := range []struct {
		name string
		opts kv.LockOptions
	}{
		{"", kv.LockOptions{TTL: 5 * time.Second}},
		{"a/b", kv.LockOptions{TTL: 5 * time.Second}},
		{"job", kv.LockOptions{}},
		{"job", kv.LockOptions{TTL: 5 * time.Second, Lease: 3}},
		{"job", kv.LockOptions{TTL: time.Second}},
		{"job", kv.LockOptions{TTL: 5 * time.Second, Wait: -time.Second}},
	} {
		if _, err := a.Lock(ctx, tt.name, tt.opts); !errors.Is(err, kv.ErrBadRequest) {
			t.Errorf("Lock(%q, %+v): %v, want bad request", tt.name, tt.opts, err)
		}
	}
	if _, err := a.Lock(ctx, "job", kv.LockOptions{Lease: 999_999}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Errorf("Lock with a lease never granted: %v", err)
	}

	h1, err := a.Lock(ctx, "job", kv.LockOptions{TTL: 20 * time.Second})
	if err != nil || h1.Token == 0 || !h1.OwnLease || h1.Lease == 0 {
		t.Fatalf("first lock: %+v %v", h1, err)
	}
	// b waits behind a.
	bCtx, bCancel := context.WithCancel(ctx)
	defer bCancel()
	second := lockAsync(bCtx, b, "job", kv.LockOptions{TTL: 20 * time.Second})
	waitQueue(t, d, "job", 2)
	// A bounded wait on a third node times out and leaves nothing queued.
	if _, err := d.Lock(ctx, "job", kv.LockOptions{TTL: 20 * time.Second, Wait: 500 * time.Millisecond}); !errors.Is(err, kv.ErrTimeout) {
		t.Fatalf("bounded wait: %v, want timeout", err)
	}
	waitQueue(t, d, "job", 2)
	select {
	case r := <-second:
		t.Fatalf("second waiter acquired a held lock: %+v %v", r.h, r.err)
	default:
	}
	// The holder writes under its fence.
	if _, err := d.Put(ctx, []byte("guarded"), []byte("a"), kv.WithFence("job", h1.Token)); err != nil {
		t.Fatalf("fenced put of the holder: %v", err)
	}
	if _, err := d.Unlock(ctx, "job", h1.Token+1000); !errors.Is(err, kv.ErrPreconditionFailed) {
		t.Fatalf("unlock with a token that holds nothing: %v", err)
	}
	if _, err := c.Node(1).Unlock(ctx, "job", h1.Token); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	r := <-second
	if r.err != nil || r.h.Token <= h1.Token {
		t.Fatalf("second lock: %+v %v (first token %d)", r.h, r.err, h1.Token)
	}
	h2 := r.h
	// The first holder's token no longer fences anything.
	_, err = a.Put(ctx, []byte("guarded"), []byte("stale"), kv.WithFence("job", h1.Token))
	var pe *kv.PreconditionError
	if !errors.As(err, &pe) || pe.CurrentModIndex == 0 {
		t.Fatalf("fenced put with a released token: %v", err)
	}
	if _, err := a.Delete(ctx, []byte("guarded"), kv.WithFence("job", h1.Token)); !errors.Is(err, kv.ErrPreconditionFailed) {
		t.Fatalf("fenced delete with a released token: %v", err)
	}
	tr, err := a.Txn(ctx, kv.Txn{Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("guarded"), Value: []byte("txn")}}}, kv.WithFence("job", h2.Token))
	if err != nil || !tr.Succeeded {
		t.Fatalf("fenced txn of the holder: %+v %v", tr, err)
	}

	// The holder stops keeping its lease alive (a pause): the lease
	// expires, the next waiter acquires, and the old holder's fenced write
	// fails after it resumes.
	third := lockAsync(ctx, d, "job", kv.LockOptions{TTL: 20 * time.Second})
	waitQueue(t, a, "job", 2)
	if _, err := b.Revoke(ctx, h2.Lease); err != nil { // as good as an expiry, sooner
		t.Fatal(err)
	}
	r = <-third
	if r.err != nil || r.h.Token <= h2.Token {
		t.Fatalf("third lock: %+v %v", r.h, r.err)
	}
	if _, err := b.Put(ctx, []byte("guarded"), []byte("paused holder"), kv.WithFence("job", h2.Token)); !errors.Is(err, kv.ErrPreconditionFailed) {
		t.Fatalf("a holder whose lease ended wrote: %v", err)
	}
	rec, err := a.Get(ctx, []byte("guarded"), kv.ReadOptions{})
	if err != nil || string(rec.Value) != "txn" {
		t.Fatalf("guarded key: %+v %v", rec, err)
	}

	// An expiry on its own hands the lock on too: a holder on a 2 s lease
	// it never keeps alive.
	lease, err := a.Grant(ctx, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unlock(ctx, "job", r.h.Token); err != nil {
		t.Fatal(err)
	}
	h4, err := a.Lock(ctx, "job", kv.LockOptions{Lease: lease.ID})
	if err != nil || h4.OwnLease {
		t.Fatalf("lock on a lease: %+v %v", h4, err)
	}
	h5, err := b.Lock(ctx, "job", kv.LockOptions{TTL: 20 * time.Second, Wait: 15 * time.Second})
	if err != nil || h5.Token <= h4.Token {
		t.Fatalf("lock after the holder's lease expired: %+v %v", h5, err)
	}
}

// Elections on the embedded node: campaign, the leader seen from every
// node, an observer that sees each leader in turn, resign hand-over.
func TestElectionGoAPI(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b, d := c.Node(0), c.Node(1), c.Node(2)

	if _, err := d.ElectionLeader(ctx, "svc"); !errors.Is(err, kv.ErrNoElectionLeader) {
		t.Fatalf("leader of an empty election: %v", err)
	}
	seen := make(chan kv.Hold, 16)
	go func() {
		defer close(seen)
		for h, err := range d.ObserveElection(ctx, "svc") {
			if err != nil {
				return
			}
			seen <- h
		}
	}()
	next := func() kv.Hold {
		t.Helper()
		select {
		case h := <-seen:
			return h
		case <-time.After(10 * time.Second):
			t.Fatal("no leader observed")
			return kv.Hold{}
		}
	}
	if h := next(); h.Token != 0 {
		t.Fatalf("first observation: %+v, want no leader", h)
	}
	ha, err := a.Campaign(ctx, "svc", []byte("a:8080"), kv.LockOptions{TTL: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if h := next(); h.Token != ha.Token || string(h.Value) != "a:8080" {
		t.Fatalf("observed %+v, want a's leadership %+v", h, ha)
	}
	for i := range 3 {
		l, err := c.Node(i).ElectionLeader(ctx, "svc")
		if err != nil || l.Token != ha.Token || string(l.Value) != "a:8080" || l.Lease != ha.Lease {
			t.Fatalf("node %d: leader %+v %v", i, l, err)
		}
	}
	bDone := make(chan holdOrErr, 1)
	go func() {
		h, err := b.Campaign(ctx, "svc", []byte("b:8080"), kv.LockOptions{TTL: 20 * time.Second})
		bDone <- holdOrErr{h, err}
	}()
	if err := testkit.Eventually(10*time.Second, func() error {
		res, err := d.List(ctx, kv.ListOptions{Prefix: kv.ElectionQueue("svc")})
		if err != nil || len(res.Items) != 2 {
			return fmt.Errorf("candidates: %d %v", len(res.Items), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resign(ctx, "svc", ha.Token); err != nil {
		t.Fatal(err)
	}
	r := <-bDone
	if r.err != nil || r.h.Token <= ha.Token {
		t.Fatalf("b's campaign: %+v %v", r.h, r.err)
	}
	if h := next(); h.Token != r.h.Token || string(h.Value) != "b:8080" {
		t.Fatalf("observed %+v, want b's leadership", h)
	}
	if _, err := b.Resign(ctx, "svc", r.h.Token); err != nil {
		t.Fatal(err)
	}
	if h := next(); h.Token != 0 {
		t.Fatalf("observed %+v after the last resign, want no leader", h)
	}
}

// Waiters that queue at the same moment get distinct tokens. Group commit
// puts concurrent writes in one raft entry, and keys created in one entry
// share their create_index: two waiters' queue keys in one entry would
// share a fencing token, and a holder whose key was gone could still write
// fenced by the token of the waiter that took over (the chaos harness's
// mutual exclusion test found it). Each queue key must have an entry of
// its own.
func TestLockWaitersDistinctTokens(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const waiters = 24
	nodes := []*raftkv.Node{c.Node(c.Leader()), c.Node(c.Follower())}
	for i := range waiters {
		lockAsync(ctx, nodes[i%2], "burst", kv.LockOptions{TTL: 10 * time.Second})
	}
	n := nodes[0]
	waitQueue(t, n, "burst", waiters)
	res, err := n.List(ctx, kv.ListOptions{Prefix: kv.LockQueue("burst")})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]string{}
	for _, it := range res.Items {
		if other, dup := seen[it.CreateIndex]; dup {
			t.Errorf("queue keys %s and %s share create_index %d: one fencing token for two holders", other, it.Key, it.CreateIndex)
		}
		seen[it.CreateIndex] = string(it.Key)
	}
}
