package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The request parsers. Each turns one part of a request (query, path,
// headers, body) into what the Backend takes, or fails with an error
// wrapping kv.ErrBadRequest (kv.ErrInvalidKey for a key, kv.ErrTooLarge for
// a body over its limit), so that bad input is a 4xx with a stable code.

// DefaultReadWait bounds a read (?wait=) when the request does not say.
const DefaultReadWait = 5 * time.Second

// maxReadWait is the longest ?wait= accepted.
const maxReadWait = 5 * time.Minute

// params checks a request's query against the parameters a route takes.
type params struct{ url.Values }

// queryOf parses r's query and refuses a parameter not in allowed, or one
// given more than once.
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

// duration reads a Go duration of at least 0; absent is 0.
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

// readOptions reads consistency, max_stale, min_index, wait_index and
// wait, and returns the bound of the whole request. Without wait_index
// (or wait_index=0) ?wait bounds the whole read (DefaultReadWait when
// absent). With it the read is a blocking read: ?wait bounds the wait for
// a change (ReadOptions.WaitTime, kv.DefaultBlockingWait when absent) and
// the request is bounded by that wait plus DefaultReadWait for the read.
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
	if p.Has("wait_index") {
		if ro.WaitIndex, err = strconv.ParseUint(p.Get("wait_index"), 10, 64); err != nil {
			return kv.ReadOptions{}, 0, fmt.Errorf("%w: parameter \"wait_index\" must be a whole number, not %q", kv.ErrBadRequest, p.Get("wait_index"))
		}
	}
	wait, err := p.wait()
	if err != nil {
		return kv.ReadOptions{}, 0, err
	}
	if ro.WaitIndex != 0 {
		// A blocking read: ?wait bounds the wait for a change, and the
		// read that follows keeps the bound of any read.
		ro.WaitTime = wait
		if ro.WaitTime == 0 {
			ro.WaitTime = kv.DefaultBlockingWait
		}
		return ro, ro.WaitTime + DefaultReadWait, nil
	}
	if wait == 0 {
		wait = DefaultReadWait
	}
	return ro, wait, nil
}

// wait reads ?wait, a duration from 1ms to maxReadWait; 0 when absent. On
// a read it bounds the whole read (DefaultReadWait when absent); on a
// write, the whole write: waiting for a leader, in the queues, in raft
// (no bound of its own when absent).
func (p params) wait() (time.Duration, error) {
	if !p.Has("wait") {
		return 0, nil
	}
	wait, err := p.duration("wait")
	if err != nil || wait < time.Millisecond || wait > maxReadWait {
		return 0, fmt.Errorf("%w: parameter \"wait\" must be a duration from 1ms to %s, not %q", kv.ErrBadRequest, maxReadWait, p.Get("wait"))
	}
	return wait, nil
}

// readParams are the parameters GET /v1/kv/ takes, for one key and lists.
var readParams = []string{"prefix", "format", "consistency", "max_stale", "min_index", "wait_index", "wait", "limit", "after", "keys_only"}

// oneKeyRead reads the key and format of a GET of one key (p has no
// ?prefix): "raw" or "json".
func oneKeyRead(r *http.Request, p params) (key []byte, format string, err error) {
	for _, name := range []string{"limit", "after", "keys_only"} {
		if p.Has(name) {
			return nil, "", fmt.Errorf("%w: parameter %q needs ?prefix", kv.ErrBadRequest, name)
		}
	}
	format = p.Get("format")
	switch format {
	case "":
		format = "raw"
	case "json", "raw":
	default:
		return nil, "", fmt.Errorf("%w: parameter \"format\" must be json or raw, not %q", kv.ErrBadRequest, format)
	}
	if key, err = keyOf(r, false); err != nil {
		return nil, "", err
	}
	return key, format, nil
}

// listOptions reads a listing's prefix (the key path, may be empty),
// limit, after and keys_only; ro are its read options.
func listOptions(r *http.Request, p params, ro kv.ReadOptions) (kv.ListOptions, error) {
	if p.Has("format") && p.Get("format") != "json" {
		return kv.ListOptions{}, fmt.Errorf("%w: a listing is always JSON; drop \"format\"", kv.ErrBadRequest)
	}
	prefix, err := keyOf(r, true)
	if err != nil {
		return kv.ListOptions{}, err
	}
	opts := kv.ListOptions{ReadOptions: ro, Prefix: prefix, Limit: kv.DefaultListLimit}
	if p.Has("limit") {
		n, err := strconv.Atoi(p.Get("limit"))
		if err != nil || n < 1 || n > kv.MaxListLimit {
			return kv.ListOptions{}, fmt.Errorf("%w: parameter \"limit\" must be a whole number from 1 to %d, not %q", kv.ErrBadRequest, kv.MaxListLimit, p.Get("limit"))
		}
		opts.Limit = n
	}
	if p.Has("after") {
		opts.After = []byte(p.Get("after"))
	}
	if opts.KeysOnly, err = p.flag("keys_only"); err != nil {
		return kv.ListOptions{}, err
	}
	return opts, nil
}

// keyOf extracts and validates the key of a /v1/kv/ request; prefix
// requests may name the empty prefix.
func keyOf(r *http.Request, allowEmpty bool) ([]byte, error) {
	return keyUnder(r, kvPrefix, allowEmpty)
}

// keyUnder extracts and validates the key of a request on a route that
// takes the escaped path after routePrefix as a key (kvPrefix,
// watchPrefix); prefix requests may name the empty prefix.
func keyUnder(r *http.Request, routePrefix string, allowEmpty bool) ([]byte, error) {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), routePrefix)
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

// watchParams are the parameters GET /v1/watch/ takes.
var watchParams = []string{"prefix", "from_index", "prev_value"}

// headerLastEventID is the header an EventSource sends when it reconnects:
// the id of the last event it received (a watch stream's index).
const headerLastEventID = "Last-Event-ID"

// watchOptions reads a watch: its key, or with ?prefix its prefix (may be
// empty: every key), from_index, prev_value. A from_index of 0 is the
// same as none; without one, a Last-Event-ID of N (an EventSource
// resuming) watches from N+1.
func watchOptions(r *http.Request) (kv.WatchOptions, error) {
	p, err := queryOf(r, watchParams...)
	if err != nil {
		return kv.WatchOptions{}, err
	}
	var o kv.WatchOptions
	if o.Prefix, err = p.flag("prefix"); err != nil {
		return kv.WatchOptions{}, err
	}
	if o.PrevValue, err = p.flag("prev_value"); err != nil {
		return kv.WatchOptions{}, err
	}
	if p.Has("from_index") {
		if o.FromIndex, err = strconv.ParseUint(p.Get("from_index"), 10, 64); err != nil {
			return kv.WatchOptions{}, fmt.Errorf("%w: parameter \"from_index\" must be a whole number, not %q", kv.ErrBadRequest, p.Get("from_index"))
		}
	}
	if v := strings.TrimSpace(r.Header.Get(headerLastEventID)); o.FromIndex == 0 && v != "" {
		last, err := strconv.ParseUint(v, 10, 64)
		if err != nil || last == math.MaxUint64 {
			return kv.WatchOptions{}, fmt.Errorf("%w: %s must be the index of an event (a whole number), not %q", kv.ErrBadRequest, headerLastEventID, v)
		}
		o.FromIndex = last + 1
	}
	if o.Key, err = keyUnder(r, watchPrefix, o.Prefix); err != nil {
		return kv.WatchOptions{}, err
	}
	return o, o.Validate()
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

// idempotencyKey returns the request's Idempotency-Key ("" for none),
// checked.
func idempotencyKey(r *http.Request) (string, error) {
	key := r.Header.Get(HeaderIdempotencyKey)
	if err := kv.ValidateIdempotencyKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// keyWrite is what the PUT and DELETE handlers parse before anything else.
type keyWrite struct {
	p        params
	key      []byte
	opts     kv.WriteOptions // condition, idempotency key, fence, lease or TTL
	isPrefix bool
	wait     time.Duration // ?wait: bounds the whole write; 0 for none
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
	// ?lock and ?token, ?lease and ?ttl: only where allowed names them
	// (queryOf refused them otherwise).
	if kw.opts.Fence, err = kw.p.fence(); err != nil {
		return kw, err
	}
	if kw.isPrefix && !kw.opts.Fence.IsZero() {
		return kw, fmt.Errorf("%w: \"lock\" guards a put or delete of one key, not ?prefix", kv.ErrBadRequest)
	}
	if kw.opts.Lease, kw.opts.TTL, err = kw.p.lease(); err != nil {
		return kw, err
	}
	if kw.wait, err = kw.p.wait(); err != nil {
		return kw, err
	}
	kw.opts.IdempotencyKey, err = idempotencyKey(r)
	return kw, err
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

// The parsers of leases, locks and elections (lease.go, lock.go, and the
// ?lease, ?ttl, ?lock and ?token of the kv routes).

// leaseBodyLimit bounds the JSON bodies of the lease and lock routes
// (a TTL, a lease id).
const leaseBodyLimit = 4 << 10

// leaseIDOf reads the {id} of a lease route.
func leaseIDOf(r *http.Request) (kv.LeaseID, error) {
	return kv.ParseLeaseID(r.PathValue("id"))
}

// checkTTL checks what the handler can of a TTL: positive, at most
// kv.MaxLeaseTTL, whole milliseconds. The lower bound (twice the election
// timeout) is the node's to check.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl must be a positive duration such as \"10s\" (at most %s), not %s", kv.ErrBadRequest, kv.MaxLeaseTTL, ttl)
	}
	return kv.ValidateTTL(ttl, 0)
}

// lockNameOf reads and checks the {name} of a lock or election route.
func lockNameOf(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := kv.ValidateLockName(name); err != nil {
		return "", fmt.Errorf("lock or election name: %w", err)
	}
	return name, nil
}

// token reads a fencing token (?token=T): a positive whole number;
// required.
func (p params) token() (uint64, error) {
	if !p.Has("token") {
		return 0, fmt.Errorf("%w: parameter \"token\" (the fencing token the lock or election answered) is required", kv.ErrBadRequest)
	}
	t, err := strconv.ParseUint(p.Get("token"), 10, 64)
	if err != nil || t == 0 {
		return 0, fmt.Errorf("%w: parameter \"token\" must be a positive whole number, not %q", kv.ErrBadRequest, p.Get("token"))
	}
	return t, nil
}

// fence reads a write's ?lock=NAME&token=T: both or neither.
func (p params) fence() (kv.Fence, error) {
	if !p.Has("lock") && !p.Has("token") {
		return kv.Fence{}, nil
	}
	if !p.Has("lock") {
		return kv.Fence{}, fmt.Errorf("%w: parameter \"token\" needs \"lock\", the lock's name", kv.ErrBadRequest)
	}
	t, err := p.token()
	if err != nil {
		return kv.Fence{}, err
	}
	f := kv.Fence{Lock: p.Get("lock"), Token: t}
	if err := f.Validate(); err != nil {
		return kv.Fence{}, fmt.Errorf("parameter \"lock\": %w", err)
	}
	return f, nil
}

// lease reads a put's ?lease=ID or ?ttl=D (not both).
func (p params) lease() (kv.LeaseID, time.Duration, error) {
	if p.Has("lease") && p.Has("ttl") {
		return 0, 0, fmt.Errorf("%w: a put takes \"lease\" (an existing lease) or \"ttl\" (a new one), not both", kv.ErrBadRequest)
	}
	if p.Has("lease") {
		id, err := kv.ParseLeaseID(p.Get("lease"))
		if err != nil {
			return 0, 0, fmt.Errorf("parameter \"lease\": %w", err)
		}
		return id, 0, nil
	}
	if p.Has("ttl") {
		ttl, err := kv.ParseTTL(p.Get("ttl"))
		if err == nil {
			err = checkTTL(ttl)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("parameter \"ttl\": %w", err)
		}
		return 0, ttl, nil
	}
	return 0, 0, nil
}

// decodeJSON decodes body, one JSON object, into a T: unknown fields and
// trailing data are refused (kv.ErrBadRequest); what names the body in the
// message.
func decodeJSON[T any](body []byte, what string) (T, error) {
	var v T
	if len(bytes.TrimSpace(body)) == 0 {
		return v, fmt.Errorf("%w: %s body is empty: it is a JSON object", kv.ErrBadRequest, what)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("%w: %s body: %w", kv.ErrBadRequest, what, err)
	}
	if dec.More() {
		return v, fmt.Errorf("%w: %s body: trailing data", kv.ErrBadRequest, what)
	}
	return v, nil
}

// leaseOn is the part of a lock's or a candidate's body that says which
// lease it hangs on: {"ttl":"10s"} or {"lease":"7"}.
type leaseOn struct {
	TTL   *kv.Duration `json:"ttl"`
	Lease *kv.LeaseID  `json:"lease"`
}

// lockOptions checks the lease part of a body and adds wait.
func (l leaseOn) lockOptions(wait time.Duration) (kv.LockOptions, error) {
	o := kv.LockOptions{Wait: wait}
	if l.Lease != nil {
		o.Lease = *l.Lease
	}
	if l.TTL != nil {
		o.TTL = time.Duration(*l.TTL)
		if err := checkTTL(o.TTL); err != nil {
			return kv.LockOptions{}, err
		}
	}
	if err := o.Validate(); err != nil {
		return kv.LockOptions{}, fmt.Errorf("%w (body {\"ttl\":\"10s\"} or {\"lease\":\"7\"})", err)
	}
	return o, nil
}
