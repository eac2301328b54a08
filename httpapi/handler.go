package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/internal/forward"
	"github.com/raftkv/raftkv/kv"
)

// Backend is the node the API fronts. Its writes reach the leader on their
// own (a follower sends them on in batches, see ApplyForwarded); a write
// that fails with kv.ErrNotLeader applied nothing, and the handler
// forwards the request as it came. Reads are always served locally (a
// follower's linearizable read waits for the leader's read index).
type Backend interface {
	// ID is the node's raft server id.
	ID() string
	// IsLeader reports whether the node believes it leads.
	IsLeader() bool
	// LeaderAPIAddr is the leader's HTTP host:port, or "" when unknown.
	LeaderAPIAddr() string
	// AppliedIndex is the state machine's applied index.
	AppliedIndex() uint64

	// Put, Delete, DeletePrefix and Txn apply a write with its options
	// (condition, idempotency key) through raft, on any node.
	Put(ctx context.Context, key, value []byte, opts kv.WriteOptions) (kv.PutResult, error)
	Delete(ctx context.Context, key []byte, opts kv.WriteOptions) (kv.DeleteResult, error)
	DeletePrefix(ctx context.Context, prefix []byte, opts kv.WriteOptions) (kv.DeleteResult, error)
	// Get returns the record and the applied index the read reflects.
	Get(ctx context.Context, key []byte, opts kv.ReadOptions) (kv.Record, uint64, error)
	List(ctx context.Context, opts kv.ListOptions) (kv.ListResult, error)

	Cluster(ctx context.Context) (kv.ClusterInfo, error)
	// Join adds or re-addresses a voter and records its API address.
	Join(ctx context.Context, req kv.JoinRequest) error
	// RemoveNode removes a member from the raft configuration (leader only).
	RemoveNode(ctx context.Context, id string) error
	// TransferLeadership hands leadership to id, or to the most caught-up
	// voter when id is empty (leader only).
	TransferLeadership(ctx context.Context, id string) error
	// Ready returns nil when the node can serve linearizable reads.
	Ready(ctx context.Context) error
	// ReadIndex is the leader's side of a follower's linearizable read: an
	// index whose application makes a read linearizable (leader only).
	ReadIndex(ctx context.Context) (uint64, error)
	// LastContact is how long ago the leader was last heard from; zero on
	// the leader.
	LastContact() time.Duration
	// Term and LeaderID as this member sees them now (LeaderCheckPath).
	LeaderCheck() (term uint64, leaderID string)
	Txn(ctx context.Context, t kv.Txn, opts kv.WriteOptions) (kv.TxnResult, error)
	// Digest hashes the local state machine (GET /v1/debug/hash).
	Digest(ctx context.Context) (kv.DigestInfo, error)
	// ApplyForwarded is the leader's side of a follower's batch of writes
	// (ApplyPath): it applies the batch body and returns the response body.
	// It fails as a whole, having applied nothing, with kv.ErrNotLeader on
	// a follower or kv.ErrBadRequest for a malformed batch.
	ApplyForwarded(ctx context.Context, body []byte) ([]byte, error)
}

// Config configures a Handler. Backend is required.
type Config struct {
	Backend Backend
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Metrics, if set, records requests and serves /metrics from Gatherer.
	Metrics *Metrics
	// Gatherer is what /metrics exposes; nil serves an empty page.
	Gatherer prometheus.Gatherer
	// MaxValueSize limits PUT bodies (default kv.DefaultMaxValueSize).
	MaxValueSize int64
	// Forward is the client used to forward requests to the leader; nil
	// builds a pooled keep-alive client.
	Forward *http.Client
	// ReadyTimeout bounds /readyz's check (default 2s).
	ReadyTimeout time.Duration
	// Pprof mounts net/http/pprof under /debug/pprof/ (off by default: it
	// exposes internals and can be made to burn CPU).
	Pprof bool
}

// Handler serves the API. Build it with New.
type Handler struct {
	b        Backend
	log      *slog.Logger
	m        *Metrics
	maxVal   int64
	fwd      *http.Client
	readyTO  time.Duration
	mux      *http.ServeMux
	kv       http.Handler
	notFound http.Handler
	metrics  http.Handler
}

// Header names of the contract.
const (
	HeaderIndex       = "X-Raft-Index"
	HeaderNode        = "X-Raft-Node"
	HeaderForwardedBy = "X-Raft-Forwarded-By"
	HeaderLastContact = "X-Last-Contact"
	// HeaderIdempotencyKey makes a write idempotent (see kv.WithIdempotencyKey).
	HeaderIdempotencyKey = "Idempotency-Key"
)

// ReadIndexPath is the leader's endpoint for followers' linearizable reads.
const ReadIndexPath = "/v1/internal/read-index"

// LeaderCheckPath is every member's endpoint for a leader confirming,
// before it serves reads, that it still leads: the answer is the member's
// term and the leader it follows, as of the moment it answers.
const LeaderCheckPath = "/v1/internal/leader-check"

// ApplyPath is the leader's endpoint for a follower's batches of writes;
// its body is binary (internal/forward), ApplyContentType.
const ApplyPath = forward.Path

// ApplyContentType is the media type of ApplyPath's bodies.
const ApplyContentType = forward.ContentType

// LeaderCheckResponse is the body of GET LeaderCheckPath.
type LeaderCheckResponse struct {
	Term     uint64 `json:"term"`
	LeaderID string `json:"leader_id"`
}

// ReadIndexResponse is the body of GET ReadIndexPath.
type ReadIndexResponse struct {
	Index uint64 `json:"index"`
}

// DefaultReadWait bounds a read (?wait=) when the request does not say.
const DefaultReadWait = 5 * time.Second

// maxReadWait is the longest ?wait= accepted.
const maxReadWait = 5 * time.Minute

// New builds the API handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Backend == nil {
		return nil, errors.New("httpapi: Backend is required")
	}
	h := &Handler{b: cfg.Backend, log: cfg.Logger, m: cfg.Metrics, maxVal: cfg.MaxValueSize, fwd: cfg.Forward, readyTO: cfg.ReadyTimeout}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxVal <= 0 {
		h.maxVal = kv.DefaultMaxValueSize
	}
	if h.fwd == nil {
		h.fwd = NewForwardClient()
	}
	if h.readyTO <= 0 {
		h.readyTO = 2 * time.Second
	}
	g := cfg.Gatherer
	if g == nil {
		g = prometheus.NewRegistry()
	}
	h.metrics = promhttp.HandlerFor(g, promhttp.HandlerOpts{})

	h.kv = h.instrument("/v1/kv/{key}", methods{http.MethodGet: h.getKV, http.MethodPut: h.putKV, http.MethodDelete: h.deleteKV}.serve)
	h.mux = http.NewServeMux()
	h.route("/v1/cluster", methods{http.MethodGet: jsonGET(h.getCluster)})
	h.route("/v1/cluster/nodes", methods{http.MethodPost: h.postNode})
	h.route("/v1/cluster/nodes/{id}", methods{http.MethodDelete: h.deleteNode})
	h.route("/v1/cluster/transfer-leader", methods{http.MethodPost: h.transferLeader})
	h.route("/v1/debug/hash", methods{http.MethodGet: h.getDigest})
	h.route(ReadIndexPath, methods{http.MethodGet: jsonGET(h.getReadIndex)})
	h.route(LeaderCheckPath, methods{http.MethodGet: jsonGET(h.getLeaderCheck)})
	h.route("/v1/txn", methods{http.MethodPost: h.postTxn})
	h.route(ApplyPath, methods{http.MethodPost: h.postApply})
	h.route("/livez", methods{http.MethodGet: h.livez})
	h.route("/readyz", methods{http.MethodGet: h.readyz})
	h.route("/metrics", methods{http.MethodGet: h.metrics.ServeHTTP})
	if cfg.Pprof {
		h.mux.HandleFunc("/debug/pprof/", pprof.Index)
		h.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		h.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		h.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		h.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	h.notFound = h.instrument("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no route for %s", kv.ErrNotFound, r.URL.Path))
	})
	h.mux.Handle("/", h.notFound)
	return h, nil
}

// methods maps an HTTP method to its handler; "*" takes any method.
type methods map[string]http.HandlerFunc

func (ms methods) allow() string {
	var list []string
	for m := range ms {
		list = append(list, m)
	}
	slices.Sort(list)
	return strings.Join(list, ", ")
}

func (ms methods) serve(w http.ResponseWriter, r *http.Request) {
	f, ok := ms[r.Method]
	if !ok {
		f, ok = ms["*"]
	}
	if !ok {
		w.Header().Set("Allow", ms.allow())
		writeError(w, fmt.Errorf("%w: %s is not served on %s (allowed: %s)", kv.ErrMethodNotAllowed, r.Method, r.URL.Path, ms.allow()))
		return
	}
	f(w, r)
}

func (h *Handler) route(pattern string, ms methods) {
	h.mux.Handle(pattern, h.instrument(pattern, ms.serve))
}

const kvPrefix = "/v1/kv/"

// ServeHTTP dispatches a request. /v1/kv/ is routed here, not by the mux,
// so that keys keep every byte of their escaped path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.EscapedPath(), kvPrefix) {
		h.kv.ServeHTTP(w, r)
		return
	}
	if p := r.URL.Path; !canonical(p) {
		// ServeMux would answer a non-canonical path ("/v1//cluster",
		// "/.") with a redirect, outside the contract: no route has one.
		h.notFound.ServeHTTP(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// canonical reports whether p is a path ServeMux serves as it is: clean,
// apart from one trailing slash ("//" is not: it cleans to "/").
func canonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	return c == p || c != "/" && c+"/" == p
}

// keyOf extracts and validates the key of a /v1/kv/ request; prefix
// requests may name the empty prefix.
func keyOf(r *http.Request, allowEmpty bool) ([]byte, error) {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), kvPrefix)
	s, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: key is not valid percent-encoding: %w", kv.ErrInvalidKey, err)
	}
	key := []byte(s)
	if allowEmpty && len(key) == 0 {
		return key, nil
	}
	if err := kv.ValidateKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

// params checks a request's query against the parameters a route takes.
type params struct{ url.Values }

func queryOf(r *http.Request, allowed ...string) (params, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return params{}, fmt.Errorf("%w: malformed query: %w", kv.ErrBadRequest, err)
	}
	for name, vs := range q {
		if !slices.Contains(allowed, name) {
			return params{}, fmt.Errorf("%w: unknown parameter %q", kv.ErrBadRequest, name)
		}
		if len(vs) > 1 {
			return params{}, fmt.Errorf("%w: parameter %q given %d times", kv.ErrBadRequest, name, len(vs))
		}
	}
	return params{q}, nil
}

// flag reads a parameter that is present or absent ("?prefix", "?prefix=true").
func (p params) flag(name string) (bool, error) {
	if !p.Has(name) {
		return false, nil
	}
	v := p.Get(name)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: parameter %q must be true or false, not %q", kv.ErrBadRequest, name, v)
	}
	return b, nil
}

func (p params) duration(name string) (time.Duration, error) {
	if !p.Has(name) {
		return 0, nil
	}
	d, err := time.ParseDuration(p.Get(name))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: parameter %q must be a duration like 2s, not %q", kv.ErrBadRequest, name, p.Get(name))
	}
	return d, nil
}

// readOptions reads consistency, max_stale, min_index and wait; wait
// bounds the whole read (DefaultReadWait when absent).
func (p params) readOptions() (kv.ReadOptions, time.Duration, error) {
	c, err := kv.ParseConsistency(p.Get("consistency"))
	if err != nil {
		return kv.ReadOptions{}, 0, err
	}
	ro := kv.ReadOptions{Consistency: c}
	if ro.MaxStale, err = p.duration("max_stale"); err != nil {
		return kv.ReadOptions{}, 0, err
	}
	if ro.MaxStale > 0 && c != kv.Stale {
		return kv.ReadOptions{}, 0, fmt.Errorf("%w: max_stale applies to consistency=stale", kv.ErrBadRequest)
	}
	if p.Has("min_index") {
		if ro.MinIndex, err = strconv.ParseUint(p.Get("min_index"), 10, 64); err != nil {
			return kv.ReadOptions{}, 0, fmt.Errorf("%w: parameter \"min_index\" must be a whole number, not %q", kv.ErrBadRequest, p.Get("min_index"))
		}
	}
	wait := DefaultReadWait
	if p.Has("wait") {
		if wait, err = p.duration("wait"); err != nil || wait < time.Millisecond || wait > maxReadWait {
			return kv.ReadOptions{}, 0, fmt.Errorf("%w: parameter \"wait\" must be a duration from 1ms to %s, not %q", kv.ErrBadRequest, maxReadWait, p.Get("wait"))
		}
	}
	return ro, wait, nil
}

func (h *Handler) getKV(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "prefix", "format", "consistency", "max_stale", "min_index", "wait", "limit", "after", "keys_only")
	if err != nil {
		writeError(w, err)
		return
	}
	isList, err := p.flag("prefix")
	if err != nil {
		writeError(w, err)
		return
	}
	ro, wait, err := p.readOptions()
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	r = r.WithContext(ctx)
	w.Header().Set(HeaderLastContact, strconv.FormatInt(h.b.LastContact().Milliseconds(), 10))
	if isList {
		h.list(w, r, p, ro)
		return
	}
	for _, name := range []string{"limit", "after", "keys_only"} {
		if p.Has(name) {
			writeError(w, fmt.Errorf("%w: parameter %q needs ?prefix", kv.ErrBadRequest, name))
			return
		}
	}
	format := p.Get("format")
	if format != "" && format != "json" && format != "raw" {
		writeError(w, fmt.Errorf("%w: parameter \"format\" must be json or raw, not %q", kv.ErrBadRequest, format))
		return
	}
	key, err := keyOf(r, false)
	if err != nil {
		writeError(w, err)
		return
	}
	rec, index, err := h.b.Get(r.Context(), key, ro)
	w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
	if err != nil {
		writeError(w, err)
		return
	}
	hd := w.Header()
	hd.Set("ETag", etag(rec.ModIndex))
	hd.Set("X-Create-Index", strconv.FormatUint(rec.CreateIndex, 10))
	hd.Set("X-Mod-Index", strconv.FormatUint(rec.ModIndex, 10))
	hd.Set("X-Version", strconv.FormatUint(rec.Version, 10))
	if format == "json" {
		writeJSON(w, http.StatusOK, kv.EncodeRecord(rec, false))
		return
	}
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.Itoa(len(rec.Value)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.Value)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, p params, ro kv.ReadOptions) {
	if p.Has("format") && p.Get("format") != "json" {
		writeError(w, fmt.Errorf("%w: a listing is always JSON; drop \"format\"", kv.ErrBadRequest))
		return
	}
	prefix, err := keyOf(r, true)
	if err != nil {
		writeError(w, err)
		return
	}
	opts := kv.ListOptions{ReadOptions: ro, Prefix: prefix, Limit: kv.DefaultListLimit}
	if p.Has("limit") {
		n, err := strconv.Atoi(p.Get("limit"))
		if err != nil || n < 1 || n > kv.MaxListLimit {
			writeError(w, fmt.Errorf("%w: parameter \"limit\" must be a whole number from 1 to %d, not %q", kv.ErrBadRequest, kv.MaxListLimit, p.Get("limit")))
			return
		}
		opts.Limit = n
	}
	if p.Has("after") {
		opts.After = []byte(p.Get("after"))
	}
	if opts.KeysOnly, err = p.flag("keys_only"); err != nil {
		writeError(w, err)
		return
	}
	res, err := h.b.List(r.Context(), opts)
	if err != nil {
		writeError(w, err)
		return
	}
	out := kv.ListResponse{Items: make([]kv.RecordJSON, 0, len(res.Items)), More: res.More, Index: res.Index}
	for _, rec := range res.Items {
		out.Items = append(out.Items, kv.EncodeRecord(rec, opts.KeysOnly))
	}
	out.Next, out.NextBase64 = kv.EncodeBytes(res.Next)
	w.Header().Set(HeaderIndex, strconv.FormatUint(res.Index, 10))
	writeJSON(w, http.StatusOK, out)
}

// condition reads If-Match: "<mod_index>" and If-None-Match: *.
func condition(r *http.Request) (kv.Condition, error) {
	var c kv.Condition
	if v := r.Header.Get("If-Match"); v != "" {
		s := strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
			return c, fmt.Errorf("%w: If-Match must be a quoted mod_index like \"42\", not %s", kv.ErrBadRequest, v)
		}
		n, err := strconv.ParseUint(s[1:len(s)-1], 10, 64)
		if err != nil || n == 0 {
			return c, fmt.Errorf("%w: If-Match must be a quoted mod_index like \"42\", not %s", kv.ErrBadRequest, v)
		}
		c.IfModIndex = n
	}
	if v := r.Header.Get("If-None-Match"); v != "" {
		if strings.TrimSpace(v) != "*" {
			return c, fmt.Errorf("%w: If-None-Match supports only *, not %s", kv.ErrBadRequest, v)
		}
		c.IfAbsent = true
	}
	if c.IfModIndex != 0 && c.IfAbsent {
		return c, fmt.Errorf("%w: If-Match and If-None-Match together can never hold", kv.ErrBadRequest)
	}
	return c, nil
}

// readBody reads a body of at most limit bytes, refusing a larger
// Content-Length before reading anything.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: body is %d bytes, the limit is %d", kv.ErrTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fmt.Errorf("%w: body is over the limit of %d bytes", kv.ErrTooLarge, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %w", kv.ErrBadRequest, err)
	}
	return body, nil
}

// keyWrite is what the PUT and DELETE handlers parse before anything else.
type keyWrite struct {
	p        params
	key      []byte
	opts     kv.WriteOptions // condition and idempotency key
	isPrefix bool
}

// parseKeyWrite reads a write's query (allowed names), key, conditions and
// idempotency key.
func parseKeyWrite(r *http.Request, allowed ...string) (keyWrite, error) {
	var kw keyWrite
	var err error
	if kw.p, err = queryOf(r, allowed...); err != nil {
		return kw, err
	}
	if kw.isPrefix, err = kw.p.flag("prefix"); err != nil {
		return kw, err
	}
	if kw.key, err = keyOf(r, kw.isPrefix); err != nil {
		return kw, err
	}
	if kw.opts.Condition, err = condition(r); err != nil {
		return kw, err
	}
	if kw.isPrefix && !kw.opts.Condition.IsZero() {
		return kw, fmt.Errorf("%w: conditions apply to one key, not to ?prefix", kv.ErrBadRequest)
	}
	kw.opts.IdempotencyKey, err = idempotencyKey(r)
	return kw, err
}

func (h *Handler) putKV(w http.ResponseWriter, r *http.Request) {
	kw, err := parseKeyWrite(r, "redirect")
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, h.maxVal)
	if err != nil {
		writeError(w, err)
		return
	}
	if h.redirect(w, r, kw.p) {
		return
	}
	res, err := h.b.Put(r.Context(), kw.key, body, kw.opts)
	out := kv.PutResponse{CreateIndex: res.CreateIndex, ModIndex: res.ModIndex, Version: res.Version}
	out.Key, out.KeyBase64 = kv.EncodeBytes(res.Key)
	if err == nil {
		w.Header().Set("ETag", etag(res.ModIndex))
	}
	h.answerWrite(w, r, body, err, res.ModIndex, out)
}

// answerWrite sends a write's outcome: forwarded to the leader when this
// node turned out not to lead (kv.ErrNotLeader: nothing was applied here),
// the error, or v with the index of the entry that applied it.
func (h *Handler) answerWrite(w http.ResponseWriter, r *http.Request, body []byte, err error, index uint64, v any) {
	if errors.Is(err, kv.ErrNotLeader) {
		h.forward(w, r, body, true)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
	writeJSON(w, http.StatusOK, v)
}

func (h *Handler) deleteKV(w http.ResponseWriter, r *http.Request) {
	kw, err := parseKeyWrite(r, "prefix", "redirect")
	if err != nil {
		writeError(w, err)
		return
	}
	if h.redirect(w, r, kw.p) {
		return
	}
	var res kv.DeleteResult
	if kw.isPrefix {
		res, err = h.b.DeletePrefix(r.Context(), kw.key, kw.opts)
	} else {
		res, err = h.b.Delete(r.Context(), kw.key, kw.opts)
	}
	h.answerWrite(w, r, nil, err, res.Index, kv.DeleteResponse(res))
}

// jsonGET serves a GET that takes no parameters and answers 200 with what
// get returns as JSON, or the error.
func jsonGET[T any](get func(r *http.Request) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := queryOf(r); err != nil {
			writeError(w, err)
			return
		}
		v, err := get(r)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func (h *Handler) getCluster(r *http.Request) (kv.ClusterInfo, error) {
	return h.b.Cluster(r.Context())
}

func (h *Handler) postNode(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, 64<<10)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := decodeJoin(body)
	if err != nil {
		writeError(w, err)
		return
	}
	if !h.b.IsLeader() {
		h.forward(w, r, body, true)
		return
	}
	err = h.b.Join(r.Context(), req)
	if errors.Is(err, kv.ErrNotLeader) {
		h.forward(w, r, body, true)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// leaderOnly runs op here when this node leads, else forwards the request.
func (h *Handler) leaderOnly(w http.ResponseWriter, r *http.Request, body []byte, op func() error) {
	if !h.b.IsLeader() {
		h.forward(w, r, body, true)
		return
	}
	err := op()
	if errors.Is(err, kv.ErrNotLeader) {
		h.forward(w, r, body, true)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) deleteNode(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if id == "" {
		writeError(w, fmt.Errorf("%w: node id is empty", kv.ErrBadRequest))
		return
	}
	h.leaderOnly(w, r, nil, func() error { return h.b.RemoveNode(r.Context(), id) })
}

// transferLeader hands leadership over: to ?id= when given, else to the
// voter raft picks.
func (h *Handler) transferLeader(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "id")
	if err != nil {
		writeError(w, err)
		return
	}
	h.leaderOnly(w, r, nil, func() error { return h.b.TransferLeadership(r.Context(), p.Get("id")) })
}

// getDigest answers with a hash of the local state machine, so that tests
// and operators can check that replicas converged.
// X-Raft-Index is the applied index the digest covers.
func (h *Handler) getDigest(w http.ResponseWriter, r *http.Request) {
	jsonGET(func(r *http.Request) (kv.DigestInfo, error) {
		d, err := h.b.Digest(r.Context())
		if err == nil {
			w.Header().Set(HeaderIndex, strconv.FormatUint(d.AppliedIndex, 10))
		}
		return d, err
	})(w, r)
}

func (h *Handler) livez(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": h.b.ID()})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.readyTO)
	defer cancel()
	if err := h.b.Ready(ctx); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node": h.b.ID()})
}

// getReadIndex is never forwarded: the asking follower targets the leader
// it knows, and a stale belief must fail, not be passed on.
func (h *Handler) getReadIndex(r *http.Request) (ReadIndexResponse, error) {
	index, err := h.b.ReadIndex(r.Context())
	return ReadIndexResponse{Index: index}, err
}

func (h *Handler) getLeaderCheck(*http.Request) (LeaderCheckResponse, error) {
	term, leader := h.b.LeaderCheck()
	return LeaderCheckResponse{Term: term, LeaderID: leader}, nil
}

// idempotencyKey returns the request's Idempotency-Key ("" for none),
// checked.
func idempotencyKey(r *http.Request) (string, error) {
	key := r.Header.Get(HeaderIdempotencyKey)
	if err := kv.ValidateIdempotencyKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// txnBodyLimit bounds a transaction's JSON: its keys and values may total
// maxVal, and JSON (base64 above all) takes more room than the bytes.
func (h *Handler) txnBodyLimit() int64 { return 2*h.maxVal + 1<<20 }

func (h *Handler) postTxn(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "redirect")
	if err != nil {
		writeError(w, err)
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, h.txnBodyLimit())
	if err != nil {
		writeError(w, err)
		return
	}
	var req kv.TxnRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: transaction body: %w", kv.ErrBadRequest, err))
		return
	}
	if dec.More() {
		writeError(w, fmt.Errorf("%w: transaction body: trailing data", kv.ErrBadRequest))
		return
	}
	txn, err := req.Txn()
	if err != nil {
		writeError(w, err)
		return
	}
	if err := txn.Validate(h.maxVal); err != nil {
		writeError(w, err)
		return
	}
	if h.redirect(w, r, p) {
		return
	}
	res, err := h.b.Txn(r.Context(), txn, kv.WriteOptions{IdempotencyKey: idem})
	h.answerWrite(w, r, body, err, res.Index, kv.EncodeTxnResult(res))
}
