package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// ErrUnreachable means no endpoint could be dialed: the request reached no
// server, so a write that fails with it was certainly not applied.
var ErrUnreachable = errors.New("no endpoint reachable")

// Config configures a Client.
type Config struct {
	// Endpoints are the base URLs of cluster nodes, like
	// "http://127.0.0.1:8001"; a bare host:port gets "http://" prepended.
	// At least one is required.
	Endpoints []string
	// HTTPClient sends the requests. Nil means a dedicated client with a
	// pooled keep-alive transport, which Close cleans up.
	HTTPClient *http.Client
	// Header holds extra headers sent with every request.
	Header http.Header
}

// Client talks to a raftkv cluster over its HTTP API. It is safe for
// concurrent use.
type Client struct {
	endpoints []string
	hc        *http.Client
	owned     bool // hc was created by New
	header    http.Header
	current   atomic.Int64 // index of the endpoint that last answered
}

// New validates cfg and returns a Client. It does not contact any endpoint.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	c := &Client{hc: cfg.HTTPClient, header: cfg.Header.Clone()}
	for _, e := range cfg.Endpoints {
		base, err := ParseEndpoint(e)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		c.endpoints = append(c.endpoints, base)
	}
	if c.hc == nil {
		c.hc, c.owned = &http.Client{Transport: newTransport()}, true
	}
	return c, nil
}

// ParseEndpoint returns the base URL of an endpoint, without a trailing
// slash: s is a base URL (http or https, a host, optionally a path; no
// query or fragment), or a bare host:port that gets "http://" prepended.
// Surrounding spaces are ignored. New parses every Config.Endpoints entry
// with it.
func ParseEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("endpoint %q: want http(s)://host:port", s)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// newTransport returns the default transport: keep-alive connections pooled
// generously per node, bounded dial and handshake times, and no overall
// request timeout (the context sets it; blocking reads are long by design).
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Close closes the idle connections of the HTTP client New created; a
// client passed in Config is left alone. The Client stays usable.
func (c *Client) Close() {
	if c.owned {
		c.hc.CloseIdleConnections()
	}
}

// Put writes value under key. opts may make it conditional (kv.IfModIndex,
// kv.IfAbsent: a failed condition wraps kv.ErrPreconditionFailed and
// nothing is written) or idempotent (kv.Idempotent).
func (c *Client) Put(ctx context.Context, key, value []byte, opts ...kv.WriteOption) (kv.PutResult, error) {
	if err := kv.ValidateKey(key); err != nil {
		return kv.PutResult{}, err
	}
	o := kv.NewWriteOptions(opts...)
	h := writeHeader(ctx, o)
	h.Set("Content-Type", "application/octet-stream")
	var resp kv.PutResponse
	if err := c.call(ctx, request{method: http.MethodPut, path: kvPath(key), header: h, body: value}, &resp); err != nil {
		return kv.PutResult{}, err
	}
	k, err := kv.DecodeBytes(resp.Key, resp.KeyBase64)
	if err != nil {
		return kv.PutResult{}, fmt.Errorf("put response: %w", err)
	}
	return kv.PutResult{Key: k, CreateIndex: resp.CreateIndex, ModIndex: resp.ModIndex, Version: resp.Version}, nil
}

// PutIf writes value under key if cond holds.
//
// Deprecated: use Put with kv.WithCondition(cond) (or kv.IfModIndex,
// kv.IfAbsent).
func (c *Client) PutIf(ctx context.Context, key, value []byte, cond kv.Condition) (kv.PutResult, error) {
	return c.Put(ctx, key, value, kv.WithCondition(cond))
}

// Get reads the record under key; the error wraps kv.ErrNotFound when there
// is none.
func (c *Client) Get(ctx context.Context, key []byte, opts kv.ReadOptions) (kv.Record, error) {
	if err := kv.ValidateKey(key); err != nil {
		return kv.Record{}, err
	}
	var q query
	q.set("format", "json")
	q.read(ctx, opts)
	var rec kv.RecordJSON
	if err := c.call(ctx, request{method: http.MethodGet, path: kvPath(key), query: q}, &rec); err != nil {
		return kv.Record{}, withMinIndex(err, opts.MinIndex)
	}
	r, err := rec.Record()
	if err != nil {
		return kv.Record{}, fmt.Errorf("get response: %w", err)
	}
	return r, nil
}

// Delete removes key. Deleting a missing key is not an error: it deletes
// 0. opts may make it conditional or idempotent, as for Put.
func (c *Client) Delete(ctx context.Context, key []byte, opts ...kv.WriteOption) (kv.DeleteResult, error) {
	if err := kv.ValidateKey(key); err != nil {
		return kv.DeleteResult{}, err
	}
	return c.delete(ctx, request{method: http.MethodDelete, path: kvPath(key), header: writeHeader(ctx, kv.NewWriteOptions(opts...))})
}

// DeleteIf removes key if cond holds.
//
// Deprecated: use Delete with kv.WithCondition(cond).
func (c *Client) DeleteIf(ctx context.Context, key []byte, cond kv.Condition) (kv.DeleteResult, error) {
	return c.Delete(ctx, key, kv.WithCondition(cond))
}

// DeletePrefix removes every key that starts with prefix, in one raft entry.
// An empty prefix removes every key. opts may make it idempotent; a
// condition is refused (kv.ErrBadRequest).
func (c *Client) DeletePrefix(ctx context.Context, prefix []byte, opts ...kv.WriteOption) (kv.DeleteResult, error) {
	o := kv.NewWriteOptions(opts...)
	if !o.Condition.IsZero() {
		return kv.DeleteResult{}, fmt.Errorf("%w: conditions guard one key; a prefix delete takes none", kv.ErrBadRequest)
	}
	var q query
	q.flag("prefix")
	return c.delete(ctx, request{method: http.MethodDelete, path: kvPath(prefix), query: q, header: writeHeader(ctx, o)})
}

func (c *Client) delete(ctx context.Context, req request) (kv.DeleteResult, error) {
	var resp kv.DeleteResponse
	if err := c.call(ctx, req, &resp); err != nil {
		return kv.DeleteResult{}, err
	}
	return kv.DeleteResult(resp), nil
}

// List returns one page of the keys that start with opts.Prefix, after
// opts.After; pass the result's Next as After to get the following page.
func (c *Client) List(ctx context.Context, opts kv.ListOptions) (kv.ListResult, error) {
	var q query
	q.flag("prefix")
	if opts.Limit > 0 {
		q.set("limit", strconv.Itoa(opts.Limit))
	}
	if len(opts.After) > 0 {
		q.set("after", string(opts.After))
	}
	if opts.KeysOnly {
		q.flag("keys_only")
	}
	q.read(ctx, opts.ReadOptions)
	var resp kv.ListResponse
	if err := c.call(ctx, request{method: http.MethodGet, path: kvPath(opts.Prefix), query: q}, &resp); err != nil {
		return kv.ListResult{}, withMinIndex(err, opts.MinIndex)
	}
	out := kv.ListResult{Items: make([]kv.Record, 0, len(resp.Items)), More: resp.More, Index: resp.Index}
	for i, item := range resp.Items {
		r, err := item.Record()
		if err != nil {
			return kv.ListResult{}, fmt.Errorf("list response: item %d: %w", i, err)
		}
		out.Items = append(out.Items, r)
	}
	next, err := kv.DecodeBytes(resp.Next, resp.NextBase64)
	if err != nil {
		return kv.ListResult{}, fmt.Errorf("list response: next: %w", err)
	}
	if len(next) > 0 {
		out.Next = next
	}
	return out, nil
}

// Cluster describes the cluster as the answering node sees it.
func (c *Client) Cluster(ctx context.Context) (kv.ClusterInfo, error) {
	var info kv.ClusterInfo
	err := c.call(ctx, request{method: http.MethodGet, path: "/v1/cluster"}, &info)
	return info, err
}

// Join asks the cluster to add (or re-address) a voter and record its API
// address. It is forwarded to the leader.
func (c *Client) Join(ctx context.Context, req kv.JoinRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	return c.call(ctx, request{method: http.MethodPost, path: "/v1/cluster/nodes", header: h, body: body}, nil)
}

// Txn applies a transaction atomically (POST /v1/txn): if every compare
// holds the success ops run, else the failure ops. opts may make it
// idempotent; a condition is refused (the compares are its conditions).
func (c *Client) Txn(ctx context.Context, t kv.Txn, opts ...kv.WriteOption) (kv.TxnResult, error) {
	o := kv.NewWriteOptions(opts...)
	if !o.Condition.IsZero() {
		return kv.TxnResult{}, fmt.Errorf("%w: conditions guard one key; a transaction takes none", kv.ErrBadRequest)
	}
	body, err := json.Marshal(kv.EncodeTxn(t))
	if err != nil {
		return kv.TxnResult{}, fmt.Errorf("txn: %w", err)
	}
	var resp kv.TxnResponse
	h := writeHeader(ctx, o)
	h.Set("Content-Type", "application/json")
	if err := c.call(ctx, request{method: http.MethodPost, path: "/v1/txn", header: h, body: body}, &resp); err != nil {
		return kv.TxnResult{}, err
	}
	return resp.TxnResult()
}

// EscapeKey percent-encodes key for use as the path after /v1/kv/: every
// byte outside the unreserved set A-Za-z0-9-._~ is encoded, except '/'. So
// that the path survives the cleaning servers and proxies apply, a '/' that
// would make an empty path segment (a leading or doubled slash) is encoded
// too, as are the dots of a "." or ".." segment. url.PathUnescape inverts it
// for any byte string.
func EscapeKey(key []byte) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(key) + len(key)/2)
	escape := func(c byte) { b.WriteByte('%'); b.WriteByte(hex[c>>4]); b.WriteByte(hex[c&15]) }
	start := 0 // of the current segment
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '/' {
			continue
		}
		seg := string(key[start:i])
		dots := seg == "." || seg == ".."
		for j := range len(seg) {
			if c := seg[j]; unreserved(c) && !dots {
				b.WriteByte(c)
			} else {
				escape(c)
			}
		}
		if i < len(key) {
			if i == start {
				escape('/')
			} else {
				b.WriteByte('/')
			}
		}
		start = i + 1
	}
	return b.String()
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func kvPath(key []byte) string { return "/v1/kv/" + EscapeKey(key) }

// withMinIndex fills in the index a timed-out read waited for.
func withMinIndex(err error, minIndex uint64) error {
	var we *kv.WaitError
	if errors.As(err, &we) {
		we.MinIndex = minIndex
	}
	return err
}

// maxErrorBody bounds how much of an error body DecodeError reads.
const maxErrorBody = 64 << 10

// DecodeError turns a non-2xx response into an error: the JSON error body
// becomes kv.FromCode(code, message), a *kv.WireError that errors.Is matches
// against the kv sentinel of its code, with the response's ETag header kept
// in its ETag field. A body that is not a JSON error becomes a WireError with
// code kv.CodeInternal whose message carries the status. DecodeError reads
// the body but does not close it.
func DecodeError(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var er kv.ErrorResponse
	if err == nil && json.Unmarshal(body, &er) == nil && er.Error.Code != "" {
		err = kv.FromCode(er.Error.Code, er.Error.Message)
		if er.Error.Code == "timeout" && er.Error.AppliedIndex > 0 {
			// A read that waited for min_index: say how far the node got.
			return &kv.WaitError{AppliedIndex: er.Error.AppliedIndex}
		}
	} else {
		msg := fmt.Sprintf("unexpected response %s", resp.Status)
		if s := strings.TrimSpace(string(body)); s != "" {
			msg += ": " + s
		}
		err = kv.FromCode(kv.CodeInternal, msg)
	}
	var we *kv.WireError
	if errors.As(err, &we) {
		we.ETag = resp.Header.Get("ETag")
	}
	return err
}

// request is one API call, independent of the endpoint it is sent to.
type request struct {
	method string
	path   string // escaped
	query  query
	header http.Header
	body   []byte
}

// query builds a raw query string; flag adds a bare parameter (?prefix).
type query []string

func (q *query) set(name, value string) { *q = append(*q, name+"="+url.QueryEscape(value)) }
func (q *query) flag(name string)       { *q = append(*q, name) }

// read adds the read options, and ?wait from ctx's deadline so that the
// server bounds the read (min_index above all) by the caller's deadline
// rather than its own default.
func (q *query) read(ctx context.Context, opts kv.ReadOptions) {
	if dl, ok := ctx.Deadline(); ok {
		// Nine tenths of what is left, so the server's answer (a timeout
		// with the applied index, say) arrives before the caller gives up.
		q.set("wait", min(max(time.Until(dl)*9/10, time.Millisecond), 5*time.Minute).String())
	}
	if opts.Consistency != "" {
		q.set("consistency", string(opts.Consistency))
	}
	if opts.MaxStale > 0 {
		q.set("max_stale", opts.MaxStale.String())
	}
	if opts.MinIndex > 0 {
		q.set("min_index", strconv.FormatUint(opts.MinIndex, 10))
	}
}

// writeHeader carries a write's options: its condition (If-Match,
// If-None-Match) and its idempotency key (the option's, else the
// deprecated one in ctx).
func writeHeader(ctx context.Context, o kv.WriteOptions) http.Header {
	h := http.Header{}
	if o.Condition.IfModIndex != 0 {
		h.Set("If-Match", `"`+strconv.FormatUint(o.Condition.IfModIndex, 10)+`"`)
	}
	if o.Condition.IfAbsent {
		h.Set("If-None-Match", "*")
	}
	key := o.IdempotencyKey
	if key == "" {
		key = kv.IdempotencyKey(ctx)
	}
	if key != "" {
		h.Set("Idempotency-Key", key)
	}
	return h
}

// call sends req and decodes a 2xx JSON answer into out (unless out is nil);
// any other status becomes DecodeError's error.
func (c *Client) call(ctx context.Context, req request, out any) error {
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // let the connection be reused
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return DecodeError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the response: %w", req.method, req.path, err)
	}
	return nil
}

// send tries the endpoints in turn, starting from the one that last
// answered, and returns the first response. It moves on only when the
// request certainly never left (a dial failed), or, for a GET, after any
// transport error. A write that failed after it may have been sent wraps
// kv.ErrOutcomeUnknown.
func (c *Client) send(ctx context.Context, req request) (*http.Response, error) {
	write := req.method != http.MethodGet
	start := int(c.current.Load())
	var lastErr error
	dialOnly := true // every failure so far was a dial failure
	for i := range c.endpoints {
		if err := ctx.Err(); err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (after %w)", err, lastErr)
			}
			return nil, err
		}
		n := (start + i) % len(c.endpoints)
		hr, err := c.newHTTPRequest(ctx, c.endpoints[n], req)
		if err != nil {
			return nil, err
		}
		resp, err := c.hc.Do(hr)
		if err == nil {
			c.current.Store(int64(n))
			return resp, nil
		}
		lastErr = err
		if isDialError(err) {
			continue
		}
		if write {
			return nil, fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, err)
		}
		if ctx.Err() != nil {
			return nil, err
		}
		dialOnly = false
	}
	if dialOnly {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, lastErr)
	}
	return nil, lastErr
}

func (c *Client) newHTTPRequest(ctx context.Context, base string, req request) (*http.Request, error) {
	u := base + req.path
	if len(req.query) > 0 {
		u += "?" + strings.Join(req.query, "&")
	}
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.method, u, err)
	}
	for k, v := range c.header {
		hr.Header[k] = v
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	return hr, nil
}

// isDialError reports whether err means the connection was never made, so
// the request certainly reached no server.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
