package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

const benchSummary = `Measures the throughput and latency of a cluster over HTTP keep-alive:
--connections workers, each with one request in flight at a time, send
requests for --duration (after --warmup, which is not counted), spread
round-robin over every --addr endpoint. Keys are --key-prefix and eight
digits, drawn uniformly from --keys; values are --value-size bytes.

Workloads:
  put        PUT of a random key
  get        linearizable GET of a random key (the keys are preloaded)
  get-stale  GET ?consistency=stale of a random key (preloaded)
  mixed      90% linearizable GET, 10% PUT (preloaded)
  txn        POST /v1/txn: compare the key's version, put it on success,
             get it on failure (preloaded); refused if the server lacks it

Only successful requests count as ops and enter the latency figures;
failures are counted by kind (HTTP status and error code, or the
transport error). --serve-null ADDR serves a do-nothing handler instead,
so that the same client can measure the machine's HTTP ceiling.`

// The workloads of raftkv bench.
const (
	workloadPut      = "put"
	workloadGet      = "get"
	workloadGetStale = "get-stale"
	workloadMixed    = "mixed"
	workloadTxn      = "txn"
)

func benchWorkloads() []string {
	return []string{workloadPut, workloadGet, workloadGetStale, workloadMixed, workloadTxn}
}

// errUnsupported marks a workload the server does not implement.
var errUnsupported = errors.New("workload not supported by the server")

// benchOptions is the parsed command line of raftkv bench.
type benchOptions struct {
	endpoints   []string // base URLs: scheme://host:port
	workload    string
	connections int
	valueSize   int
	keys        int
	keyPrefix   string
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	preload     bool
	preloadOnly bool
	json        bool
	serveNull   string
}

// readsKeys reports whether the workload needs the key space written first.
func (o benchOptions) readsKeys() bool { return o.workload != workloadPut }

func parseBenchArgs(args []string, stderr io.Writer) (benchOptions, error) {
	c := newCommand("bench", "", benchSummary, stderr)
	fs := c.fs
	addr := os.Getenv("RAFTKV_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&addr, "addr", addr, "comma-separated API endpoints; requests go round-robin over all of them ($RAFTKV_ADDR)")
	var o benchOptions
	fs.StringVar(&o.workload, "workload", workloadPut, "`workload` to run: "+strings.Join(benchWorkloads(), ", "))
	fs.IntVar(&o.connections, "connections", 16, "concurrent workers, each with one request in flight")
	fs.IntVar(&o.valueSize, "value-size", 256, "value size in `bytes`")
	fs.IntVar(&o.keys, "keys", 10000, "size of the key space")
	fs.StringVar(&o.keyPrefix, "key-prefix", "bench/", "prefix of every key")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to measure")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "load before measuring, not counted")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of one request")
	fs.BoolVar(&o.preload, "preload", true, "write every key once before a workload that reads keys")
	fs.BoolVar(&o.preloadOnly, "preload-only", false, "write every key once, report, and stop")
	fs.BoolVar(&o.json, "json", false, "print the result as one line of JSON")
	fs.StringVar(&o.serveNull, "serve-null", "", "serve a do-nothing handler on `host:port` until interrupted (the HTTP ceiling)")
	if _, err := c.parse(args, 0, 0); err != nil {
		return o, err
	}
	switch {
	case !slices.Contains(benchWorkloads(), o.workload):
		return o, usagef("--workload must be one of %s, not %q", strings.Join(benchWorkloads(), ", "), o.workload)
	case o.connections < 1:
		return o, usagef("--connections must be at least 1")
	case o.valueSize < 0:
		return o, usagef("--value-size must not be negative")
	case o.keys < 1:
		return o, usagef("--keys must be at least 1")
	case o.duration <= 0 && !o.preloadOnly && o.serveNull == "":
		return o, usagef("--duration must be positive")
	case o.warmup < 0:
		return o, usagef("--warmup must not be negative")
	case o.timeout <= 0:
		return o, usagef("--timeout must be positive")
	case o.preloadOnly && !o.preload:
		return o, usagef("--preload-only and --preload=false exclude each other")
	}
	if o.serveNull != "" {
		if _, _, err := net.SplitHostPort(o.serveNull); err != nil {
			return o, usagef("--serve-null: %q is not host:port", o.serveNull)
		}
		return o, nil
	}
	eps, err := parseEndpoints(addr)
	if err != nil {
		return o, usagef("--addr: %w", err)
	}
	o.endpoints = eps
	return o, nil
}

// parseEndpoints turns "127.0.0.1:8001,http://h:8002" into base URLs.
func parseEndpoints(s string) ([]string, error) {
	var out []string
	for e := range strings.SplitSeq(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if !strings.Contains(e, "://") {
			e = "http://" + e
		}
		u, err := url.Parse(e)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", e, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			return nil, fmt.Errorf("endpoint %q is not http(s)://host:port", e)
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	if len(out) == 0 {
		return nil, errors.New("no endpoint given")
	}
	return out, nil
}

// runBench runs raftkv bench: a load generator, or with --serve-null the
// do-nothing server that measures the ceiling.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseBenchArgs(args, stderr)
	if err != nil {
		return err
	}
	if o.serveNull != "" {
		ln, err := net.Listen("tcp", o.serveNull)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		fmt.Fprintf(stdout, "raftkv bench: do-nothing handler on http://%s\n", ln.Addr())
		return serveNull(ctx, ln, o.valueSize)
	}
	b := newBencher(o)
	defer b.close()

	if o.workload == workloadTxn {
		if err := b.probeTxn(ctx); err != nil {
			return err
		}
	}
	if o.preloadOnly || (o.preload && o.readsKeys()) {
		start := time.Now()
		if err := b.preload(ctx); err != nil {
			return err
		}
		elapsed := time.Since(start)
		fmt.Fprintf(stderr, "raftkv bench: preloaded %d keys in %.2fs (%.0f puts/s)\n", o.keys, elapsed.Seconds(), float64(o.keys)/elapsed.Seconds())
		if o.preloadOnly {
			return nil
		}
	}
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, res)
	}
	return res.print(stdout)
}

// bencher sends the requests of one run.
type bencher struct {
	o       benchOptions
	tr      *http.Transport
	client  *http.Client
	keyURLs []string // per endpoint: base + "/v1/kv/" + escaped prefix
	value   []byte
}

func newBencher(o benchOptions) *bencher {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	// Every worker has at most one request in flight, so at most
	// --connections connections per endpoint are ever busy: the pool
	// keeps all of them idle between requests and never opens more.
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConns:        0, // no total limit
		MaxIdleConnsPerHost: o.connections,
		MaxConnsPerHost:     o.connections,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	b := &bencher{
		o:      o,
		tr:     tr,
		client: &http.Client{Transport: tr, Timeout: o.timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		value:  benchValue(o.valueSize),
	}
	prefix := strings.ReplaceAll(url.PathEscape(o.keyPrefix), "%2F", "/")
	for _, e := range o.endpoints {
		b.keyURLs = append(b.keyURLs, e+"/v1/kv/"+prefix)
	}
	return b
}

func (b *bencher) close() { b.tr.CloseIdleConnections() }

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
func (b *bencher) do(ctx context.Context, method, target string, body []byte, contentType string) outcome {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return outcome{kind: "request", message: err.Error()}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return outcome{kind: transportErrorKind(err), message: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return outcome{kind: transportErrorKind(err), message: "reading the body: " + err.Error()}
		}
		return outcome{}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, resp.Body)
	kind := "http " + strconv.Itoa(resp.StatusCode)
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(msg, &eb) == nil && eb.Error.Code != "" {
		return outcome{kind: kind + " " + eb.Error.Code, message: eb.Error.Message}
	}
	return outcome{kind: kind, message: strings.TrimSpace(string(msg))}
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

// txnBody is a POST /v1/txn request (design.md §3): if the key exists,
// overwrite it, else read it.
func txnBody(key, value []byte) ([]byte, error) {
	type compare struct {
		Key    string `json:"key"`
		Target string `json:"target"`
		Op     string `json:"op"`
		Value  any    `json:"value"`
	}
	type op struct {
		Op    string `json:"op"`
		Key   string `json:"key"`
		Value string `json:"value,omitempty"`
	}
	return json.Marshal(struct {
		Compare []compare `json:"compare"`
		Success []op      `json:"success"`
		Failure []op      `json:"failure"`
	}{
		Compare: []compare{{Key: string(key), Target: "version", Op: ">", Value: 0}},
		Success: []op{{Op: "put", Key: string(key), Value: string(value)}},
		Failure: []op{{Op: "get", Key: string(key)}},
	})
}

// probeTxn sends one transaction and fails with errUnsupported when the
// server has no POST /v1/txn.
func (b *bencher) probeTxn(ctx context.Context) error {
	key := appendKey([]byte(b.o.keyPrefix), 0)
	body, err := txnBody(key, b.value)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	target := b.o.endpoints[0] + "/v1/txn"
	res := b.do(ctx, http.MethodPost, target, body, "application/json")
	switch {
	case strings.HasPrefix(res.kind, "http 404"), strings.HasPrefix(res.kind, "http 405"):
		return fmt.Errorf("bench: %w: POST %s answered %s (%s); no figures for txn", errUnsupported, target, res.kind, res.message)
	case res.kind != "" && !strings.HasPrefix(res.kind, "http "):
		return fmt.Errorf("bench: POST %s: %s", target, res.message)
	}
	return nil
}

// preload writes every key of the key space once, spread over the
// endpoints, and fails on the first error.
func (b *bencher) preload(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(b.o.keys, max(b.o.connections, 16))
	for i := range workers {
		wg.Go(func() {
			var buf []byte
			for {
				k := int(next.Add(1) - 1)
				if k >= b.o.keys || ctx.Err() != nil {
					return
				}
				ep := (i + k) % len(b.keyURLs)
				buf = appendKey(append(buf[:0], b.keyURLs[ep]...), k)
				if res := b.do(ctx, http.MethodPut, string(buf), b.value, "application/octet-stream"); res.kind != "" {
					cancel(fmt.Errorf("bench: preloading key %d: %s: %s", k, res.kind, res.message))
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
	errs map[string]*errorCount
}

// run drives the workload with every worker until the duration is over
// and merges what they measured.
func (b *bencher) run(ctx context.Context) (*benchResult, error) {
	start := time.Now()
	measureFrom := start.Add(b.o.warmup)
	var stop atomic.Bool
	workers := make([]*worker, b.o.connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{
			rng:  rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i))),
			next: i % len(b.o.endpoints),
			hist: newHistogram(),
			errs: map[string]*errorCount{},
		}
		workers[i] = w
		wg.Go(func() { b.loop(ctx, w, measureFrom, &stop) })
	}
	timer := time.NewTimer(b.o.warmup + b.o.duration)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true) // each worker finishes the request it has in flight
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bench: interrupted: %w", err)
	}
	end := time.Now()

	res := &benchResult{
		Workload:    b.o.workload,
		Endpoints:   b.o.endpoints,
		Connections: b.o.connections,
		ValueSize:   b.o.valueSize,
		Keys:        b.o.keys,
		Warmup:      b.o.warmup.Seconds(),
		Seconds:     end.Sub(measureFrom).Seconds(),
		Errors:      []errorCount{},
	}
	hist := newHistogram()
	errs := map[string]*errorCount{}
	for _, w := range workers {
		res.Ops += w.ops
		hist.merge(w.hist)
		for k, e := range w.errs {
			if t, ok := errs[k]; ok {
				t.Count += e.Count
			} else {
				c := *e
				errs[k] = &c
			}
		}
	}
	res.OpsPerSec = float64(res.Ops) / res.Seconds
	ms := func(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e3 }
	res.Latency = latencyMS{
		Mean: ms(hist.mean()),
		P50:  ms(hist.quantile(0.50)),
		P90:  ms(hist.quantile(0.90)),
		P99:  ms(hist.quantile(0.99)),
		Max:  ms(hist.max),
	}
	for _, e := range errs {
		res.ErrorsTotal += e.Count
		res.Errors = append(res.Errors, *e)
	}
	slices.SortFunc(res.Errors, func(a, b errorCount) int { return cmp.Compare(b.Count, a.Count) })
	return res, nil
}

// loop is one worker: it sends requests one after another until stop is
// set or ctx ends. Requests that start before measureFrom are warm-up.
func (b *bencher) loop(ctx context.Context, w *worker, measureFrom time.Time, stop *atomic.Bool) {
	for !stop.Load() && ctx.Err() == nil {
		started := time.Now()
		res := b.op(ctx, w)
		if ctx.Err() != nil {
			return // interrupted: the request's failure says nothing
		}
		if started.Before(measureFrom) {
			continue
		}
		if res.kind != "" {
			if e, ok := w.errs[res.kind]; ok {
				e.Count++
			} else {
				w.errs[res.kind] = &errorCount{Kind: res.kind, Count: 1, Example: res.message}
			}
			continue
		}
		w.ops++
		w.hist.record(int64(time.Since(started)))
	}
}

// op sends the workload's next request from w to the next endpoint.
func (b *bencher) op(ctx context.Context, w *worker) outcome {
	ep := w.next
	w.next = (w.next + 1) % len(b.keyURLs)
	k := w.rng.IntN(b.o.keys)
	kind := b.o.workload
	if kind == workloadMixed {
		kind = workloadGet
		if w.rng.IntN(10) == 0 {
			kind = workloadPut
		}
	}
	if kind == workloadTxn {
		key := appendKey([]byte(b.o.keyPrefix), k)
		body, err := txnBody(key, b.value)
		if err != nil {
			return outcome{kind: "request", message: err.Error()}
		}
		return b.do(ctx, http.MethodPost, b.o.endpoints[ep]+"/v1/txn", body, "application/json")
	}
	w.buf = appendKey(append(w.buf[:0], b.keyURLs[ep]...), k)
	switch kind {
	case workloadPut:
		return b.do(ctx, http.MethodPut, string(w.buf), b.value, "application/octet-stream")
	case workloadGetStale:
		w.buf = append(w.buf, "?consistency=stale"...)
	}
	return b.do(ctx, http.MethodGet, string(w.buf), nil, "")
}

// benchResult is what raftkv bench reports; --json prints it as it is.
type benchResult struct {
	Workload    string       `json:"workload"`
	Endpoints   []string     `json:"endpoints"`
	Connections int          `json:"connections"`
	ValueSize   int          `json:"value_size"`
	Keys        int          `json:"keys"`
	Warmup      float64      `json:"warmup_s"`
	Seconds     float64      `json:"duration_s"`
	Ops         int64        `json:"ops"`
	OpsPerSec   float64      `json:"ops_per_sec"`
	Latency     latencyMS    `json:"latency_ms"`
	ErrorsTotal int64        `json:"errors_total"`
	Errors      []errorCount `json:"errors"`
}

// latencyMS holds latencies of successful requests in milliseconds.
type latencyMS struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// errorCount counts the failures of one kind, with one message as an example.
type errorCount struct {
	Kind    string `json:"kind"`
	Count   int64  `json:"count"`
	Example string `json:"example"`
}

func (r *benchResult) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s\n", r.Workload)
	fmt.Fprintf(tw, "endpoints\t%s\n", strings.Join(r.Endpoints, ", "))
	fmt.Fprintf(tw, "connections\t%d\n", r.Connections)
	fmt.Fprintf(tw, "values\t%d bytes, key space %d\n", r.ValueSize, r.Keys)
	fmt.Fprintf(tw, "measured\t%.2fs after %.2fs of warm-up\n", r.Seconds, r.Warmup)
	fmt.Fprintf(tw, "throughput\t%.0f ops/s (%d ops)\n", r.OpsPerSec, r.Ops)
	l := r.Latency
	fmt.Fprintf(tw, "latency\tmean %.3fms  p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms\n", l.Mean, l.P50, l.P90, l.P99, l.Max)
	fmt.Fprintf(tw, "errors\t%d\n", r.ErrorsTotal)
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "  %s\t%d  e.g. %s\n", e.Kind, e.Count, e.Example)
	}
	return tw.Flush()
}

// histogram counts durations in nanoseconds in log-linear buckets: values
// below 2^histSubBits exactly, larger ones with a relative error below
// 2^-histSubBits (0.8%). It takes a fixed 31 KiB whatever the number of
// samples, so every worker keeps its own and they merge at the end.
type histogram struct {
	counts []uint64
	n      uint64
	sum    int64
	max    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histMaxBits = 37 // values up to 2^37 ns (137 s); larger ones count as the largest
	// histBuckets is bucketOf(1<<histMaxBits-1) + 1.
	histBuckets = (histMaxBits - histSubBits + 1) * histSub
)

func newHistogram() *histogram { return &histogram{counts: make([]uint64, histBuckets)} }

// bucketOf maps v to its bucket: below 2*histSub the bucket is v itself;
// above, each power of two is split into histSub equal buckets.
func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	shift := max(0, bits.Len64(uint64(v))-histSubBits-1)
	return shift*histSub + int(v>>shift)
}

// bucketHigh is the largest value that falls into bucket i.
func bucketHigh(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	m := int64(i - shift*histSub)
	return (m+1)<<shift - 1
}

func (h *histogram) record(v int64) {
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

func (h *histogram) mean() int64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / int64(h.n)
}

// quantile returns the smallest recorded value (to the bucket's precision,
// rounded up, at most the maximum) with at least q of the samples at or
// below it; 0 when empty.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(1, min(rank, h.n))
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(bucketHigh(i), h.max)
		}
	}
	return h.max
}

// serveNull answers every request on ln without doing any work, until ctx
// ends: a GET with valueSize bytes, anything else with a put-sized JSON
// body, each after reading the request body. It is the ceiling the store's
// figures are measured against.
func serveNull(ctx context.Context, ln net.Listener, valueSize int) error {
	value := benchValue(valueSize)
	ack := []byte(`{"key":"bench/00000000","create_index":1,"mod_index":1,"version":1}` + "\n")
	ackLen, valueLen := strconv.Itoa(len(ack)), strconv.Itoa(len(value))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hd := w.Header()
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			hd.Set("Content-Type", "application/octet-stream")
			hd.Set("Content-Length", valueLen)
			_, _ = w.Write(value)
			return
		}
		hd.Set("Content-Type", "application/json")
		hd.Set("Content-Length", ackLen)
		_, _ = w.Write(ack)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("bench: serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("bench: stopping the server: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bench: serving: %w", err)
	}
	return nil
}
