package concurrency_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/concurrency"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// nodeClient is a client that talks to node i of c only.
func nodeClient(t *testing.T, c *testkit.Cluster, i int) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: []string{c.URL(i)}, RefreshInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// A 3s lease kept alive by KeepAlive through a follower outlives its TTL
// several times over; after Stop it expires, and the Keeper is done.
func TestKeepAliveOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	cl := nodeClient(t, c, c.Follower())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ttl = 3 * time.Second
	l, err := cl.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, []byte("svc/x"), []byte("up"), kv.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	k := concurrency.KeepAlive(ctx, cl, l.ID, ttl)
	t.Cleanup(k.Stop)
	until := time.Now().Add(10 * time.Second)
	for time.Now().Before(until) { // 10s, checking the lease all along
		if _, err := cl.LeaseInfo(ctx, l.ID); err != nil {
			t.Fatalf("after %s of keepalives: %v", 10*time.Second-time.Until(until), err)
		}
		select {
		case <-k.Done():
			t.Fatalf("keeper done while keeping alive: %v", k.Err())
		case <-time.After(250 * time.Millisecond): // the pace of the checks
		}
	}
	stopped := time.Now()
	k.Stop()
	select {
	case <-k.Done():
	default:
		t.Fatal("Done open after Stop")
	}
	if !errors.Is(k.Err(), concurrency.ErrStopped) {
		t.Errorf("Err after Stop = %v", k.Err())
	}
	// Gone after the TTL (plus the expiry machinery's slack), with its key.
	if err := testkit.Eventually(ttl+10*time.Second, func() error {
		if _, err := cl.LeaseInfo(ctx, l.ID); !errors.Is(err, kv.ErrLeaseNotFound) {
			return fmt.Errorf("lease info %s after Stop: %v", time.Since(stopped), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if time.Since(stopped) < ttl-time.Second {
		t.Errorf("the lease expired %s after the last keepalive, before its TTL %s", time.Since(stopped), ttl)
	}
	if _, err := cl.Get(ctx, []byte("svc/x"), kv.ReadOptions{}); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("the expired lease's key: %v", err)
	}
}

// Three sessions, one on each node, take a lock in turns: never two in
// the critical section, tokens strictly increasing in the order the lock
// was taken, each fenced write accepted, Unlock handing the lock over; a
// write with a stale token is refused (412).
func TestMutexOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const rounds = 5
	var (
		inside atomic.Int32
		mu     sync.Mutex
		tokens []uint64
		wg     sync.WaitGroup
		errs   = make(chan error, 3*rounds+3)
	)
	for i := range c.Size() {
		cl := nodeClient(t, c, i)
		s, err := concurrency.NewSession(ctx, cl, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := concurrency.NewMutex(s, "jobs")
			for r := range rounds {
				if err := m.Lock(ctx); err != nil {
					errs <- fmt.Errorf("node %d round %d: %w", i, r, err)
					return
				}
				if n := inside.Add(1); n != 1 {
					errs <- fmt.Errorf("node %d: %d holders at once", i, n)
				}
				mu.Lock()
				tokens = append(tokens, m.Token())
				mu.Unlock()
				if _, err := cl.Put(ctx, []byte("jobs/owner"), []byte(strconv.Itoa(i)), kv.WithFence("jobs", m.Token())); err != nil {
					errs <- fmt.Errorf("node %d: fenced put with the held token: %w", i, err)
				}
				inside.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					errs <- fmt.Errorf("node %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(tokens) != 3*rounds || !slices.IsSorted(tokens) || len(slices.Compact(slices.Clone(tokens))) != len(tokens) {
		t.Errorf("tokens in the order the lock was taken: %v, want %d strictly increasing", tokens, 3*rounds)
	}
	// The first token is stale now: a write fenced with it is refused.
	cl := nodeClient(t, c, c.Leader())
	_, err := cl.Put(ctx, []byte("jobs/owner"), []byte("late"), kv.WithFence("jobs", tokens[0]))
	if !errors.Is(err, kv.ErrPreconditionFailed) {
		t.Errorf("fenced put with a stale token: %v, want 412", err)
	}
}

// Campaign on one node, observe from another: the observer sees the
// leader, the hand-over to the waiting candidate when it resigns, and no
// leader after the second resigns.
func TestElectionOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session := func(i int) *concurrency.Session {
		s, err := concurrency.NewSession(ctx, nodeClient(t, c, i), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	}
	a := concurrency.NewElection(session(0), "sched")
	b := concurrency.NewElection(session(1), "sched")
	obs := concurrency.NewElection(session(2), "sched")

	seen := make(chan kv.Hold, 16)
	octx, ostop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		defer close(seen)
		for h, err := range obs.Observe(octx) {
			if err != nil {
				done <- err
				return
			}
			seen <- h
		}
		done <- nil
	}()
	t.Cleanup(func() { ostop(); <-done })
	next := func(what string) kv.Hold {
		t.Helper()
		select {
		case h := <-seen:
			return h
		case <-time.After(30 * time.Second):
			t.Fatalf("observed nothing for %s", what)
			return kv.Hold{}
		}
	}
	if h := next("the start"); h.Token != 0 {
		t.Fatalf("first observation %+v, want no leader", h)
	}
	if err := a.Campaign(ctx, []byte("host-a")); err != nil {
		t.Fatal(err)
	}
	if h := next("a's campaign"); string(h.Value) != "host-a" || h.Token != a.Token() {
		t.Fatalf("observed %+v, want host-a with token %d", h, a.Token())
	}
	campaigned := make(chan error, 1)
	go func() { campaigned <- b.Campaign(ctx, []byte("host-b")) }()
	// b waits behind a, its key queued after a's: it leads only once a
	// resigns, in the same entry (a resignation before b's key is queued
	// would show no leader in between).
	lister := nodeClient(t, c, 2)
	if err := testkit.Eventually(10*time.Second, func() error {
		h, err := b.Leader(ctx)
		if err != nil || string(h.Value) != "host-a" {
			return fmt.Errorf("leader %+v, %v", h, err)
		}
		q, err := lister.List(ctx, kv.ListOptions{Prefix: kv.ElectionQueue("sched"), KeysOnly: true})
		if err != nil || len(q.Items) != 2 {
			return fmt.Errorf("queue %+v, %v: want a's and b's keys", q.Items, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-campaigned; err != nil {
		t.Fatal(err)
	}
	if h := next("a's resignation"); string(h.Value) != "host-b" || h.Token != b.Token() || h.Token <= 0 {
		t.Fatalf("observed %+v, want host-b with token %d", h, b.Token())
	}
	if err := b.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if h := next("b's resignation"); h.Token != 0 {
		t.Fatalf("observed %+v, want no leader", h)
	}
	if _, err := obs.Leader(ctx); !errors.Is(err, kv.ErrNoElectionLeader) {
		t.Errorf("Leader with none: %v", err)
	}
}
