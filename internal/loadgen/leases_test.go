package loadgen

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

func TestParseSeries(t *testing.T) {
	const text = `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
raftkv_raft_state{state="Follower"} 0
raftkv_raft_state{state="Leader"} 1
raftkv_raft_commit_index 1.234567e+06
raftkv_apply_batch_entries_bucket{le="1"} 3
raftkv_apply_batch_entries_sum 40
raftkv_apply_batch_entries_count 10
`
	got, err := parseSeries(strings.NewReader(text), []string{mCPU, mLeader, mCommit, mApplySum, mApplyCount})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{mCPU: 12.5, mLeader: 1, mCommit: 1234567, mApplySum: 40, mApplyCount: 10}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, err := parseSeries(strings.NewReader(text), []string{mForwardSum}); err == nil || !strings.Contains(err.Error(), mForwardSum) {
		t.Errorf("a missing series: %v, want an error naming it", err)
	}
}

func TestClusterFigures(t *testing.T) {
	g := &Generator{o: Options{Endpoints: []string{"a", "b", "c"}}}
	node := func(cpu, leader, commit, applySum, applyCount, fwdSum, fwdCount, cps float64) map[string]float64 {
		return map[string]float64{mCPU: cpu, mLeader: leader, mCommit: commit, mApplySum: applySum, mApplyCount: applyCount,
			mForwardSum: fwdSum, mForwardCount: fwdCount, mLeaseCheckpoint: cps}
	}
	t0 := time.Now()
	a := clusterSample{at: t0, nodes: []map[string]float64{node(1, 0, 100, 0, 0, 0, 0, 0), node(2, 1, 100, 10, 5, 0, 0, 7), node(3, 0, 99, 0, 0, 4, 2, 0)}}
	b := clusterSample{at: t0.Add(2 * time.Second), nodes: []map[string]float64{
		node(2, 0, 150, 0, 0, 300, 10, 0), node(3.5, 1, 300, 210, 55, 0, 0, 107), node(3.2, 0, 299, 0, 0, 104, 12, 0)}}
	f := g.clusterFigures(a, b, 1000)
	want := ClusterFigures{Leader: "b", NodeCPU: []float64{0.5, 0.75, 0.1}, LeaderCPU: 0.75, Entries: 200, OpsPerEntry: 5,
		ApplyBatchEntries: 4, ForwardBatches: 20, ForwardBatchWrites: 20, LeaseCheckpoints: 100}
	if !equalJSON(f, want) {
		t.Errorf("figures = %+v,\nwant %+v", f, want)
	}
	a.nodes[1][mLeader] = 0
	if f := g.clusterFigures(a, b, 0); !f.LeaderChanged || f.OpsPerEntry != 0 {
		t.Errorf("no leader at the start: %+v, want LeaderChanged", f)
	}
}

func TestLockName(t *testing.T) {
	for in, want := range map[string]string{"bench/": "bench", "/a/b/": "a-b", "": "bench", "//": "bench", "x": "x"} {
		if got := LockName(in); got != want {
			t.Errorf("LockName(%q) = %q, want %q", in, got, want)
		}
		if err := kv.ValidateLockName(LockName(in)); err != nil {
			t.Errorf("LockName(%q): %v", in, err)
		}
	}
}

func TestLeaseRunsNeedTheirWorkload(t *testing.T) {
	g := generator(t, Options{Endpoints: []string{"127.0.0.1:1"}, Workload: Put, Connections: 1, Keys: 1, Duration: time.Second})
	if _, err := g.RunLeases(context.Background()); err == nil {
		t.Error("RunLeases ran put")
	}
	if _, err := g.RunLocks(context.Background()); err == nil {
		t.Error("RunLocks ran put")
	}
	for _, wl := range []Workload{LeasesKeepalive, LockUncontended, LockContended} {
		g := generator(t, Options{Endpoints: []string{"127.0.0.1:1"}, Workload: wl, Connections: 1, Keys: 1, Duration: time.Second,
			Leases: 1, TTL: time.Minute})
		if _, err := g.Run(context.Background()); err == nil {
			t.Errorf("Run ran %s", wl)
		}
	}
}

// checkCluster checks what the nodes' metrics must show of a run that
// wrote through raft on a healthy three-node cluster.
func checkCluster(t *testing.T, wl Workload, c ClusterFigures) {
	t.Helper()
	if c.Leader == "" || len(c.NodeCPU) != 3 || c.LeaderCPU <= 0 || c.Entries <= 0 || c.OpsPerEntry <= 0 || c.ApplyBatchEntries < 1 {
		t.Errorf("%s: cluster figures %+v", wl, c)
	}
}

// TestLeaseCluster runs the lease and lock workloads briefly against a
// real three-node cluster: behaviour only (counts, no lost lease, no
// overlapping hold), never speed.
func TestLeaseCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testkit.NewCluster(t, 3, testkit.Options{})
	eps := []string{c.URL(0), c.URL(1), c.URL(2)}
	cl, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const leases = 300
	r, err := generator(t, Options{Endpoints: eps, Workload: LeasesKeepalive, Connections: 8, Keys: 1, Leases: leases, TTL: 5 * time.Second,
		Warmup: 100 * time.Millisecond, Duration: time.Second}).RunLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(); err != nil {
		t.Errorf("leases-keepalive: %v", err)
	}
	if r.Keepalives == 0 || r.KeepalivesPerSec <= 0 || r.ErrorsTotal != 0 || r.LeasesLost != 0 || r.RevokeErrors != 0 ||
		r.Latency.P50 <= 0 || r.Latency.P99 < r.Latency.P50 || r.MaxGapMS <= 0 || r.GrantSeconds <= 0 {
		t.Errorf("leases-keepalive: %+v", r)
	}
	checkCluster(t, LeasesKeepalive, r.Cluster)
	// The run revoked what it granted.
	if ls, err := cl.Leases(ctx); err != nil || len(ls) != 0 {
		t.Errorf("leases after the run: %d, %v; want none", len(ls), err)
	}

	// A lease that goes away during the run is lost, and fails it: a
	// lease revoked by someone else after a short while.
	// Once the run has granted all 20, one is revoked.
	go func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if ls, err := cl.Leases(ctx); err == nil && len(ls) == 20 {
				_, _ = cl.Revoke(ctx, ls[0].ID)
				return
			}
		}
	}()
	r, err = generator(t, Options{Endpoints: eps, Workload: LeasesKeepalive, Connections: 2, Keys: 1, Leases: 20, TTL: 5 * time.Second,
		Duration: time.Second}).RunLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.LeasesLost != 1 || !errors.Is(r.Check(), ErrLeasesLost) || !strings.Contains(r.LostExample, "404") {
		t.Errorf("a revoked lease: lost %d (%s), Check %v; want 1 lost", r.LeasesLost, r.LostExample, r.Check())
	}

	for _, tc := range []struct {
		wl      Workload
		workers int
	}{{LockUncontended, 1}, {LockUncontended, 3}, {LockContended, 6}} {
		r, err := generator(t, Options{Endpoints: eps, Workload: tc.wl, Connections: tc.workers, Keys: 1, TTL: 5 * time.Second,
			Warmup: 100 * time.Millisecond, Duration: time.Second}).RunLocks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Two workers never hold the lock at once, and every acquisition's
		// token is above the one before.
		if r.Overlaps != 0 || r.TokenRegressions != 0 {
			t.Errorf("%s: %v", tc.wl, r.Check())
		}
		if r.Acquisitions == 0 || r.Cycles != r.Acquisitions || r.AcquisitionsPerSec <= 0 || r.ErrorsTotal != 0 ||
			r.Acquire.P50 <= 0 || r.Cycle.P50 < r.Acquire.P50 || r.Release.P50 <= 0 || r.Lock != "bench" {
			t.Errorf("%s with %d workers: %+v", tc.wl, tc.workers, r)
		}
		checkCluster(t, tc.wl, r.Cluster)
	}
	// Every cycle released its lock and revoked its lease.
	ls, err := cl.Leases(ctx)
	if err != nil || len(ls) != 0 {
		t.Errorf("leases after the lock runs: %d, %v; want none", len(ls), err)
	}
	page, err := cl.List(ctx, kv.ListOptions{Prefix: []byte(kv.LockPrefix), KeysOnly: true})
	if err != nil || len(page.Items) != 0 {
		t.Errorf("lock queue keys after the runs: %d, %v; want none", len(page.Items), err)
	}
}
