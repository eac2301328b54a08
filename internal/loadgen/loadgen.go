package loadgen

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// Generator sends the requests of one set of Options: Probe, Preload and
// Run may be called in turn, and Close releases its connections.
type Generator struct {
	o       Options
	tr      *http.Transport
	client  *http.Client
	keyURLs []string // per endpoint: base + "/v1/kv/" + escaped prefix
	value   []byte
}

// New validates o, parses its endpoints (at least one) and returns a
// Generator for it. It does not contact any endpoint.
func New(o Options) (*Generator, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if len(o.Endpoints) == 0 {
		return nil, errors.New("no endpoint given")
	}
	eps := make([]string, len(o.Endpoints))
	for i, e := range o.Endpoints {
		base, err := client.ParseEndpoint(e)
		if err != nil {
			return nil, err
		}
		eps[i] = base
	}
	o.Endpoints = eps

	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	// Every worker has at most one request in flight, so at most
	// Connections connections per endpoint are ever busy: the pool keeps
	// all of them idle between requests and never opens more.
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConns:        0, // no total limit
		MaxIdleConnsPerHost: o.Connections,
		MaxConnsPerHost:     o.Connections,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     o.TLS.Clone(),
	}
	g := &Generator{
		o:      o,
		tr:     tr,
		client: &http.Client{Transport: tr, Timeout: o.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		value:  benchValue(o.ValueSize),
	}
	prefix := strings.ReplaceAll(url.PathEscape(o.KeyPrefix), "%2F", "/")
	for _, e := range o.Endpoints {
		g.keyURLs = append(g.keyURLs, e+"/v1/kv/"+prefix)
	}
	return g, nil
}

// Close closes the idle connections. The Generator must not be used after.
func (g *Generator) Close() { g.tr.CloseIdleConnections() }

// benchValue returns n bytes of letters: printable, so that a transaction
// can carry the value as a JSON string.
func benchValue(n int) []byte {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]byte, n)
	for i := range v {
		v[i] = letters[r.IntN(len(letters))]
	}
	return v
}

// appendKey appends key number k as eight or more zero-padded digits.
func appendKey(dst []byte, k int) []byte {
	var digits [20]byte
	s := strconv.AppendInt(digits[:0], int64(k), 10)
	for i := len(s); i < 8; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// outcome is what one request came to: ok, or the kind of failure.
type outcome struct {
	kind    string // "" when the request succeeded
	message string
}

// do sends one request and reads the answer to the end. Any 2xx is a
// success; anything else is a failure of kind "http STATUS CODE".
func (g *Generator) do(ctx context.Context, method, target string, body []byte, contentType string) outcome {
	_, res := g.doBody(ctx, method, target, body, contentType, nil)
	return res
}

// doBody is do that appends the body of a 2xx answer to dst (when dst is
// nil, discards it) and returns it.
func (g *Generator) doBody(ctx context.Context, method, target string, body []byte, contentType string, dst []byte) ([]byte, outcome) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := g.newRequest(ctx, method, target, rd)
	if err != nil {
		return dst, outcome{kind: "request", message: err.Error()}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return dst, outcome{kind: transportErrorKind(err), message: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if dst == nil {
			_, err = io.Copy(io.Discard, resp.Body)
		} else {
			buf := bytes.NewBuffer(dst)
			_, err = buf.ReadFrom(resp.Body)
			dst = buf.Bytes()
		}
		if err != nil {
			return dst, outcome{kind: transportErrorKind(err), message: "reading the body: " + err.Error()}
		}
		return dst, outcome{}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, resp.Body)
	kind := "http " + strconv.Itoa(resp.StatusCode)
	var er kv.ErrorResponse
	if json.Unmarshal(msg, &er) == nil && er.Error.Code != "" {
		return dst, outcome{kind: kind + " " + er.Error.Code, message: er.Error.Message}
	}
	return dst, outcome{kind: kind, message: strings.TrimSpace(string(msg))}
}

// transportErrorKind names a failure that got no HTTP answer.
func transportErrorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return "transport"
}

// txnBody is the POST /v1/txn body of the txn workload: if the key exists
// (its version is above 0), overwrite it, else read it.
func txnBody(key, value []byte) ([]byte, error) {
	return json.Marshal(kv.EncodeTxn(kv.Txn{
		Compare: []kv.Compare{{Key: key, Target: kv.TargetVersion, Op: kv.OpGreater, Number: 0}},
		Success: []kv.TxnOp{{Type: kv.TxnPut, Key: key, Value: value}},
		Failure: []kv.TxnOp{{Type: kv.TxnGet, Key: key}},
	}))
}

// Probe checks that the first endpoint serves the workload. Only Txn needs
// a check: Probe sends one transaction on key 0 (which rewrites the key
// with the run's value if it exists) and fails with ErrUnsupported when
// the server has no POST /v1/txn (a 404 or 405), or with the transport
// error when it could not ask. Any other HTTP answer passes: the run
// counts it.
func (g *Generator) Probe(ctx context.Context) error {
	if g.o.Workload != Txn {
		return nil
	}
	key := appendKey([]byte(g.o.KeyPrefix), 0)
	body, err := txnBody(key, g.value)
	if err != nil {
		return err
	}
	target := g.o.Endpoints[0] + "/v1/txn"
	res := g.do(ctx, http.MethodPost, target, body, "application/json")
	switch {
	case strings.HasPrefix(res.kind, "http 404"), strings.HasPrefix(res.kind, "http 405"):
		return fmt.Errorf("%w: POST %s answered %s (%s); no figures for txn", ErrUnsupported, target, res.kind, res.message)
	case res.kind != "" && !strings.HasPrefix(res.kind, "http "):
		return fmt.Errorf("POST %s: %s", target, res.message)
	}
	return nil
}

// Preload writes every key of the key space once, spread over the
// endpoints, and fails on the first error.
func (g *Generator) Preload(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(g.o.Keys, max(g.o.Connections, 16))
	for i := range workers {
		wg.Go(func() {
			var buf []byte
			for {
				k := int(next.Add(1) - 1)
				if k >= g.o.Keys || ctx.Err() != nil {
					return
				}
				ep := (i + k) % len(g.keyURLs)
				buf = appendKey(append(buf[:0], g.keyURLs[ep]...), k)
				if res := g.do(ctx, http.MethodPut, string(buf), g.value, "application/octet-stream"); res.kind != "" {
					cancel(fmt.Errorf("preloading key %d: %s: %s", k, res.kind, res.message))
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// worker is one load-generating goroutine and what it measured.
type worker struct {
	rng  *rand.Rand
	next int // endpoint of the next request
	buf  []byte
	hist *histogram
	ops  int64
	errs map[string]*ErrorCount
}

// Run drives the workload with every worker for Warmup and then Duration,
// and merges what they measured. It fails, with no figures, when ctx ends
// first.
func (g *Generator) Run(ctx context.Context) (*Result, error) {
	switch {
	case g.o.Workload.Watches():
		return nil, fmt.Errorf("%s is measured by RunWatchIdle or RunWatchDelay, not Run", g.o.Workload)
	case g.o.Workload == LeasesKeepalive:
		return nil, fmt.Errorf("%s is measured by RunLeases, not Run", g.o.Workload)
	case g.o.Workload.Locks():
		return nil, fmt.Errorf("%s is measured by RunLocks, not Run", g.o.Workload)
	}
	if g.o.Duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	start := time.Now()
	measureFrom := start.Add(g.o.Warmup)
	var stop atomic.Bool
	workers := make([]*worker, g.o.Connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{
			rng:  rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i))),
			next: i % len(g.o.Endpoints),
			hist: newHistogram(),
			errs: map[string]*ErrorCount{},
		}
		workers[i] = w
		wg.Go(func() { g.loop(ctx, w, measureFrom, &stop) })
	}
	timer := time.NewTimer(g.o.Warmup + g.o.Duration)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true) // each worker finishes the request it has in flight
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	end := time.Now()

	res := &Result{
		Workload:    g.o.Workload,
		Endpoints:   g.o.Endpoints,
		Connections: g.o.Connections,
		ValueSize:   g.o.ValueSize,
		Keys:        g.o.Keys,
		Warmup:      g.o.Warmup.Seconds(),
		Seconds:     end.Sub(measureFrom).Seconds(),
	}
	hist := newHistogram()
	errs := map[string]*ErrorCount{}
	for _, w := range workers {
		res.Ops += w.ops
		hist.merge(w.hist)
		mergeErrors(errs, w.errs)
	}
	res.OpsPerSec = float64(res.Ops) / res.Seconds
	res.Latency = latencyMS(hist)
	res.Errors, res.ErrorsTotal = sortedErrors(errs)
	return res, nil
}

// latencyMS summarizes h, in nanoseconds, in milliseconds rounded to the
// microsecond.
func latencyMS(h *histogram) LatencyMS {
	ms := func(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e3 }
	return LatencyMS{
		Mean: ms(h.mean()),
		P50:  ms(h.quantile(0.50)),
		P90:  ms(h.quantile(0.90)),
		P99:  ms(h.quantile(0.99)),
		Max:  ms(h.max),
	}
}

// sortedErrors lists the counts of m, most frequent first (never nil), and
// returns their total.
func sortedErrors(m map[string]*ErrorCount) ([]ErrorCount, int64) {
	out := make([]ErrorCount, 0, len(m))
	var total int64
	for _, e := range m {
		total += e.Count
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Kind, b.Kind))
	})
	return out, total
}

// loop is one worker: it sends requests one after another until stop is
// set or ctx ends. Requests that start before measureFrom are warm-up.
func (g *Generator) loop(ctx context.Context, w *worker, measureFrom time.Time, stop *atomic.Bool) {
	for !stop.Load() && ctx.Err() == nil {
		started := time.Now()
		res := g.op(ctx, w)
		if ctx.Err() != nil {
			return // interrupted: the request's failure says nothing
		}
		if started.Before(measureFrom) {
			continue
		}
		if res.kind != "" {
			countError(w.errs, res.kind, res.message)
			continue
		}
		w.ops++
		w.hist.record(int64(time.Since(started)))
	}
}

// op sends the workload's next request from w to the next endpoint.
func (g *Generator) op(ctx context.Context, w *worker) outcome {
	ep := w.next
	w.next = (w.next + 1) % len(g.keyURLs)
	k := w.rng.IntN(g.o.Keys)
	kind := g.o.Workload
	if kind == Mixed {
		kind = Get
		if w.rng.IntN(10) == 0 {
			kind = Put
		}
	}
	if kind == Txn {
		key := appendKey([]byte(g.o.KeyPrefix), k)
		body, err := txnBody(key, g.value)
		if err != nil {
			return outcome{kind: "request", message: err.Error()}
		}
		return g.do(ctx, http.MethodPost, g.o.Endpoints[ep]+"/v1/txn", body, "application/json")
	}
	w.buf = appendKey(append(w.buf[:0], g.keyURLs[ep]...), k)
	switch kind {
	case Put:
		return g.do(ctx, http.MethodPut, string(w.buf), g.value, "application/octet-stream")
	case GetStale:
		w.buf = append(w.buf, "?consistency=stale"...)
	}
	return g.do(ctx, http.MethodGet, string(w.buf), nil, "")
}

// newRequest is http.NewRequestWithContext, with the ACL token
// (Options.Token) when there is one.
func (g *Generator) newRequest(ctx context.Context, method, target string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err == nil {
		setToken(req, g.o.Token)
	}
	return req, err
}

// setToken sets req's Authorization to token, as a bearer credential;
// an empty token sets nothing.
func setToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}
