package raftnode

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// eventually polls cond until it holds, failing the test after 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// openNodes opens n unbootstrapped nodes on loopback, closed at cleanup.
func openNodes(t *testing.T, count int) []*Node {
	t.Helper()
	var nodes []*Node
	for i := range count {
		dir := t.TempDir()
		fsm, err := store.Open(filepath.Join(dir, "kv.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := Open(Config{ID: fmt.Sprintf("n%d", i+1), DataDir: dir, RaftAddr: "127.0.0.1:0"}, fsm)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := n.Close(); err != nil {
				t.Error(err)
			}
			if err := fsm.Close(); err != nil {
				t.Error(err)
			}
		})
		nodes = append(nodes, n)
	}
	return nodes
}

// view follows one subscription from the test's goroutine, without
// blocking: poll takes whatever the channel holds.
type view struct {
	events <-chan Leadership
	last   Leadership
	seen   []Leadership
	closed bool
}

func (v *view) poll() Leadership {
	select {
	case l, ok := <-v.events:
		if !ok {
			v.closed = true
		} else {
			v.last = l
			v.seen = append(v.seen, l)
		}
	default:
	}
	return v.last
}

// Every node's subscription follows a leadership transfer: each reports
// the new leader and its term, only the new leader reports itself, the
// old one sees its loss; a subscriber that never reads holds nothing up
// and finds the latest view; a cancelled subscription gets nothing more;
// Close ends them all.
func TestLeadershipSubscription(t *testing.T) {
	nodes := openNodes(t, 3)
	var servers []Server
	for _, n := range nodes {
		servers = append(servers, Server{ID: n.ID(), RaftAddr: n.RaftAddr(), Voter: true})
	}
	views := make([]*view, len(nodes))
	for i, n := range nodes {
		events, _ := n.SubscribeLeadership()
		views[i] = &view{events: events}
		if l := views[i].poll(); l.LeaderID != "" || l.IsLeader {
			t.Fatalf("%s before bootstrap: %+v", n.ID(), l)
		}
	}
	// Without a cluster there is no leader to wait for.
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := nodes[0].WaitLeader(short); !errors.Is(err, kv.ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitLeader without a cluster: %v, want kv.ErrNoLeader", err)
	}
	// A subscriber that never reads: it must not hold up the others.
	idle, _ := nodes[0].SubscribeLeadership()

	for _, n := range nodes {
		if err := n.Bootstrap(servers); err != nil {
			t.Fatal(err)
		}
	}
	// WaitLeader waits out the first election.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := nodes[1].WaitLeader(ctx)
	if err != nil || first.LeaderID == "" || first.Term == 0 {
		t.Fatalf("WaitLeader: %+v %v", first, err)
	}

	// agree waits until every subscription names leader (any leader when
	// leader is ""), each from the same term, and only the leader itself
	// reports leading; it returns the leader's view.
	agree := func(leader string) Leadership {
		t.Helper()
		var lead Leadership
		eventually(t, fmt.Sprintf("every node to report leader %q", leader), func() bool {
			want := views[0].poll()
			if want.LeaderID == "" || (leader != "" && want.LeaderID != leader) {
				return false
			}
			for i, v := range views {
				l := v.poll()
				if l.LeaderID != want.LeaderID || l.LeaderAddr != want.LeaderAddr || l.Term != want.Term ||
					l.IsLeader != (nodes[i].ID() == want.LeaderID) {
					return false
				}
			}
			lead = want
			return true
		})
		return lead
	}
	before := agree("")
	var old, target *Node
	for _, n := range nodes {
		switch {
		case n.ID() == before.LeaderID:
			old = n
		case target == nil:
			target = n
		}
	}
	if before.LeaderAddr != old.RaftAddr() {
		t.Fatalf("leader %s reported at %s, listens at %s", old.ID(), before.LeaderAddr, old.RaftAddr())
	}
	// A subscription cancelled before the transfer sees nothing of it.
	cancelledEvents, cancelSub := target.SubscribeLeadership()
	cancelSub()
	cancelSub() // idempotent
	if l, ok := <-cancelledEvents; ok {
		t.Fatalf("a cancelled subscription delivered %+v", l)
	}

	if err := old.TransferLeadership(ctx, target.ID()); err != nil {
		t.Fatal(err)
	}
	after := agree(target.ID())
	if after.Term <= before.Term || after.LeaderAddr != target.RaftAddr() {
		t.Fatalf("after the transfer: %+v, before: %+v", after, before)
	}
	for i, n := range nodes {
		if n != old {
			continue
		}
		lost := false
		for _, l := range views[i].seen {
			if l.Term == before.Term && l.IsLeader {
				lost = true // it led, and its latest view (checked by agree) says it no longer does
			}
		}
		if !lost || views[i].last.IsLeader {
			t.Fatalf("the old leader's views %+v do not show it leading, then losing", views[i].seen)
		}
	}
	// The idle subscriber finds the latest view, not a stale one.
	select {
	case l := <-idle:
		if l != views[0].last {
			t.Fatalf("idle subscriber: %+v, want the latest %+v", l, views[0].last)
		}
	default:
		t.Fatal("idle subscriber has nothing")
	}
	// The readiness subscriber made the new leader ready for reads.
	if _, err := target.ReadIndex(ctx); err != nil {
		t.Fatalf("new leader's ReadIndex: %v", err)
	}
	if l, err := old.WaitLeader(ctx); err != nil || l.LeaderID != target.ID() || l.IsLeader {
		t.Fatalf("old leader's WaitLeader: %+v %v", l, err)
	}

	// Close ends the watcher: once Close has returned, every subscription
	// is closed (after at most one buffered view), and later ones at once.
	for i, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		views[i].poll()
		if views[i].poll(); !views[i].closed {
			t.Fatalf("%s: subscription still open after Close", n.ID())
		}
		events, _ := n.SubscribeLeadership()
		if _, ok := <-events; ok {
			t.Fatalf("%s: a subscription after Close delivered a view", n.ID())
		}
		if _, err := n.WaitLeader(context.Background()); !errors.Is(err, kv.ErrClosed) {
			t.Fatalf("%s: WaitLeader after Close: %v", n.ID(), err)
		}
	}
}

// A subscriber follows the leadership until it cancels: each view it reads
// is the latest, and it may miss intermediate ones.
func ExampleNode_SubscribeLeadership() {
	var n *Node // an open Node
	events, cancel := n.SubscribeLeadership()
	defer cancel()
	for l := range events { // closed by cancel or by n.Close
		switch {
		case l.IsLeader:
			fmt.Println("leading in term", l.Term)
		case l.LeaderID == "":
			fmt.Println("no leader known: an election is under way")
		default:
			fmt.Println("following", l.LeaderID, "at", l.LeaderAddr)
		}
	}
}

// A follower's write path waits out an election instead of failing at
// once, bounded by the request's context.
func ExampleNode_WaitLeader() {
	var n *Node // an open Node
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l, err := n.WaitLeader(ctx)
	if errors.Is(err, kv.ErrNoLeader) {
		fmt.Println("still no leader: 503 no_leader, nothing was sent")
		return
	}
	fmt.Println("send to", l.LeaderID)
}
