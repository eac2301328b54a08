//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// hostMembership is the membership matrix of the hosts harness: members
// added, promoted, removed and replaced through the HTTP API while the
// workload and the watchers run, some while the network is cut. Each case
// runs on a fresh three-node cluster; a cycle ends with the cluster's
// membership back to what the harness expects (checkMembers).
var hostMembership = []faultCase{
	{name: "M1_join_during_partition", run: func(r *round) {
		r.cycles(func(i int) {
			id := r.newNodeID()
			r.joinDuringPartition(i, id)
			r.checkMembers()
			r.fault("remove "+id+" under load and delete its host", func() { r.leave(id) }, 0, func() {})
			r.checkMembers()
		})
	}},
	{name: "M2_remove_follower_and_leader", run: func(r *round) {
		r.cycles(func(int) {
			for _, role := range []string{"follower", "leader"} {
				l := r.leader()
				id := l
				if role == "follower" {
					id = pick(r, r.followers(l))
				}
				r.fault(fmt.Sprintf("remove the %s %s under load and delete its host", role, id), func() { r.leave(id) }, 0, func() {})
				r.checkMembers()
				r.replaceWith(r.newNodeID())
			}
		})
	}},
	{name: "M3_promote_by_hand_during_cut", run: func(r *round) {
		r.cycles(func(int) {
			ctx := context.Background()
			id := r.newNodeID()
			// The host exists before the cut, so that the cut covers it.
			r.must(r.c.AddNode(ctx, id))
			l := r.leader()
			from, to := r.eitherWay(l, id)
			// Cut one way between the leader and the joiner, the leader
			// never learns how far the joiner got (its replication and its
			// checks of the joiner go unanswered), so it cannot promote it:
			// the promotion by hand is the only one.
			r.fault(fmt.Sprintf("%s joins with packets %s -> %s lost (leader %s); promoted through the API while the cut is on", id, from, to, l), func() {
				r.c.DropOneWay(from, to)
				r.must(r.c.StartNode(id))
				r.waitSuffrage(id, kv.Nonvoter, 30*time.Second)
				r.promote(id)
				r.waitSuffrage(id, kv.Voter, 15*time.Second)
			}, r.hold()/2, func() {
				r.c.Heal()
				r.waitReady()
				r.watchNode(id)
			})
			r.checkMembers()
			r.fault("remove "+id+" under load and delete its host", func() { r.leave(id) }, 0, func() {})
			r.checkMembers()
		})
	}},
	{name: "M4_replace_dead_member", run: func(r *round) {
		r.cycles(func(int) {
			l := r.leader()
			id := pick(r, r.c.IDs())
			r.fault(fmt.Sprintf("%s dies for good (leader %s); then removed and its host deleted", id, l), func() {
				r.must(r.c.Kill(id))
			}, r.hold()/2, func() { r.leave(id) })
			r.checkMembers()
			r.replaceWith(r.newNodeID())
		})
	}},
}

// TestHostsMembership runs the hosts harness's membership matrix (M1-M4):
// each case on a fresh three-node cluster whose nodes are hosts of their
// own, under the linearizability workload and the watchers of
// TestHostFaults, -chaos.rounds times, each for -chaos.duration (one
// cycle in the short pass). Joiners come up on new hosts with empty data
// directories and --join; removals go through DELETE
// /v1/cluster/nodes/{id}, promotions by hand through POST
// /v1/cluster/nodes/{id}/promote. Every step is followed by the recovery
// checks of every fault (a leader, a write, every member at one state
// hash) and a check of the membership (the leader's configuration is the
// harness's nodes, every one a voter at its addresses); every round ends
// with the linearizability and watch checks, the joiners' watchers
// included.
func TestHostsMembership(t *testing.T) {
	requireHosts(t)
	for fi, fc := range hostMembership {
		t.Run(fc.name, func(t *testing.T) {
			for rd := 1; rd <= *flagRounds; rd++ {
				t.Run("round"+itoa(rd), func(t *testing.T) {
					r := newHostsRound(t, roundSeed(720+fi, rd))
					fc.run(r)
					r.checkMembers()
					r.finish()
				})
			}
		})
	}
}

// newNodeID names the next node to join: n4, n5, … (an id is never used
// twice in a round, as a removed member comes back only as a new one).
func (r *round) newNodeID() string {
	for k := len(r.c.IDs()) + 1; ; k++ {
		id := fmt.Sprintf("n%d", k)
		if !r.c.Known(id) {
			return id
		}
	}
}

// joinDuringPartition has id join on a new host while the network is cut
// and waits for the leader to promote it on its own: cycle 0 (and every
// third) isolates a founding member, the leader or a follower, and id must
// be a voter before the cut heals; the next cycle loses the packets one
// way between the leader and a follower, likewise; the next makes the
// network flap while id joins, and id must be a voter once it stops.
func (r *round) joinDuringPartition(cycle int, id string) {
	r.t.Helper()
	ctx := context.Background()
	// The host exists before the cut, so that an isolation covers it.
	r.must(r.c.AddNode(ctx, id))
	heal := func() {
		r.c.Heal()
		r.waitReady()
		r.watchNode(id)
	}
	switch cycle % 3 {
	case 0:
		l := r.leader()
		x := pick(r, slices.DeleteFunc(r.c.IDs(), func(o string) bool { return o == id }))
		r.fault(fmt.Sprintf("%s joins while %s is isolated (leader %s); promoted with the cut on", id, x, l), func() {
			r.c.Isolate(x)
			r.must(r.c.StartNode(id))
			r.waitSuffrage(id, kv.Voter, 45*time.Second, x)
		}, 0, heal)
	case 1:
		l := r.leader()
		f := pick(r, slices.DeleteFunc(r.followers(l), func(o string) bool { return o == id }))
		from, to := r.eitherWay(l, f)
		r.fault(fmt.Sprintf("%s joins while packets %s -> %s are lost (leader %s); promoted with the cut on", id, from, to, l), func() {
			r.c.DropOneWay(from, to)
			r.must(r.c.StartNode(id))
			r.waitSuffrage(id, kv.Voter, 45*time.Second)
		}, 0, heal)
	default:
		flap := 4 * time.Second
		if r.long {
			flap = 5*time.Second + time.Duration(r.rng.Int64N(int64(10*time.Second)))
		}
		r.fault(fmt.Sprintf("%s joins while the network flaps every 1-2s", id), func() {
			r.must(r.c.StartNode(id))
		}, 0, func() {
			r.flapHosts(flap)
			r.waitSuffrage(id, kv.Voter, 45*time.Second)
			heal()
		})
	}
}

// replaceWith has a new member id join on a new host under load, be
// promoted by the leader and pass the membership check.
func (r *round) replaceWith(id string) {
	r.t.Helper()
	ctx := context.Background()
	r.fault(id+" joins on a new host", func() {
		r.must(r.c.AddNode(ctx, id))
		r.must(r.c.StartNode(id))
		r.waitSuffrage(id, kv.Voter, 45*time.Second)
	}, 0, func() {
		r.waitReady()
		r.watchNode(id)
	})
	r.checkMembers()
}

// leave removes id from the cluster through another member (DELETE
// /v1/cluster/nodes/{id}; the leader hands over first when it is id),
// stops its watchers and deletes its host.
func (r *round) leave(id string) {
	r.t.Helper()
	ctx := context.Background()
	if err := r.c.RemoveNode(ctx, 30*time.Second, id); err != nil {
		r.fatalf("remove %s: %v", id, err)
	}
	r.unwatchNode(id)
	r.must(r.c.ForgetNode(ctx, id))
}

// waitSuffrage waits until the leader (a node not in except that leads
// and is ready) lists id with suffrage.
func (r *round) waitSuffrage(id, suffrage string, timeout time.Duration, except ...string) {
	r.t.Helper()
	ctx := context.Background()
	start := time.Now()
	err := Poll(ctx, timeout, func() error {
		l, err := r.c.Leader(ctx, 5*time.Second, except...)
		if err != nil {
			return err
		}
		info, err := r.c.Info(ctx, l)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(info.Nodes, func(n kv.NodeInfo) bool { return n.ID == id })
		if i < 0 {
			return fmt.Errorf("the leader %s does not list %s: %s", l, id, describeMembers(info.Nodes))
		}
		if got := info.Nodes[i].Suffrage; got != suffrage {
			return fmt.Errorf("the leader %s lists %s as a %s", l, id, got)
		}
		return nil
	})
	if err != nil {
		r.fatalf("%s never became a %s: %v", id, suffrage, err)
	}
	r.logf("%s is a %s (after %s)", id, suffrage, time.Since(start).Round(time.Millisecond))
}

// promote makes id a voter by hand: POST /v1/cluster/nodes/{id}/promote
// through a member other than id, retried on answers that say the
// promotion certainly did not happen or may have (it is idempotent); any
// other answer but 200 fails the round.
func (r *round) promote(id string) {
	r.t.Helper()
	ctx := context.Background()
	var res kv.MemberChange
	err := Poll(ctx, 20*time.Second, func() error {
		via := pick(r, slices.DeleteFunc(r.c.RunningIDs(), func(o string) bool { return o == id }))
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, _, b, err := r.c.Do(rctx, http.MethodPost, r.c.URL(via)+"/v1/cluster/nodes/"+id+"/promote", nil, nil)
		switch {
		case err != nil:
			return fmt.Errorf("via %s: %w", via, err)
		case st == http.StatusOK:
			return json.Unmarshal(b, &res)
		case st >= 500:
			return fmt.Errorf("via %s: %d %s", via, st, strings.TrimSpace(string(b)))
		}
		r.fatalf("POST /v1/cluster/nodes/%s/promote via %s: %d %s", id, via, st, strings.TrimSpace(string(b)))
		return nil
	})
	if err != nil {
		r.fatalf("promote %s: %v", id, err)
	}
	r.logf("promoted %s through the API: %+v", id, res)
}

// checkMembers fails the round unless the leader's configuration is
// exactly the harness's nodes, every one a voter at its raft and API
// addresses (within 20 s: a removal may still be on its way).
func (r *round) checkMembers() {
	r.t.Helper()
	ctx := context.Background()
	want := r.c.IDs()
	slices.Sort(want)
	err := Poll(ctx, 20*time.Second, func() error {
		members, err := r.c.Members(ctx)
		if err != nil {
			return err
		}
		var got []string
		for _, m := range members {
			got = append(got, m.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("the leader's configuration is %s; want %v", describeMembers(members), want)
		}
		for _, m := range members {
			n := r.c.Node(m.ID)
			r.c.mu.Lock()
			raftAddr, apiAddr := n.RaftAddr, n.HTTPAddr
			r.c.mu.Unlock()
			if m.Suffrage != kv.Voter || m.RaftAddr != raftAddr || m.APIAddr != apiAddr {
				return fmt.Errorf("the leader lists %s as a %s at raft %s, API %s; want a voter at raft %s, API %s",
					m.ID, m.Suffrage, m.RaftAddr, m.APIAddr, raftAddr, apiAddr)
			}
		}
		return nil
	})
	if err != nil {
		r.fatalf("membership: %v", err)
	}
	r.logf("membership as expected: %v, all voters", want)
}

// describeMembers is a configuration as "id (suffrage), …".
func describeMembers(ms []kv.NodeInfo) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s (%s)", m.ID, m.Suffrage))
	}
	return strings.Join(parts, ", ")
}
