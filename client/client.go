package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// ErrUnreachable means no attempt of a call reached a server: every
// connection failed to be made, so a write that fails with it was certainly
// not applied.
var ErrUnreachable = errors.New("no endpoint reachable")

// The defaults of the Config fields left zero.
const (
	DefaultAttemptTimeout  = 5 * time.Second
	DefaultMinBackoff      = 50 * time.Millisecond
	DefaultMaxBackoff      = time.Second
	DefaultRefreshInterval = time.Minute
)

// Config configures a Client.
type Config struct {
	// Endpoints are the base URLs of cluster nodes, like
	// "http://127.0.0.1:8001" or "https://127.0.0.1:8001"; a bare
	// host:port gets "http://" prepended ("https://" when TLS is set).
	// At least one is required. The client also learns the other members'
	// addresses from the cluster (see RefreshInterval), so one is enough
	// once it has talked to the cluster.
	Endpoints []string
	// HTTPClient sends the requests. Nil means a dedicated client with a
	// pooled keep-alive transport, which Close cleans up.
	HTTPClient *http.Client
	// TLS configures the https connections of the dedicated client (nil:
	// Go's defaults, the system's roots): RootCAs verifies the nodes'
	// certificates, Certificates or GetClientCertificate is the client's
	// own certificate for a cluster that requires one. It is cloned; it
	// cannot be combined with HTTPClient (configure that client's
	// transport instead). A certificate that fails verification, on
	// either side, is a configuration error: the call tries each known
	// endpoint once and returns it (see the package doc, "TLS").
	TLS *tls.Config
	// Header holds extra headers sent with every request.
	Header http.Header
	// Token is the secret of an ACL token (docs/security.md), sent with
	// every request as Authorization: Bearer. Empty sends none (a cluster
	// without ACLs).
	Token string

	// AttemptTimeout bounds each attempt of a read and of a write that
	// carries an idempotency key: when an endpoint gives no answer in time
	// (a paused or cut-off node), the attempt is abandoned and the call
	// tries another endpoint. A read sends the server a ?wait of nine
	// tenths of its attempt, so that a node that cannot serve it in time
	// (min_index not reached, no leader) says so before the attempt ends;
	// a read with MinIndex thus waits for the index one attempt at a time,
	// on one node after another, until its context ends. A write without
	// an idempotency key is bounded by its context alone: cutting it short
	// could only turn its answer into an unknown outcome. Zero means
	// DefaultAttemptTimeout; negative means no bound but the context.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause before each retry: it
	// starts at MinBackoff and doubles with every retry of the call up to
	// MaxBackoff, and a random half of it is taken off (jitter). The pause
	// is at least the Retry-After of the last answer when every endpoint
	// asked for one, but never more than MaxBackoff, and never past the
	// call's context. Zero means DefaultMinBackoff, DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts caps the attempts of one call, the first included. Zero
	// means no cap: a call retries until it gets an answer to return or
	// its context ends, so give calls a context with a deadline. One
	// disables retries (each call makes one attempt).
	MaxAttempts int
	// RefreshInterval is how often the client re-reads the members' API
	// addresses (GET /v1/cluster), when a call starts or a stream (Watch,
	// ObserveElection) delivers a line: a client that only watches learns
	// the members that join while it does. It also re-reads them after a
	// failed attempt (at most once a second), and reads them first when a
	// call comes after none was read; the refresh runs beside the calls,
	// never delaying them, and Close stops it. The endpoints tried are
	// Endpoints followed by the members learned, addressed with the scheme
	// of the endpoint that described them. Zero means DefaultRefreshInterval;
	// negative turns discovery off: only Endpoints are used.
	RefreshInterval time.Duration
}

// Client talks to a raftkv cluster over its HTTP API. It is safe for
// concurrent use.
type Client struct {
	hc     *http.Client
	owned  bool // hc was created by New
	header http.Header

	attemptTimeout         time.Duration // <= 0: none
	minBackoff, maxBackoff time.Duration
	maxAttempts            int           // 0: no cap
	refreshEvery           time.Duration // < 0: no discovery

	eps endpoints

	// The refresh goroutine: at most one at a time, stopped by Close.
	bg     context.Context
	stopBG context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg and returns a Client. It does not contact any endpoint.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	if cfg.MaxAttempts < 0 {
		return nil, errors.New("client: MaxAttempts is negative")
	}
	if cfg.TLS != nil && cfg.HTTPClient != nil {
		return nil, errors.New("client: TLS and HTTPClient exclude each other (set TLSClientConfig in the HTTPClient's transport)")
	}
	c := &Client{
		hc:             cfg.HTTPClient,
		header:         withToken(cfg.Header, cfg.Token),
		attemptTimeout: orDefault(cfg.AttemptTimeout, DefaultAttemptTimeout),
		minBackoff:     orDefault(cfg.MinBackoff, DefaultMinBackoff),
		maxBackoff:     orDefault(cfg.MaxBackoff, DefaultMaxBackoff),
		maxAttempts:    cfg.MaxAttempts,
		refreshEvery:   orDefault(cfg.RefreshInterval, DefaultRefreshInterval),
	}
	if c.minBackoff < 0 || c.maxBackoff < 0 {
		return nil, errors.New("client: negative backoff")
	}
	c.maxBackoff = max(c.maxBackoff, c.minBackoff)
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	var seeds []string
	for _, e := range cfg.Endpoints {
		base, err := parseEndpoint(e, scheme)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		seeds = append(seeds, base)
	}
	c.eps.init(seeds)
	if c.hc == nil {
		c.hc, c.owned = &http.Client{Transport: newTransport(cfg.TLS)}, true
	}
	c.bg, c.stopBG = context.WithCancel(context.Background())
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// ParseEndpoint returns the base URL of an endpoint, without a trailing
// slash: s is a base URL (http or https, a host, optionally a path; no
// query or fragment), or a bare host:port that gets "http://" prepended.
// Surrounding spaces are ignored. New parses every Config.Endpoints entry
// with it.
func ParseEndpoint(s string) (string, error) { return parseEndpoint(s, "http") }

// parseEndpoint is ParseEndpoint, with scheme prepended to a bare
// host:port.
func parseEndpoint(s, scheme string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = scheme + "://" + s
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
// generously per node, bounded dial and handshake times, no overall
// request timeout (the context and AttemptTimeout set it), and a clone of
// tlsConf (nil: Go's defaults) for https endpoints.
func newTransport(tlsConf *tls.Config) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		TLSClientConfig:       tlsConf.Clone(),
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Close stops the endpoint refresh, waiting for one in progress to end,
// and closes the idle connections of the HTTP client New created (a client
// passed in Config is left alone). Calls made after Close still work, with
// the endpoints known then, and no longer refresh them.
func (c *Client) Close() {
	c.eps.close()
	c.stopBG()
	c.wg.Wait()
	if c.owned {
		c.hc.CloseIdleConnections()
	}
}

// Put writes value under key. opts may make it conditional (kv.IfModIndex,
// kv.IfAbsent: a failed condition wraps kv.ErrPreconditionFailed and
// nothing is written) or give it an idempotency key of the caller's
// (kv.Idempotent); without one the client generates a key, unless
// kv.WithoutIdempotencyKey, so that it can resend the write safely (see
// the package doc, "Failover"). kv.WithLease attaches the key to a lease
// (?lease=ID), kv.WithTTL to a new lease of its own (?ttl=; the result's
// Lease names it), kv.WithFence makes the write require a lock's token
// (?lock=&token=; 412 otherwise).
func (c *Client) Put(ctx context.Context, key, value []byte, opts ...kv.WriteOption) (kv.PutResult, error) {
	if err := kv.ValidateKey(key); err != nil {
		return kv.PutResult{}, err
	}
	o := kv.NewWriteOptions(opts...)
	q, err := writeQuery(o, true)
	if err != nil {
		return kv.PutResult{}, err
	}
	h, class := writeHeader(ctx, o)
	h.Set("Content-Type", "application/octet-stream")
	var resp kv.PutResponse
	if err := c.call(ctx, request{method: http.MethodPut, path: kvPath(key), query: q, header: h, body: value, class: class}, &resp); err != nil {
		return kv.PutResult{}, err
	}
	k, err := kv.DecodeBytes(resp.Key, resp.KeyBase64)
	if err != nil {
		return kv.PutResult{}, fmt.Errorf("put response: %w", err)
	}
	return kv.PutResult{Key: k, CreateIndex: resp.CreateIndex, ModIndex: resp.ModIndex, Version: resp.Version, Lease: resp.Lease}, nil
}

// writeQuery carries a write's lease (?lease=ID or ?ttl=, when
// leases, the options of a put) and fence (?lock=NAME&token=T). Options a
// write cannot take, or that contradict each other, are kv.ErrBadRequest.
func writeQuery(o kv.WriteOptions, leases bool) (query, error) {
	var q query
	switch {
	case !leases && (o.Lease != 0 || o.TTL != 0):
		return nil, fmt.Errorf("%w: only a put takes a lease or a ttl", kv.ErrBadRequest)
	case o.Lease != 0 && o.TTL != 0:
		return nil, fmt.Errorf("%w: a put takes a lease or a ttl, not both", kv.ErrBadRequest)
	case o.TTL < 0:
		return nil, fmt.Errorf("%w: ttl %s is negative", kv.ErrBadRequest, o.TTL)
	case o.Lease != 0:
		q.set("lease", o.Lease.String())
	case o.TTL != 0:
		q.set("ttl", o.TTL.String())
	}
	if !o.Fence.IsZero() {
		if err := o.Fence.Validate(); err != nil {
			return nil, fmt.Errorf("fence: %w", err)
		}
		q.set("lock", o.Fence.Lock)
		q.set("token", strconv.FormatUint(o.Fence.Token, 10))
	}
	return q, nil
}

// PutIf writes value under key if cond holds.
//
// Deprecated: use Put with kv.WithCondition(cond) (or kv.IfModIndex,
// kv.IfAbsent).
func (c *Client) PutIf(ctx context.Context, key, value []byte, cond kv.Condition) (kv.PutResult, error) {
	return c.Put(ctx, key, value, kv.WithCondition(cond))
}

// Get reads the record under key; the error wraps kv.ErrNotFound when there
// is none. With opts.WaitIndex it is a blocking read (?wait_index): the
// server answers once the key changes at an index above WaitIndex (pass
// the ModIndex of the record read before), or when opts.WaitTime runs out
// (at most five minutes, the server's bound, and never past ctx's
// deadline), with the record as it is then; ctx bounds the whole call.
func (c *Client) Get(ctx context.Context, key []byte, opts kv.ReadOptions) (kv.Record, error) {
	if err := kv.ValidateKey(key); err != nil {
		return kv.Record{}, err
	}
	var q query
	q.set("format", "json")
	var rec kv.RecordJSON
	if err := c.call(ctx, readRequest(kvPath(key), q, opts), &rec); err != nil {
		return kv.Record{}, withMinIndex(err, opts.MinIndex)
	}
	r, err := rec.Record()
	if err != nil {
		return kv.Record{}, fmt.Errorf("get response: %w", err)
	}
	return r, nil
}

// Delete removes key. Deleting a missing key is not an error: it deletes
// 0. opts may make it conditional, idempotent or fenced, as for Put.
func (c *Client) Delete(ctx context.Context, key []byte, opts ...kv.WriteOption) (kv.DeleteResult, error) {
	if err := kv.ValidateKey(key); err != nil {
		return kv.DeleteResult{}, err
	}
	o := kv.NewWriteOptions(opts...)
	q, err := writeQuery(o, false)
	if err != nil {
		return kv.DeleteResult{}, err
	}
	h, class := writeHeader(ctx, o)
	return c.delete(ctx, request{method: http.MethodDelete, path: kvPath(key), query: q, header: h, class: class})
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
	h, class := writeHeader(ctx, o)
	return c.delete(ctx, request{method: http.MethodDelete, path: kvPath(prefix), query: q, header: h, class: class})
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
// With opts.WaitIndex it is a blocking read, as for Get: it answers once a
// key under the prefix changes at an index above WaitIndex (pass the Index
// of the listing before) or opts.WaitTime runs out.
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
	var resp kv.ListResponse
	if err := c.call(ctx, readRequest(kvPath(opts.Prefix), q, opts.ReadOptions), &resp); err != nil {
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

// Cluster describes the cluster as the answering node sees it: any
// endpoint may answer (ClusterInfo.ID names it).
func (c *Client) Cluster(ctx context.Context) (kv.ClusterInfo, error) {
	var info kv.ClusterInfo
	err := c.call(ctx, request{method: http.MethodGet, path: "/v1/cluster"}, &info)
	return info, err
}

// Join asks the cluster to add a member, or re-address one, and record
// its API address (POST /v1/cluster/nodes): a new member is a non-voter,
// promoted by the leader once it has caught up, unless req.Suffrage is
// kv.Voter; a member already there keeps its suffrage. It is forwarded to
// the leader. It takes no idempotency key, so it is resent only when it was
// certainly not applied. AddMember is the same call.
func (c *Client) Join(ctx context.Context, req kv.JoinRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	return c.call(ctx, request{method: http.MethodPost, path: "/v1/cluster/nodes", header: h, body: body, class: unkeyedWrite}, nil)
}

// AddMember is Join, under the name the other membership calls share.
func (c *Client) AddMember(ctx context.Context, req kv.JoinRequest) error { return c.Join(ctx, req) }

// RemoveMember removes member id from the cluster (DELETE
// /v1/cluster/nodes/{id}); the leader hands leadership over first when id
// is the leader. It fails with kv.ErrWouldLoseQuorum (409), nothing
// changed, when the voters left would be fewer live ones than a quorum of
// the new configuration, unless opts.Force; kv.ErrNotFound when id is not
// a member. The answer's Warning says when the voters left are an even
// number. Resent only when certainly not applied.
func (c *Client) RemoveMember(ctx context.Context, id string, opts kv.RemoveOptions) (kv.MemberChange, error) {
	var q query
	if opts.Force {
		q.set("force", "true")
	}
	var out kv.MemberChange
	err := c.call(ctx, request{method: http.MethodDelete, path: "/v1/cluster/nodes/" + url.PathEscape(id), query: q, class: unkeyedWrite}, &out)
	return out, err
}

// PromoteMember makes the non-voter id a voter now (POST
// /v1/cluster/nodes/{id}/promote), without waiting for the leader to
// promote it once caught up; a voter is left as it is. kv.ErrNotFound when
// id is not a member. Resent only when certainly not applied.
func (c *Client) PromoteMember(ctx context.Context, id string) (kv.MemberChange, error) {
	var out kv.MemberChange
	err := c.call(ctx, request{method: http.MethodPost, path: "/v1/cluster/nodes/" + url.PathEscape(id) + "/promote", class: unkeyedWrite}, &out)
	return out, err
}

// TransferLeadership asks the leader to hand leadership to voter id, or to
// the voter raft picks when id is empty (POST /v1/cluster/transfer-leader).
func (c *Client) TransferLeadership(ctx context.Context, id string) error {
	var q query
	if id != "" {
		q.set("id", id)
	}
	return c.call(ctx, request{method: http.MethodPost, path: "/v1/cluster/transfer-leader", query: q, class: unkeyedWrite}, nil)
}

// Txn applies a transaction atomically (POST /v1/txn): if every compare
// holds the success ops run, else the failure ops. opts may make it
// idempotent or fenced (kv.WithFence: ?lock=&token=, 412 when the token
// does not hold the lock); a condition is refused (the compares are its
// conditions), and so are a lease and a ttl (a put op carries its own
// lease, TxnOp.Lease).
func (c *Client) Txn(ctx context.Context, t kv.Txn, opts ...kv.WriteOption) (kv.TxnResult, error) {
	o := kv.NewWriteOptions(opts...)
	if !o.Condition.IsZero() {
		return kv.TxnResult{}, fmt.Errorf("%w: conditions guard one key; a transaction takes none", kv.ErrBadRequest)
	}
	q, err := writeQuery(o, false)
	if err != nil {
		return kv.TxnResult{}, err
	}
	body, err := json.Marshal(kv.EncodeTxn(t))
	if err != nil {
		return kv.TxnResult{}, fmt.Errorf("txn: %w", err)
	}
	var resp kv.TxnResponse
	h, class := writeHeader(ctx, o)
	h.Set("Content-Type", "application/json")
	if err := c.call(ctx, request{method: http.MethodPost, path: "/v1/txn", query: q, header: h, body: body, class: class}, &resp); err != nil {
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
// becomes kv.ErrorFromBody(body), a *kv.WireError that errors.Is matches
// against the kv sentinel of its code, with the response's ETag header kept
// in its ETag field (a compacted error is a *kv.CompactedError). A body that is not a JSON error becomes a WireError with
// code kv.CodeInternal whose message carries the status. DecodeError reads
// the body but does not close it.
func DecodeError(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var er kv.ErrorResponse
	if err == nil && json.Unmarshal(body, &er) == nil && er.Error.Code != "" {
		err = kv.ErrorFromBody(er.Error)
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

// withToken is a copy of h that carries token (when set) as a bearer
// credential.
func withToken(h http.Header, token string) http.Header {
	h = h.Clone()
	if token == "" {
		return h
	}
	if h == nil {
		h = http.Header{}
	}
	h.Set("Authorization", "Bearer "+token)
	return h
}
