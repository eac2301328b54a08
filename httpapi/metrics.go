package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is the node state the metrics report, read at scrape time.
type Stats struct {
	State        string // Leader, Follower, Candidate, Shutdown
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// LastContact is when the leader was last heard from (zero on the leader).
	LastContact time.Time
	DBSizeBytes int64
}

// Metrics are one node's Prometheus collectors, registered on the registry
// given to NewMetrics (never the global one: two nodes in one process must
// not collide). Names start with raftkv_.
type Metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	forwarded prometheus.Counter
	batchSize prometheus.Histogram
	batchTime prometheus.Histogram
	fwdBatch  prometheus.Histogram
}

// NewMetrics registers the collectors on reg; stats is called at scrape time.
func NewMetrics(reg prometheus.Registerer, stats func() Stats) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftkv_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"route", "method"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_forwarded_requests_total", Help: "Requests (writes, or other requests for the leader) this node forwarded to the leader.",
		}),
		fwdBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_forward_batch_writes", Help: "Writes per batch this follower sent to the leader.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_apply_batch_entries", Help: "Raft log entries applied per state machine batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftkv_apply_batch_duration_seconds", Help: "Time to apply one batch (one bbolt transaction).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18),
		}),
	}
	collectors := []prometheus.Collector{m.requests, m.latency, m.forwarded, m.batchSize, m.batchTime, m.fwdBatch}
	gauge := func(name, help string, f func(Stats) float64) {
		collectors = append(collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(stats()) }))
	}
	gauge("raftkv_raft_term", "Current raft term.", func(s Stats) float64 { return float64(s.Term) })
	gauge("raftkv_raft_commit_index", "Raft commit index.", func(s Stats) float64 { return float64(s.CommitIndex) })
	gauge("raftkv_raft_applied_index", "Index the state machine has applied.", func(s Stats) float64 { return float64(s.AppliedIndex) })
	gauge("raftkv_raft_last_contact_seconds", "Seconds since the leader was last heard from (0 on the leader).", func(s Stats) float64 {
		if s.LastContact.IsZero() {
			return 0
		}
		return time.Since(s.LastContact).Seconds()
	})
	gauge("raftkv_db_size_bytes", "Size of the state machine's bbolt file.", func(s Stats) float64 { return float64(s.DBSizeBytes) })
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
			return nil, fmt.Errorf("httpapi: register metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveApplyBatch records one state machine batch; wire it to the store.
func (m *Metrics) ObserveApplyBatch(entries int, took time.Duration) {
	m.batchSize.Observe(float64(entries))
	m.batchTime.Observe(took.Seconds())
}

// ObserveForwardBatch records a batch of writes sent to the leader.
func (m *Metrics) ObserveForwardBatch(writes int) {
	m.forwarded.Add(float64(writes))
	m.fwdBatch.Observe(float64(writes))
}

// statusWriter records the status and stamps the contract headers.
type statusWriter struct {
	http.ResponseWriter
	h      *Handler
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		hd := w.Header()
		if hd.Get(HeaderIndex) == "" {
			hd.Set(HeaderIndex, strconv.FormatUint(w.h.b.AppliedIndex(), 10))
		}
		if hd.Get(HeaderNode) == "" { // a forwarded answer names the leader
			hd.Set(HeaderNode, w.h.b.ID())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument wraps a route: contract headers on every response, and the
// request counter and latency histogram under the route's name.
func (h *Handler) instrument(route string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, h: h}
		next(sw, r)
		if sw.status == 0 {
			sw.WriteHeader(http.StatusOK)
		}
		if h.m != nil {
			h.m.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
			h.m.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
		}
	})
}
