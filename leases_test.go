package raftkv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// The lease API on the embedded node, through followers and the leader:
// bad input, grant, attach, list, detach, revoke with its delete events.
func TestLeaseGoAPI(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx := context.Background()
	leader, follower := c.Node(c.Leader()), c.Node(c.Follower())
	other := c.Node(3 - c.Leader() - c.Follower())

	bad := []struct {
		name string
		call func() error
		want error
	}{
		{"ttl zero", func() error { _, err := follower.Grant(ctx, 0); return err }, kv.ErrBadRequest},
		{"ttl negative", func() error { _, err := follower.Grant(ctx, -time.Second); return err }, kv.ErrBadRequest},
		{"ttl below twice the election timeout", func() error { _, err := follower.Grant(ctx, time.Second); return err }, kv.ErrBadRequest},
		{"ttl too long", func() error { _, err := follower.Grant(ctx, kv.MaxLeaseTTL+time.Hour); return err }, kv.ErrBadRequest},
		{"ttl finer than a millisecond", func() error { _, err := follower.Grant(ctx, 3*time.Second+time.Microsecond); return err }, kv.ErrBadRequest},
		{"keepalive of id 0", func() error { _, err := follower.KeepAliveOnce(ctx, 0); return err }, kv.ErrBadRequest},
		{"keepalive of a lease never granted", func() error { _, err := follower.KeepAliveOnce(ctx, 424242); return err }, kv.ErrLeaseNotFound},
		{"revoke of a lease never granted", func() error { _, err := leader.Revoke(ctx, 424242); return err }, kv.ErrLeaseNotFound},
		{"info of a lease never granted", func() error { _, err := leader.LeaseInfo(ctx, 424242); return err }, kv.ErrLeaseNotFound},
		{"put to a lease never granted", func() error {
			_, err := follower.Put(ctx, []byte("l/x"), []byte("v"), kv.WithLease(424242))
			return err
		}, kv.ErrLeaseNotFound},
		{"put with a lease and a ttl", func() error {
			_, err := follower.Put(ctx, []byte("l/x"), []byte("v"), kv.WithLease(1), kv.WithTTL(5*time.Second))
			return err
		}, kv.ErrBadRequest},
		{"delete with a ttl", func() error { _, err := follower.Delete(ctx, []byte("l/x"), kv.WithTTL(5*time.Second)); return err }, kv.ErrBadRequest},
	}
	for _, tt := range bad {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := leader.Get(ctx, []byte("l/x"), kv.ReadOptions{}); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a refused put wrote: %v", err)
	}

	l, err := follower.Grant(ctx, 30*time.Second)
	if err != nil || l.ID == 0 || l.TTL != 30*time.Second || l.Index == 0 {
		t.Fatalf("grant: %+v %v", l, err)
	}
	for _, k := range []string{"l/a", "l/b"} {
		r, err := other.Put(ctx, []byte(k), []byte("v"), kv.WithLease(l.ID))
		if err != nil || r.Lease != l.ID {
			t.Fatalf("put %s: %+v %v", k, r, err)
		}
	}
	ttlPut, err := follower.Put(ctx, []byte("l/ttl"), []byte("v"), kv.WithTTL(20*time.Second))
	if err != nil || ttlPut.Lease == 0 || ttlPut.Lease == l.ID {
		t.Fatalf("put with ttl: %+v %v", ttlPut, err)
	}
	for i := range 3 {
		rec, err := c.Node(i).Get(ctx, []byte("l/a"), kv.ReadOptions{})
		if err != nil || rec.Lease != l.ID {
			t.Fatalf("node %d: l/a %+v %v", i, rec, err)
		}
	}
	info, err := leader.LeaseInfo(ctx, l.ID)
	if err != nil || info.TTL != 30*time.Second || info.Remaining <= 20*time.Second || info.Remaining > 30*time.Second ||
		len(info.Keys) != 2 || !bytes.Equal(info.Keys[0], []byte("l/a")) || !bytes.Equal(info.Keys[1], []byte("l/b")) {
		t.Fatalf("lease info: %+v %v", info, err)
	}
	// A follower answers with the leader's view; a lease read forwarded
	// to a member that does not lead is refused rather than sent on.
	finfo, err := follower.LeaseInfo(ctx, l.ID)
	if err != nil || finfo.TTL != 30*time.Second || finfo.Remaining <= 20*time.Second || len(finfo.Keys) != 2 {
		t.Fatalf("lease info through a follower: %+v %v", finfo, err)
	}
	if fall, err := follower.Leases(ctx); err != nil || len(fall) != 2 {
		t.Fatalf("leases through a follower: %+v %v", fall, err)
	}
	resp, body := c.Do(http.MethodGet, c.URL(c.Follower())+"/v1/lease/"+l.ID.String(), nil, map[string]string{"X-Raft-Forwarded-By": "n9"})
	if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"no_leader"`)) {
		t.Fatalf("forwarded lease read on a follower: %d %s", resp.StatusCode, body)
	}
	all, err := leader.Leases(ctx)
	if err != nil || len(all) != 2 || all[0].ID != l.ID || all[1].ID != ttlPut.Lease || all[1].TTL != 20*time.Second {
		t.Fatalf("leases: %+v %v", all, err)
	}
	ka, err := other.KeepAliveOnce(ctx, l.ID)
	if err != nil || ka.TTL != 30*time.Second || ka.Index <= l.Index {
		t.Fatalf("keepalive: %+v %v", ka, err)
	}
	// A put without a lease detaches l/b.
	detach, err := follower.Put(ctx, []byte("l/b"), []byte("w"))
	if err != nil {
		t.Fatal(err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := startWatch(wctx, t, other, kv.WatchOptions{Key: []byte("l/"), Prefix: true, FromIndex: detach.ModIndex + 1})
	rv, err := follower.Revoke(ctx, l.ID)
	if err != nil || rv.Deleted != 1 || rv.ID != l.ID {
		t.Fatalf("revoke: %+v %v", rv, err)
	}
	waitEvents(t, events, []string{fmt.Sprintf("%d delete l/a", rv.Index)})
	for i := range 3 {
		if _, err := c.Node(i).Get(ctx, []byte("l/a"), kv.ReadOptions{}); !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("node %d: l/a after revoke: %v", i, err)
		}
		if rec, err := c.Node(i).Get(ctx, []byte("l/b"), kv.ReadOptions{}); err != nil || rec.Lease != 0 {
			t.Fatalf("node %d: detached l/b: %+v %v", i, rec, err)
		}
	}
	if _, err := follower.KeepAliveOnce(ctx, l.ID); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("keepalive after revoke: %v", err)
	}
}

// expiryBound is the written upper bound (docs/leases.md): TTL after the
// last acknowledged keepalive, plus the checkpoint interval, plus an
// election timeout. slack covers a loaded test machine: applying the
// revoke, the tick, the poll.
func expiryBound(ttl time.Duration) time.Duration {
	return ttl + raftkv.DefaultLeaseCheckpoint + testkit.FastTuning.ElectionTimeout
}

const expirySlack = 2 * time.Second

// leaseProbe follows one leased key: the time the last keepalive that was
// acknowledged was sent and acknowledged, and when the key was first
// missing on some node.
type leaseProbe struct {
	name      string
	id        kv.LeaseID
	index     uint64 // of the key's put
	key       []byte
	ttl       time.Duration
	mu        sync.Mutex
	sent, ack time.Time
	gone      time.Time
	goneOn    int
}

func (p *leaseProbe) acked(sent time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent, p.ack = sent, time.Now()
}

// Leases expire on time whatever the leadership does. For 30 s the
// leadership moves every 3 s: a lease without keepalives is gone no
// earlier than its TTL after its grant was sent and no later than the
// written bound (etcd would restart its TTL at each election and, with a
// 10 s TTL, never expire it), and a lease kept alive every second lives
// on. Then the leader is killed while keepalives go on: a lease kept alive
// through it never expires.
func TestLeaseExpiryAcrossLeaderChanges(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// up returns a running node, the first from i on.
	var upMu sync.Mutex
	down := -1
	setDown := func(i int) {
		upMu.Lock()
		defer upMu.Unlock()
		down = i
	}
	up := func(i int) *raftkv.Node {
		upMu.Lock()
		defer upMu.Unlock()
		for j := range 3 {
			if k := (i + j) % 3; k != down {
				return c.Node(k)
			}
		}
		return nil
	}
	grant := func(name string, ttl time.Duration) *leaseProbe {
		t.Helper()
		p := &leaseProbe{name: name, key: []byte("exp/" + name), ttl: ttl}
		sent := time.Now()
		r, err := up(0).Put(ctx, p.key, []byte(name), kv.WithTTL(ttl))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p.id, p.index = r.Lease, r.ModIndex
		p.acked(sent)
		return p
	}
	short := grant("short-3s", 3*time.Second) // no keepalives
	long := grant("long-10s", 10*time.Second) // no keepalives
	kept := grant("kept-3s", 3*time.Second)   // a keepalive every second
	killed := grant("kept-6s", 6*time.Second) // the same, through the leader's kill

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Keepalives, each from the next running node; after a failure, a
	// retry 100 ms on.
	keepAlive := func(ctx context.Context, p *leaseProbe) {
		for i := 0; ctx.Err() == nil; i++ {
			sent := time.Now()
			kctx, kcancel := context.WithTimeout(ctx, time.Second)
			_, err := up(i).KeepAliveOnce(kctx, p.id)
			kcancel()
			next := time.Second
			switch {
			case err == nil:
				p.acked(sent)
			case errors.Is(err, kv.ErrLeaseNotFound):
				t.Errorf("%s: keepalive: %v", p.name, err)
				return
			default:
				next = 100 * time.Millisecond
			}
			select {
			case <-ctx.Done():
			case <-time.After(next):
			}
		}
	}
	keptCtx, stopKept := context.WithCancel(ctx)
	defer stopKept()
	wg.Go(func() { keepAlive(keptCtx, kept) })
	wg.Go(func() { keepAlive(ctx, killed) })
	// A reader: every 20 ms, a stale read of each probe's key on each
	// running node; the first miss is when the key went.
	var probeMu sync.Mutex
	probes := []*leaseProbe{short, long, kept, killed}
	wg.Go(func() {
		for ctx.Err() == nil {
			probeMu.Lock()
			ps := probes
			probeMu.Unlock()
			for i := range 3 {
				n := up(i)
				for _, p := range ps {
					// Stale, but from the put on: a follower that has not
					// applied it yet is not telling of an expiry.
					if _, err := n.Get(ctx, p.key, kv.ReadOptions{Consistency: kv.Stale, MinIndex: p.index}); errors.Is(err, kv.ErrNotFound) {
						p.mu.Lock()
						if p.gone.IsZero() {
							p.gone, p.goneOn = time.Now(), i
						}
						p.mu.Unlock()
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	start := time.Now()
	at := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(d))):
		}
	}

	// Phase 1: the leadership moves every 3 s for 30 s.
	for round := 1; round <= 10; round++ {
		at(time.Duration(round) * 3 * time.Second)
		if err := raftkv.TransferLeadership(c.Node(c.Leader())); err != nil {
			t.Logf("round %d: transfer: %v", round, err)
		}
	}
	probeMu.Lock()
	probes = []*leaseProbe{killed}
	probeMu.Unlock()
	stopKept()
	for _, p := range []*leaseProbe{short, long} {
		p.mu.Lock()
		lived := p.gone.Sub(p.sent)
		switch {
		case p.gone.IsZero():
			t.Errorf("%s: not expired in 30 s of leader changes", p.name)
		case lived < p.ttl:
			t.Errorf("%s: gone on n%d %v after its grant was sent, before its TTL", p.name, p.goneOn+1, lived)
		case p.gone.Sub(p.ack) > expiryBound(p.ttl)+expirySlack:
			t.Errorf("%s: gone %v after its grant was acknowledged, past the bound %v (+%v slack)", p.name, p.gone.Sub(p.ack), expiryBound(p.ttl), expirySlack)
		default:
			t.Logf("%s: gone %v after its grant was sent (TTL %v, bound %v)", p.name, lived, p.ttl, expiryBound(p.ttl))
		}
		p.mu.Unlock()
	}
	kept.mu.Lock()
	if !kept.gone.IsZero() {
		t.Errorf("%s: kept alive every second, yet gone on n%d at %v (last acknowledged keepalive sent at %v)", kept.name, kept.goneOn+1, kept.gone.Sub(start), kept.sent.Sub(start))
	}
	kept.mu.Unlock()

	// Phase 2: the leader is killed, and restarted 4 s later.
	li := c.Leader()
	setDown(li)
	c.Stop(li)
	at(34 * time.Second)
	c.Restart(li)
	setDown(-1)
	at(40 * time.Second)
	cancel()
	wg.Wait()
	killed.mu.Lock()
	defer killed.mu.Unlock()
	if !killed.gone.IsZero() {
		t.Errorf("%s: kept alive every second through the leader's kill, yet gone on n%d at %v (last acknowledged keepalive sent at %v)", killed.name, killed.goneOn+1, killed.gone.Sub(start), killed.sent.Sub(start))
	}
}
