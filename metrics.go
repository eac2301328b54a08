package raftkv

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/httpapi"
)

// nodeMetrics are the node's own Prometheus collectors, registered on its
// registry (Config.Registry; never the global one): the state machine's
// apply batches, the follower's write batches to the leader, and gauges of
// raft's state read at scrape time. The HTTP API's request metrics are
// package httpapi's (httpapi.Metrics). docs/http-api.md lists them all.
type nodeMetrics struct {
	api          *httpapi.Metrics
	applyEntries prometheus.Histogram
	applyTime    prometheus.Histogram
	forwardBatch prometheus.Histogram

	watchOpen    prometheus.Gauge
	watchEvents  prometheus.Counter
	watchEnded   *prometheus.CounterVec
	watchRefused prometheus.Counter

	leasesExpired    prometheus.Counter
	leaseCheckpoints prometheus.Counter
}

// nodeStats is the node state the gauges report, read at scrape time.
type nodeStats struct {
	State        string // Leader, Follower, Candidate, Shutdown
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// LastContact is when the leader was last heard from (zero on the
	// leader and before any contact).
	LastContact time.Time
	DBSizeBytes int64
	// HistoryOldest is the oldest index whose events the node keeps;
	// HistoryEvents, how many events it keeps.
	HistoryOldest uint64
	HistoryEvents int64
	// Leases is how many leases the node keeps timers for.
	Leases int
	// LeadershipChecks is how many leadership checks the node ran as
	// leader; VouchedReadIndexes, how many followers' read indexes it
	// served on the asking voter's word instead.
	LeadershipChecks   uint64
	VouchedReadIndexes uint64
}

// newNodeMetrics registers the node's collectors on reg; stats is called
// at scrape time. Writes forwarded in batches are also counted in api's
// raftkv_forwarded_requests_total.
func newNodeMetrics(reg prometheus.Registerer, api *httpapi.Metrics, stats func() nodeStats) (*nodeMetrics, error) {
	m := &nodeMetrics{
		api: api,
		forwardBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_forward_batch_writes", Help: "Writes per batch this follower sent to the leader.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		applyEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_apply_batch_entries", Help: "Raft log entries applied per state machine batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_apply_batch_duration_seconds", Help: "Time to apply one batch, with the commit of its bbolt transaction when the batch ended it.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18),
		}),
		watchOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raftkv_watchers", Help: "Watches and blocking reads open on this node.",
		}),
		watchEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_watch_events_sent_total", Help: "Events delivered to this node's watches.",
		}),
		watchEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_watchers_ended_total", Help: "Watches ended because the history no longer held their start (compacted) or because they fell behind it (slow).",
		}, []string{"reason"}),
		watchRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_watchers_refused_total", Help: "Watches and blocking reads refused at the --max-watchers limit.",
		}),
		leasesExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_leases_expired_total", Help: "Leases this node, as leader, expired (a revoke through raft when a lease's timer ran out).",
		}),
		leaseCheckpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_lease_checkpoints_total", Help: "Remaining times this node, as leader, recorded through raft (one per lease per checkpoint).",
		}),
	}
	for _, reason := range []string{"compacted", "slow"} {
		m.watchEnded.WithLabelValues(reason)
	}
	collectors := []prometheus.Collector{m.applyEntries, m.applyTime, m.forwardBatch, m.watchOpen, m.watchEvents, m.watchEnded, m.watchRefused, m.leasesExpired, m.leaseCheckpoints}
	gauge := func(name, help string, f func(nodeStats) float64) {
		collectors = append(collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(stats()) }))
	}
	gauge("raftkv_raft_term", "Current raft term.", func(s nodeStats) float64 { return float64(s.Term) })
	gauge("raftkv_raft_commit_index", "Raft commit index.", func(s nodeStats) float64 { return float64(s.CommitIndex) })
	gauge("raftkv_raft_applied_index", "Index the state machine has applied.", func(s nodeStats) float64 { return float64(s.AppliedIndex) })
	gauge("raftkv_raft_last_contact_seconds", "Seconds since the leader was last heard from (0 on the leader).", func(s nodeStats) float64 {
		if s.LastContact.IsZero() {
			return 0
		}
		return time.Since(s.LastContact).Seconds()
	})
	gauge("raftkv_db_size_bytes", "Size of the state machine's bbolt file.", func(s nodeStats) float64 { return float64(s.DBSizeBytes) })
	gauge("raftkv_watch_history_events", "Events kept in the change history.", func(s nodeStats) float64 { return float64(s.HistoryEvents) })
	gauge("raftkv_leases", "Leases this node keeps timers for (every lease the state machine holds).", func(s nodeStats) float64 { return float64(s.Leases) })
	gauge("raftkv_watch_history_oldest_index", "Oldest raft index whose events the change history keeps.", func(s nodeStats) float64 { return float64(s.HistoryOldest) })
	counter := func(name, help string, f func(nodeStats) float64) {
		collectors = append(collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return f(stats()) }))
	}
	counter("raftkv_leadership_checks_total", "Leadership checks (a round of leader-check requests to the other voters) this node ran as leader for linearizable reads.",
		func(s nodeStats) float64 { return float64(s.LeadershipChecks) })
	counter("raftkv_read_index_vouched_total", "Followers' read indexes this node, as leader, served on the asking voter's word, without a leadership check.",
		func(s nodeStats) float64 { return float64(s.VouchedReadIndexes) })
	for _, state := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		collectors = append(collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_raft_state", Help: "1 for the raft state this node is in.", ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 {
			if stats().State == state {
				return 1
			}
			return 0
		}))
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("raftkv: register metrics: %w", err)
		}
	}
	return m, nil
}

// observeApplyBatch records one state machine batch (store.Options.ObserveBatch).
func (m *nodeMetrics) observeApplyBatch(entries int, took time.Duration) {
	m.applyEntries.Observe(float64(entries))
	m.applyTime.Observe(took.Seconds())
}

// observeForwardBatch records a batch of writes this follower sent to the
// leader (forward.Config.Observe).
func (m *nodeMetrics) observeForwardBatch(writes int) {
	m.api.AddForwarded(writes)
	m.forwardBatch.Observe(float64(writes))
}

// stats feeds the gauges at scrape time.
func (n *Node) stats() nodeStats {
	if n.raft == nil {
		return nodeStats{State: "Shutdown"}
	}
	s := n.raft.Status()
	oldest, events := n.store.HistoryStats()
	return nodeStats{
		HistoryOldest: oldest,
		HistoryEvents: events,
		State:         s.State,
		Term:          s.Term,
		CommitIndex:   s.CommitIndex,
		AppliedIndex:  s.AppliedIndex,
		LastContact:   s.LastContact,
		DBSizeBytes:   n.store.FileSize(),
		Leases:        n.leases.count(),

		LeadershipChecks:   n.raft.LeadershipChecks(),
		VouchedReadIndexes: n.raft.Vouched(),
	}
}
