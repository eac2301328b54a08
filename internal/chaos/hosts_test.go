//go:build unix

package chaos

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/netns"
	"github.com/raftkv/raftkv/kv"
)

// hostsProbe is whether this machine can run the hosts harness, checked
// once per test binary.
var hostsProbe = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return netns.Probe(ctx)
})

// requireHosts skips t, saying why, where network namespaces cannot be
// made (not Linux, not root, no ip command).
func requireHosts(t *testing.T) {
	t.Helper()
	if err := hostsProbe(); err != nil {
		t.Skipf("the hosts harness needs Linux network namespaces, and this machine does not allow them: %v", err)
	}
}

// hostFaults is the fault matrix of the hosts harness: every node a
// network namespace of its own, and the network faults made by the
// router between them, dropping packets silently (raft and the members'
// HTTP alike; the clients' namespace is never cut).
var hostFaults = []faultCase{
	{name: "H1_isolate_leader", run: func(r *round) {
		r.cycles(func(int) {
			l := r.leader()
			r.fault("isolate leader "+l, func() {
				r.c.Isolate(l)
				// The cut is real: the others elect one of them.
				nl, err := r.c.Leader(context.Background(), 15*time.Second, l)
				if err != nil {
					r.fatalf("the nodes cut off from %s elected no leader of their own: %v", l, err)
				}
				r.logf("%s leads the majority", nl)
			}, r.hold(), r.c.Heal)
		})
	}},
	{name: "H2_one_way_and_bridge", run: func(r *round) {
		r.cycles(func(int) {
			l := r.leader()
			f := pick(r, r.followers(l))
			from, to := r.eitherWay(l, f)
			r.fault(fmt.Sprintf("one-way: packets %s -> %s lost (leader %s)", from, to, l),
				func() { r.c.DropOneWay(from, to) }, r.hold(), r.c.Heal)
			l = r.leader()
			ends := r.followers(l)
			if r.rng.IntN(2) == 0 {
				ends = []string{l, pick(r, ends)}
			}
			mid := ""
			for _, id := range r.c.IDs() {
				if !slices.Contains(ends, id) {
					mid = id
				}
			}
			r.fault(fmt.Sprintf("bridge: %s and %s cut, %s sees both (leader %s)", ends[0], ends[1], mid, l),
				func() { r.c.CutPair(ends[0], ends[1]) }, r.hold(), r.c.Heal)
		})
	}},
	{name: "H3_flapping_partitions", run: func(r *round) {
		r.cycles(func(int) {
			flap := 4 * time.Second
			if r.long {
				flap = 5*time.Second + time.Duration(r.rng.Int64N(int64(10*time.Second)))
			}
			r.fault("partitions flapping every 1-2s", func() {}, 0, func() { r.flapHosts(flap) })
		})
	}},
	{name: "H4_kill_and_restart", run: func(r *round) {
		r.cycles(func(int) {
			id := pick(r, r.c.IDs())
			r.fault("SIGKILL "+id+" and restart it", func() { r.must(r.c.Kill(id)) }, r.hold()/2, func() {
				r.must(r.c.StartNode(id))
				r.waitReady()
			})
		})
	}},
}

// flapHosts changes the network every 1-2 s for d: a node isolated, a pair
// cut, one way lost, a node that can send to one peer but hear no one, or
// healthy; then heals.
func (r *round) flapHosts(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		r.c.Heal()
		ids := r.c.IDs()
		a := pick(r, ids)
		b := pick(r, slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == a }))
		var desc string
		switch r.rng.IntN(5) {
		case 0:
			r.c.Isolate(a)
			desc = "isolate " + a
		case 1:
			r.c.CutPair(a, b)
			desc = fmt.Sprintf("cut %s-%s", a, b)
		case 2:
			r.c.DropOneWay(a, b)
			desc = fmt.Sprintf("one-way %s->%s", a, b)
		case 3:
			r.c.Isolate(a)
			r.must(r.c.Restore(a, b))
			desc = fmt.Sprintf("isolate %s but it reaches %s", a, b)
		default:
			desc = "healthy"
		}
		start := r.rec.Now()
		hold := time.Second + time.Duration(r.rng.Int64N(int64(time.Second)))
		r.logf("flap: %s for %s", desc, hold.Round(time.Millisecond))
		r.sleep(hold)
		r.rec.Fault(start, r.rec.Now(), "flap: "+desc)
	}
	r.c.Heal()
}

// TestHostFaults runs the hosts harness's fault matrix: each fault on a
// fresh three-node cluster whose nodes are hosts of their own (a network
// namespace each, routed through a router namespace that makes the cuts),
// under the linearizability workload and the watchers of TestFaults,
// -chaos.rounds times, each for -chaos.duration (one cycle in the short
// pass). Every round ends as TestFaults' do: a leader, a write, one state
// hash, a linearizable history and exact watches.
func TestHostFaults(t *testing.T) {
	requireHosts(t)
	for fi, fc := range hostFaults {
		t.Run(fc.name, func(t *testing.T) {
			for rd := 1; rd <= *flagRounds; rd++ {
				t.Run("round"+itoa(rd), func(t *testing.T) {
					r := newHostsRound(t, roundSeed(600+fi, rd))
					fc.run(r)
					r.finish()
				})
			}
		})
	}
}

// TestHostsReaddress restarts a follower with a new address (its host
// readdressed, as a container rescheduled onto another IP) under the
// workload: the others must reach it there again with no operator step,
// the leader's configuration naming its new raft and API addresses. The
// moved node hears no leader (the leader dials its old address), so it
// re-registers through a member it knows, which relays the request to the
// leader; the leader's replication to it picks up the new address once its
// dial to the old one times out (the raft transport's 10 s).
func TestHostsReaddress(t *testing.T) {
	requireHosts(t)
	for rd := 1; rd <= *flagRounds; rd++ {
		t.Run("round"+itoa(rd), func(t *testing.T) {
			r := newHostsRound(t, roundSeed(710, rd))
			ctx := context.Background()
			r.cycles(func(int) {
				f := pick(r, r.followers(r.leader()))
				r.fault("restart "+f+" with a new address", func() {
					r.must(r.c.Kill(f))
					addr, err := r.c.Move(ctx, f)
					r.must(err)
					r.logf("%s now at %s", f, addr)
					r.must(r.c.StartNode(f))
				}, 0, func() { r.waitAddressed(f) })
			})
			r.checkMembers()
			r.finish()
		})
	}
}

// newHostsRound starts a hosts round with the workload and the watchers
// of TestHostFaults.
func newHostsRound(t *testing.T, seed uint64) *round {
	t.Helper()
	args, err := watchHistoryArgs()
	if err != nil {
		t.Fatal(err)
	}
	r := newRoundConfig(t, seed, roundConfig{args: args, hosts: true})
	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	r.startWatchers(watchSpec{prefix: "k", keys: keys, client: []kv.WatchOptions{{Key: []byte("k"), Prefix: true}}})
	r.startClients(WorkloadConfig{Keys: keys})
	r.warmUp()
	return r
}

// waitAddressed waits until the leader's configuration lists id, a voter,
// at its current raft and API addresses, and every node is ready.
func (r *round) waitAddressed(id string) {
	r.t.Helper()
	ctx := context.Background()
	n := r.c.Node(id)
	start := time.Now()
	err := Poll(ctx, 30*time.Second, func() error {
		members, err := r.c.Members(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(members, func(m kv.NodeInfo) bool { return m.ID == id })
		if i < 0 {
			return fmt.Errorf("%s is not a member: %+v", id, members)
		}
		r.c.mu.Lock()
		raftAddr, apiAddr := n.RaftAddr, n.HTTPAddr
		r.c.mu.Unlock()
		if m := members[i]; m.RaftAddr != raftAddr || m.APIAddr != apiAddr || m.Suffrage != "voter" {
			return fmt.Errorf("the leader lists %s as %s at raft %s, API %s; it is at raft %s, API %s", id, m.Suffrage, m.RaftAddr, m.APIAddr, raftAddr, apiAddr)
		}
		return r.c.Ready(ctx, id)
	})
	if err != nil {
		r.fatalf("%s was not reached at its new address: %v", id, err)
	}
	r.logf("%s reached at its new address after %s", id, time.Since(start).Round(time.Millisecond))
	r.waitReady()
}
