package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/kv"
)

// Metrics are the HTTP API's Prometheus collectors, registered on the
// registry given to NewMetrics (never the global one: two nodes in one
// process must not collide). Names start with raftkv_. The node's own
// metrics (raft, the state machine, write batches) are the embedding
// node's.
type Metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	forwarded prometheus.Counter
}

// NewMetrics registers the collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftkv_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"route", "method"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_forwarded_requests_total",
			Help: "Requests this node sent on to the leader: membership calls relayed, and writes forwarded in batches.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.forwarded} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("httpapi: register metrics: %w", err)
		}
	}
	return m, nil
}

// AddForwarded adds n to raftkv_forwarded_requests_total: writes this
// node's clients sent it that it sent on to the leader outside the handler
// (in a batch). The handler counts the membership calls it relays itself.
func (m *Metrics) AddForwarded(n int) { m.forwarded.Add(float64(n)) }

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
		if hd.Get(HeaderNode) == "" { // a relayed answer names the leader
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
func (w *statusWriter) Flush() { _ = w.FlushError() }

// FlushError flushes what was written, sending the header first (with the
// contract headers, as WriteHeader stamps them) when it was not sent yet;
// it reports a failed write (the client went away). http.ResponseController
// calls it.
func (w *statusWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument wraps a route: contract headers on every response, and the
// request counter and latency histogram under the route's name.
func (h *Handler) instrument(route string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, h: h}
		if r.Header.Get(HeaderForwardedBy) != "" && !h.member(r) {
			writeError(sw, fmt.Errorf("%w: a request marked %s must come from a member", kv.ErrPermissionDenied, HeaderForwardedBy))
		} else {
			next(sw, r)
		}
		if sw.status == 0 {
			sw.WriteHeader(http.StatusOK)
		}
		if h.m != nil {
			h.m.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
			h.m.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
		}
	})
}
