//go:build unix

package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// faultCase is one row of the fault matrix.
type faultCase struct {
	name string
	// args are extra `raftkv serve` flags for the round's cluster.
	args func() ([]string, error)
	// proxyHTTP puts the members' HTTP to each other behind proxies, so
	// that the fault's partitions cut it as they cut raft.
	proxyHTTP bool
	// run injects the fault, cycle after cycle, until the round's
	// duration is up; the round then heals everything and checks.
	run func(r *round)
}

var faultMatrix = []faultCase{
	{name: "F1_isolate_leader", proxyHTTP: true, run: func(r *round) {
		r.cycles(func(int) {
			l := r.leader()
			r.fault("isolate leader "+l, func() { r.c.Isolate(l) }, r.hold(), r.c.Heal)
		})
	}},
	{name: "F2_isolate_follower", proxyHTTP: true, run: func(r *round) {
		r.cycles(func(int) {
			f := pick(r, r.followers(r.leader()))
			r.fault("isolate follower "+f, func() { r.c.Isolate(f) }, r.hold(), r.c.Heal)
		})
	}},
	{name: "F3_one_way_and_bridge", proxyHTTP: true, run: func(r *round) {
		r.cycles(func(int) {
			l := r.leader()
			f := pick(r, r.followers(l))
			from, to := r.eitherWay(l, f)
			r.fault(fmt.Sprintf("one-way: packets %s -> %s lost (leader %s)", from, to, l),
				func() { r.c.DropOneWay(from, to) }, r.hold(), r.c.Heal)
			// A bridge: a and c cannot talk, b talks to both. With the
			// leader at one end, the other end cannot hear it but b can.
			l = r.leader()
			ids := r.c.IDs()
			b := pick(r, ids)
			if r.rng.IntN(2) == 0 && b == l {
				b = pick(r, r.followers(l))
			}
			var ends []string
			for _, id := range ids {
				if id != b {
					ends = append(ends, id)
				}
			}
			r.fault(fmt.Sprintf("bridge: %s and %s cut, %s sees both (leader %s)", ends[0], ends[1], b, l),
				func() { r.c.CutPair(ends[0], ends[1]) }, r.hold(), r.c.Heal)
		})
	}},
	{name: "F4_flapping_partitions", proxyHTTP: true, run: func(r *round) {
		r.cycles(func(int) {
			flap := 4 * time.Second
			if r.long {
				flap = 5*time.Second + time.Duration(r.rng.Int64N(int64(10*time.Second)))
			}
			r.fault("partitions flapping every 1-2s", func() {}, 0, func() {
				end := time.Now().Add(flap)
				for time.Now().Before(end) {
					r.c.Heal()
					ids := r.c.IDs()
					a := pick(r, ids)
					var others []string
					for _, id := range ids {
						if id != a {
							others = append(others, id)
						}
					}
					b := pick(r, others)
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
						r.c.DropOneWay(b, a)
						r.c.Link(a, b).Update(func(f *LinkFault) { f.Cut = false })
						if hl := r.c.HTTPLink(a, b); hl != nil {
							hl.Update(func(f *LinkFault) { f.Hold[Up] = false })
						}
						desc = fmt.Sprintf("isolate %s but it reaches %s", a, b)
					default:
						desc = "healthy"
					}
					start := r.rec.Now()
					d := time.Second + time.Duration(r.rng.Int64N(int64(time.Second)))
					r.logf("flap: %s for %s", desc, d.Round(time.Millisecond))
					r.sleep(d)
					r.rec.Fault(start, r.rec.Now(), "flap: "+desc)
				}
				r.c.Heal()
			})
		})
	}},
	{name: "F5_slow_lossy_links", run: func(r *round) {
		r.cycles(func(int) {
			delay := time.Duration(5+r.rng.IntN(40)) * time.Millisecond
			only := ""
			if r.rng.IntN(2) == 0 {
				only = pick(r, r.c.IDs())
			}
			desc := fmt.Sprintf("lossy links, delay %s + jitter 30ms", delay)
			if only != "" {
				desc += " on every link of " + only
			}
			hold := r.hold() + 1500*time.Millisecond
			r.fault(desc, func() {
				for _, p := range r.c.Links() {
					if only != "" && p.From != only && p.To != only {
						continue
					}
					p.Set(LinkFault{Lossy: true, Delay: [2]time.Duration{delay, delay}, Jitter: 30 * time.Millisecond})
				}
			}, hold, r.c.Heal)
		})
	}},
	{name: "F6_kill_random_node", run: func(r *round) {
		r.cycles(func(int) {
			id := pick(r, r.c.IDs())
			r.fault("SIGKILL "+id+" and restart it", func() { r.must(r.c.Kill(id)) }, r.hold()/2, func() {
				r.must(r.c.StartNode(id))
				r.waitReady()
			})
		})
	}},
	{name: "F7_kill_all", run: func(r *round) {
		r.cycles(func(int) {
			r.fault("SIGKILL every node and restart them", func() { r.must(r.c.KillAll()) }, r.hold()/3, func() {
				r.must(r.c.Start())
				r.waitReady()
			})
		})
	}},
	{name: "F8_pause_leader", run: func(r *round) {
		r.cycles(func(int) {
			l := r.leader()
			r.fault("SIGSTOP leader "+l+", then SIGCONT", func() { r.must(r.c.Pause(l)) }, r.hold()+time.Second, func() {
				r.must(r.c.Resume(l))
			})
		})
	}},
	{name: "F9_remove_and_readd", run: func(r *round) {
		r.cycles(func(int) {
			l := r.leader()
			id := pick(r, r.c.IDs())
			if id == l && r.rng.IntN(2) == 0 {
				id = pick(r, r.followers(l))
			}
			ctx := context.Background()
			r.fault(fmt.Sprintf("remove %s (leader %s), re-add it with an empty data dir", id, l), func() {
				if err := r.c.RemoveNode(ctx, 20*time.Second, id); err != nil {
					r.fatalf("remove %s: %v", id, err)
				}
				r.must(r.c.Kill(id))
				r.must(r.c.Wipe(id))
			}, r.hold()/2, func() {
				r.must(r.c.StartNode(id))
				r.waitReady()
			})
		})
	}},
	{name: "F10_snapshot_install_killed", args: snapshotArgs, run: runSnapshotInstallKilled},
	{name: "F11_kill_during_snapshot", args: snapshotArgs, run: runKillDuringSnapshot},
}

// TestFaults runs the fault matrix: each fault on a fresh three-node
// cluster under client load, -chaos.rounds times, each for
// -chaos.duration (one cycle in the short pass). Every round ends with a
// healed cluster that must elect a leader within 10 s, take a write,
// converge to one state hash, and have produced a linearizable history;
// and its watchers (one per node over HTTP, one through the Go client, all
// on the clients' keys) must each have received exactly the committed
// history of those keys (checkWatches).
func TestFaults(t *testing.T) {
	for fi, fc := range faultMatrix {
		t.Run(fc.name, func(t *testing.T) {
			for rd := 1; rd <= *flagRounds; rd++ {
				t.Run("round"+itoa(rd), func(t *testing.T) {
					args, err := watchHistoryArgs()
					if err != nil {
						t.Fatal(err)
					}
					if fc.args != nil {
						more, err := fc.args()
						if err != nil {
							t.Fatal(err)
						}
						args = append(args, more...)
					}
					r := newRoundConfig(t, roundSeed(fi+1, rd), roundConfig{args: args, proxyHTTP: fc.proxyHTTP})
					keys := []string{"k0", "k1", "k2", "k3", "k4"}
					r.startWatchers(watchSpec{prefix: "k", keys: keys, client: []kv.WatchOptions{{Key: []byte("k"), Prefix: true}}})
					r.startClients(WorkloadConfig{Keys: keys})
					r.warmUp()
					fc.run(r)
					r.finish()
				})
			}
		})
	}
}

// warmUp lets the clients run on a healthy cluster for a moment.
func (r *round) warmUp() { r.sleep(300 * time.Millisecond) }

func (r *round) must(err error) {
	r.t.Helper()
	if err != nil {
		r.fatalf("%v", err)
	}
}

// waitReady waits until every node is a ready, registered voter.
func (r *round) waitReady() {
	r.t.Helper()
	if err := r.c.WaitReady(context.Background(), 30*time.Second, r.c.IDs()); err != nil {
		r.fatalf("cluster not ready 30s after the fault healed: %v", err)
	}
}

// snapshotArgs are the serve flags that make snapshots frequent, those the
// binary has. The short pass needs all of them; a long run makes do with
// raftkv's defaults for the missing ones (see currentSnapTuning).
func snapshotArgs() ([]string, error) {
	values := map[string]string{"snapshot-threshold": "64", "snapshot-interval": "200ms", "trailing-logs": "32"}
	var args, missing []string
	for _, f := range snapshotFlags {
		if serveFlags[f] {
			args = append(args, "--"+f, values[f])
		} else {
			missing = append(missing, "--"+f)
		}
	}
	if len(missing) > 0 && *flagDuration < 30*time.Second {
		return nil, fmt.Errorf("this fault needs raftkv serve flags that are missing: %s. "+
			"raftkv's defaults (a snapshot after 8192 new entries, checked every 30-60 s; 10240 entries kept) "+
			"make snapshots far too rare for the short pass. Add the flags to `raftkv serve`, "+
			"or run with -chaos.duration>=30s to use the defaults in their place",
			strings.Join(missing, ", "))
	}
	return args, nil
}
