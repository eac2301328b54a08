package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// ClusterFigures is what the nodes' /metrics say about a measured window:
// every endpoint's /metrics is read when the window opens and when it
// closes. The lease and lock workloads report them.
type ClusterFigures struct {
	// Leader is the endpoint that led when the window closed ("" when
	// none did); LeaderChanged reports that a different one (or none) led
	// when it opened.
	Leader        string `json:"leader"`
	LeaderChanged bool   `json:"leader_changed"`
	// NodeCPU is each endpoint's CPU time over the window
	// (process_cpu_seconds_total, user + system), in CPUs (1.0: one CPU
	// busy the whole window), in the order of Endpoints; LeaderCPU is the
	// leader's. Nodes that share a process (a test's) each report the
	// whole process.
	NodeCPU   []float64 `json:"node_cpu"`
	LeaderCPU float64   `json:"leader_cpu"`
	// Entries is how far the leader's commit index moved over the window:
	// the raft log entries committed, each of which may carry many writes
	// (group commit, a follower's forwarded batch). OpsPerEntry is the
	// run's acknowledged writes in the window over Entries (0 when no
	// entry was committed).
	Entries     int64   `json:"entries"`
	OpsPerEntry float64 `json:"ops_per_entry"`
	// ApplyBatchEntries is the leader's mean entries per state machine
	// batch (one bbolt transaction) over the window
	// (raftkv_apply_batch_entries).
	ApplyBatchEntries float64 `json:"apply_batch_entries"`
	// ForwardBatches counts the batches of writes the followers sent to
	// the leader over the window, ForwardBatchWrites the mean writes in one
	// (raftkv_forward_batch_writes).
	ForwardBatches     int64   `json:"forward_batches"`
	ForwardBatchWrites float64 `json:"forward_batch_writes"`
	// LeaseCheckpoints counts the remaining times the leader recorded
	// through raft over the window (raftkv_lease_checkpoints_total), and
	// LeasesExpired the leases it expired (raftkv_leases_expired_total).
	LeaseCheckpoints int64 `json:"lease_checkpoints"`
	LeasesExpired    int64 `json:"leases_expired"`
}

// The series clusterSample reads.
const (
	mCPU             = "process_cpu_seconds_total"
	mLeader          = `raftkv_raft_state{state="Leader"}`
	mCommit          = "raftkv_raft_commit_index"
	mApplySum        = "raftkv_apply_batch_entries_sum"
	mApplyCount      = "raftkv_apply_batch_entries_count"
	mForwardSum      = "raftkv_forward_batch_writes_sum"
	mForwardCount    = "raftkv_forward_batch_writes_count"
	mLeaseCheckpoint = "raftkv_lease_checkpoints_total"
	mLeasesExpired   = "raftkv_leases_expired_total"
)

var clusterSeries = []string{mCPU, mLeader, mCommit, mApplySum, mApplyCount, mForwardSum, mForwardCount, mLeaseCheckpoint, mLeasesExpired}

// parseSeries reads the values of the series named in want (a name with
// its labels, as the exposition writes it) from a Prometheus text
// exposition; it fails when one is missing.
func parseSeries(r io.Reader, want []string) (map[string]float64, error) {
	out := make(map[string]float64, len(want))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		for _, w := range want {
			if name != w {
				continue
			}
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				return nil, fmt.Errorf("metric %s: %w", name, err)
			}
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, w := range want {
		if _, ok := out[w]; !ok {
			return nil, fmt.Errorf("no %s", w)
		}
	}
	return out, nil
}

// clusterSample is every endpoint's series of clusterSeries at one moment.
type clusterSample struct {
	at    time.Time
	nodes []map[string]float64
}

// sampleCluster reads every endpoint's /metrics.
func (g *Generator) sampleCluster(ctx context.Context) (clusterSample, error) {
	s := clusterSample{at: time.Now(), nodes: make([]map[string]float64, len(g.o.Endpoints))}
	for i, ep := range g.o.Endpoints {
		var body strings.Builder
		if err := g.get(ctx, ep+"/metrics", &body); err != nil {
			return s, err
		}
		m, err := parseSeries(strings.NewReader(body.String()), clusterSeries)
		if err != nil {
			return s, fmt.Errorf("GET %s/metrics: %w", ep, err)
		}
		s.nodes[i] = m
	}
	return s, nil
}

// leader is the index of the endpoint that reported leading, or -1.
func (s clusterSample) leader() int {
	for i, m := range s.nodes {
		if m[mLeader] == 1 {
			return i
		}
	}
	return -1
}

// clusterFigures compares two samples, a (the window's start) and b (its
// end), over which the run acknowledged ops writes.
func (g *Generator) clusterFigures(a, b clusterSample, ops int64) ClusterFigures {
	var f ClusterFigures
	secs := b.at.Sub(a.at).Seconds()
	round := func(v float64) float64 { return math.Round(100*v) / 100 }
	l := b.leader()
	f.LeaderChanged = l != a.leader()
	var fwdSum, fwdCount float64
	for i := range b.nodes {
		d := func(name string) float64 { return b.nodes[i][name] - a.nodes[i][name] }
		cpu := 0.0
		if secs > 0 {
			cpu = round(d(mCPU) / secs)
		}
		f.NodeCPU = append(f.NodeCPU, cpu)
		if i == l {
			continue
		}
		fwdSum += d(mForwardSum)
		fwdCount += d(mForwardCount)
	}
	if l >= 0 {
		d := func(name string) float64 { return b.nodes[l][name] - a.nodes[l][name] }
		f.Leader = g.o.Endpoints[l]
		f.LeaderCPU = f.NodeCPU[l]
		f.Entries = int64(d(mCommit))
		if f.Entries > 0 {
			f.OpsPerEntry = round(float64(ops) / float64(f.Entries))
		}
		if n := d(mApplyCount); n > 0 {
			f.ApplyBatchEntries = round(d(mApplySum) / n)
		}
		f.LeaseCheckpoints = int64(d(mLeaseCheckpoint))
		f.LeasesExpired = int64(d(mLeasesExpired))
	}
	f.ForwardBatches = int64(fwdCount)
	if fwdCount > 0 {
		f.ForwardBatchWrites = round(fwdSum / fwdCount)
	}
	return f
}
