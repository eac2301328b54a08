package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// class is what a request's resending depends on.
type class int

const (
	// read: a GET, which changes nothing; resent after any failure.
	read class = iota
	// keyedWrite: a write with an idempotency key; resent after any
	// failure, since the state machine applies one key at most once.
	keyedWrite
	// unkeyedWrite: a write without one; resent only when it was
	// certainly not applied.
	unkeyedWrite
	// repeatableWrite: a write whose repetition has the effect of one (a
	// lease keepalive restarts the lease's TTL however often it applies):
	// resent after any failure, as a read is, and no answer of it is
	// ever an unknown outcome.
	repeatableWrite
	// waitWrite: a write that waits on the server until it can apply,
	// bounded by the ?wait it sends (a lock, a campaign): as
	// unkeyedWrite, except that 504 timeout is the wait running out (the
	// server removed the waiter), the call's answer; and, like every
	// unkeyed write, no attempt timeout cuts it short.
	waitWrite
)

func (c class) String() string {
	return [...]string{"read", "write with an idempotency key", "write without an idempotency key",
		"repeatable write", "write that waits"}[c]
}

// retriable reports whether a request of class c is resent after any
// failure, its answer lost or not.
func (c class) retriable() bool { return c == read || c == repeatableWrite }

// unbounded reports whether a request of class c escapes the attempt
// timeout: a write that may apply and cannot be resent, whose answer only
// its context may give up on.
func (c class) unbounded() bool { return c == unkeyedWrite || c == waitWrite }

// request is one API call, independent of the endpoint it is sent to.
type request struct {
	method string
	path   string // escaped
	query  query
	header http.Header
	body   []byte
	class  class
	// wait: a kv read, which tells the server how long it may wait (for
	// min_index, a read index, the leader's readiness) with ?wait, set
	// per attempt to end before the attempt does.
	wait bool
	// blockUntil, for a blocking read (?wait_index), is when its wait for
	// a change ends (ReadOptions.WaitTime after the call began): each
	// attempt sends what is left of it as ?wait, and is bounded by that
	// plus the attempt timeout. For a waitWrite it is when its wait for
	// the lock ends: each attempt sends what is left of it as ?wait.
	blockUntil time.Time
	block      time.Duration // set by attempt: this attempt's ?wait
}

// blockFor is the ?wait of a blocking read's attempt under ctx: what is
// left of its wait for a change, no more than nine tenths of what is left
// of ctx (so the server answers, with the current state, before the
// caller gives up), between 1ms and the 5m the server accepts.
func (r request) blockFor(ctx context.Context) time.Duration {
	d := time.Until(r.blockUntil)
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)*9/10)
	}
	d = max(d, time.Millisecond)
	if r.class == waitWrite {
		return d // a lock's wait is the caller's to bound
	}
	return min(d, maxServerWait)
}

// maxServerWait is the longest ?wait the server accepts.
const maxServerWait = 5 * time.Minute

// query builds a raw query string; flag adds a bare parameter (?prefix).
type query []string

func (q *query) set(name, value string) { *q = append(*q, name+"="+url.QueryEscape(value)) }
func (q *query) flag(name string)       { *q = append(*q, name) }

// read adds the read options. ?wait is added per attempt (request.wait,
// request.blockUntil).
func (q *query) read(opts kv.ReadOptions) {
	if opts.Consistency != "" {
		q.set("consistency", string(opts.Consistency))
	}
	if opts.MaxStale > 0 {
		q.set("max_stale", opts.MaxStale.String())
	}
	if opts.MinIndex > 0 {
		q.set("min_index", strconv.FormatUint(opts.MinIndex, 10))
	}
	if opts.WaitIndex > 0 {
		q.set("wait_index", strconv.FormatUint(opts.WaitIndex, 10))
	}
}

// readRequest is a kv read (GET path?q) with opts: it asks the server to
// wait (?wait) within each attempt and, with opts.WaitIndex, is a
// blocking read whose wait for a change ends opts.WaitTime (default
// kv.DefaultBlockingWait) from now.
func readRequest(path string, q query, opts kv.ReadOptions) request {
	q.read(opts)
	req := request{method: http.MethodGet, path: path, query: q, wait: true}
	if opts.WaitIndex > 0 {
		req.blockUntil = time.Now().Add(orDefault(opts.WaitTime, kv.DefaultBlockingWait))
	}
	return req
}

// writeHeader carries a write's options: its condition (If-Match,
// If-None-Match) and its idempotency key: the option's, else the
// deprecated one in ctx, else, unless the caller opted out, a new random
// one (128 bits from crypto/rand), the same for every attempt of the call.
func writeHeader(ctx context.Context, o kv.WriteOptions) (http.Header, class) {
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
	if key == "" && !o.NoIdempotencyKey {
		key = "rkvc-" + rand.Text()
	}
	if key == "" {
		return h, unkeyedWrite
	}
	h.Set("Idempotency-Key", key)
	return h, keyedWrite
}

// tracesConns reports whether the client's transport reports the
// connections it hands out (httptrace's GotConn): net/http's own does; a
// RoundTripper of the caller's may not, and then an attempt without one
// cannot be taken for one that sent nothing.
func (c *Client) tracesConns() bool {
	switch c.hc.Transport.(type) {
	case nil, *http.Transport:
		return true
	}
	return false
}

// verdict is what one attempt's answer means for the call.
type verdict int

const (
	// done: return the attempt's result (nil error: success).
	done verdict = iota
	// safe: the request certainly did not take effect (or it is a read):
	// resending it is safe.
	safe
	// maybe: a write that may have been applied.
	maybe
)

// judge is the retry table: what an attempt's answer means for a request
// of class cl. err is the transport error (nil when an answer came), status
// and code (kv.Code of the decoded error) describe the answer.
func judge(cl class, err error, status int, code string) verdict {
	switch {
	case err != nil && kv.NotSent(err):
		return safe // the connection was never made
	case err != nil && cl.retriable():
		return safe
	case err != nil:
		return maybe // sent, and the answer was lost
	case status >= 200 && status <= 299:
		return done
	case cl.retriable() && status >= 500:
		return safe
	case cl == waitWrite && status == http.StatusGatewayTimeout && code == "timeout":
		return done // the wait ran out: the server removed the waiter
	case status == http.StatusServiceUnavailable && (code == "no_leader" || code == "not_leader" || code == "shutting_down"):
		return safe // refused before reaching raft
	case status == http.StatusGatewayTimeout && code == "timeout":
		return safe // given up while queued: not applied
	case status >= 500:
		return maybe // 504 outcome_unknown, 500, and any other 5xx
	}
	return done // 4xx: the server's answer
}

// resolves reports whether a write's error answer is the state machine's
// own verdict on the request: after an unknown outcome it says what became
// of the write (a replay of the first result, or a refusal that means the
// key never applied this request).
func resolves(err error) bool {
	return errors.Is(err, kv.ErrPreconditionFailed) || errors.Is(err, kv.ErrIdempotencyKeyReused)
}

// stream is the out of a call whose 2xx answer is read as it comes (a
// watch): attempt hands it the open response, unread, and the function
// that ends it (cancel, then close the body). The attempt timeout bounds
// only the wait for the response's header.
type stream struct {
	base   string
	resp   *http.Response
	cancel context.CancelFunc
}

// close ends the stream and releases its connection.
func (s *stream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// answer is one attempt's result.
type answer struct {
	verdict verdict
	err     error
	// avoid is how long to prefer other endpoints over this one after a
	// failure; retryAfter how long the endpoint asked not to be contacted
	// (its Retry-After, at most MaxBackoff).
	avoid, retryAfter time.Duration
	// tlsRefused: the TLS handshake failed on a certificate (tlsRefused):
	// a configuration error, which a retry to the same endpoint repeats.
	tlsRefused bool
}

// call sends req, retrying as the package doc's "Failover" says, and
// decodes a 2xx JSON answer into out (unless out is nil; a *stream gets
// the response itself, which the caller must close); any other final
// status becomes DecodeError's error.
func (c *Client) call(ctx context.Context, req request, out any) error {
	c.maybeRefresh(false)
	var (
		last       error // the last attempt's error
		unknown    error // the first maybe-applied attempt's error, until resolved
		notSentAll = true
		prev       string              // the endpoint of the last attempt
		refused    map[string]struct{} // the endpoints whose TLS handshake failed
	)
	for attempt := 1; ; attempt++ {
		if c.maxAttempts > 0 && attempt > c.maxAttempts {
			return failure(nil, last, unknown, notSentAll, attempt-1)
		}
		base, retryAfter := c.eps.pick(prev)
		if attempt > 1 {
			pause := max(c.backoff(attempt-1), min(retryAfter, c.maxBackoff))
			if err := sleep(ctx, pause); err != nil {
				return failure(err, last, unknown, notSentAll, attempt-1)
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		a := c.attempt(ctx, base, req, out)
		if last != nil && a.err != nil && ctx.Err() != nil && (kv.NotSent(a.err) || req.class.retriable()) {
			// The caller's context ended this attempt before it reached a
			// server, or before a read's answer (which changes nothing):
			// as if it had ended in the pause before it, so the call's
			// error is the last answer's (a read's min_index timeout, say).
			return failure(ctx.Err(), last, unknown, notSentAll, attempt-1)
		}
		switch {
		case a.verdict == done && a.err == nil:
			c.eps.answered(base)
			return nil
		case a.verdict == done:
			c.eps.answered(base)
			if unknown != nil && !resolves(a.err) {
				return failure(nil, a.err, unknown, false, attempt)
			}
			return a.err
		case a.verdict == maybe && req.class.unbounded():
			c.eps.failed(base, a.avoid, a.retryAfter)
			return outcomeUnknown(a.err)
		case a.verdict == maybe && unknown == nil:
			unknown = a.err
		}
		last = a.err
		notSentAll = notSentAll && kv.NotSent(a.err)
		prev = base
		c.eps.failed(base, a.avoid, a.retryAfter)
		if a.tlsRefused {
			// A configuration error: once every endpoint known has
			// refused, retrying would only hide it.
			if refused == nil {
				refused = make(map[string]struct{})
			}
			refused[base] = struct{}{}
			if len(refused) >= c.eps.len() {
				return failure(nil, last, unknown, notSentAll, attempt)
			}
		}
		c.maybeRefresh(true)
		if err := ctx.Err(); err != nil {
			return failure(err, last, unknown, notSentAll, attempt)
		}
	}
}

// attempt sends req to one endpoint.
func (c *Client) attempt(ctx context.Context, base string, req request, out any) answer {
	timeout := c.attemptTimeout
	if !req.blockUntil.IsZero() {
		req.block = req.blockFor(ctx)
		timeout += req.block // the wait for a change, then a read
	}
	st, isStream := out.(*stream)
	actx, cancel := ctx, context.CancelFunc(func() {})
	stopTimer := func() bool { return true }
	bounded := c.attemptTimeout > 0 && !req.class.unbounded()
	switch {
	case isStream:
		// A stream lasts as long as its reader wants (st.cancel ends it):
		// the bound covers the wait for its header only.
		actx, cancel = context.WithCancel(ctx)
		if bounded {
			stopTimer = time.AfterFunc(timeout, cancel).Stop
		}
	case bounded:
		actx, cancel = context.WithTimeout(ctx, timeout)
	}
	handedOver := false
	defer func() {
		if !handedOver {
			stopTimer()
			cancel()
		}
	}()
	// Whether a connection was ever handed to the request: without one,
	// nothing was sent, however the attempt failed (a deadline that ends
	// the dial reads as the context's error, not as a dial error).
	var gotConn atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) }})
	hr, err := c.newHTTPRequest(actx, base, req)
	if err != nil {
		return answer{verdict: done, err: err}
	}
	resp, err := c.hc.Do(hr)
	if err != nil && !gotConn.Load() && !kv.NotSent(err) && c.tracesConns() {
		err = &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	if err != nil && tlsRefused(err) {
		if !kv.NotSent(err) {
			// The node's TLS layer refused the client's certificate after
			// the client had finished its side of the handshake (TLS 1.3)
			// and sent the request: no byte of it reached the HTTP server.
			err = &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
		return answer{verdict: safe, err: fmt.Errorf("TLS handshake with %s failed: %w", base, err),
			avoid: c.maxBackoff, tlsRefused: true}
	}
	if err == nil && isStream && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		if stopTimer() {
			st.base, st.resp, st.cancel = base, resp, cancel
			handedOver = true
			return answer{verdict: done}
		}
		// The bound ran out just as the header came: the body is cut off.
		_ = resp.Body.Close()
		err = fmt.Errorf("%w (the header came as the attempt ran out)", context.Canceled)
	}
	if err != nil {
		a := answer{verdict: judge(req.class, err, 0, ""), err: err, avoid: c.maxBackoff}
		if ctx.Err() == nil && actx.Err() != nil {
			// Our own bound, not the caller's: say so without wrapping
			// context.DeadlineExceeded, which would read as the caller's
			// (a connection that was never made stays kv.NotSent).
			a.avoid = max(a.avoid, c.attemptTimeout)
			if !kv.NotSent(err) {
				a.err = fmt.Errorf("%s %s: no answer within the attempt timeout (%s): %v", req.method, base, timeout, err)
			}
		}
		return a
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // let the connection be reused
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := DecodeError(resp)
		v := judge(req.class, nil, resp.StatusCode, kv.Code(err))
		a := answer{verdict: v, err: err}
		if v != done {
			a.avoid, a.retryAfter = c.maxBackoff, retryAfter(resp.Header, c.maxBackoff)
		}
		return a
	}
	if out == nil {
		return answer{verdict: done}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		err = fmt.Errorf("%s %s: reading the response: %w", req.method, req.path, err)
		switch req.class {
		case read, repeatableWrite:
			return answer{verdict: safe, err: err, avoid: c.maxBackoff}
		case keyedWrite:
			// Applied, answer lost: a resend replays the first result.
			return answer{verdict: maybe, err: err, avoid: c.maxBackoff}
		}
		return answer{verdict: done, err: err}
	}
	return answer{verdict: done}
}

// retryAfter is how long an error answer asks the client to wait before
// it contacts the endpoint again: its Retry-After (seconds or an HTTP
// date), at most limit; 0 without one.
func retryAfter(h http.Header, limit time.Duration) time.Duration {
	v := h.Get("Retry-After")
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, limit)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), limit)
	}
	return 0
}

// tlsRefused reports whether err is a TLS handshake that failed on a
// certificate: the client could not verify the node's (an unknown
// authority, another name, expired: *tls.CertificateVerificationError),
// the node refused the client's (an alert: bad, unknown, expired or
// missing certificate, unknown CA, no common version or cipher), or the
// node does not speak TLS at all (http.ErrSchemeMismatch). Nothing reached
// the HTTP server, and every retry fails the same way until the
// certificates or the configuration change.
func tlsRefused(err error) bool {
	var (
		verify *tls.CertificateVerificationError
		ua     x509.UnknownAuthorityError
		host   x509.HostnameError
		inv    x509.CertificateInvalidError
	)
	if errors.As(err, &verify) || errors.As(err, &ua) || errors.As(err, &host) || errors.As(err, &inv) ||
		errors.Is(err, http.ErrSchemeMismatch) {
		return true
	}
	// crypto/tls reports the peer's alert as a *net.OpError "remote error"
	// around an unexported type: its text is all there is to match. It
	// may sit under another *net.OpError (attempt's "dial"), which
	// errors.As would stop at.
	for e := err; e != nil; e = errors.Unwrap(e) {
		if op, ok := e.(*net.OpError); ok && op.Op == "remote error" && op.Err != nil {
			switch strings.TrimPrefix(op.Err.Error(), "tls: ") {
			case "handshake failure", "bad certificate", "unsupported certificate", "revoked certificate",
				"expired certificate", "unknown certificate", "unknown certificate authority", "access denied",
				"protocol version not supported", "insufficient security level", "certificate required":
				return true
			}
			return false
		}
	}
	return false
}

// outcomeUnknown makes err wrap kv.ErrOutcomeUnknown.
func outcomeUnknown(err error) error {
	if errors.Is(err, kv.ErrOutcomeUnknown) {
		return err
	}
	return fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, err)
}

// failure is a call's error when it stops retrying: ctxErr is the caller's
// context error when that is why (nil when attempts ran out or an answer
// came), last the last attempt's error, unknown the first attempt whose
// write may have been applied. An unresolved unknown outcome decides the
// error: it wraps kv.ErrOutcomeUnknown, and a later "not applied" answer is
// quoted, never wrapped, since it says nothing of the earlier attempt.
func failure(ctxErr, last, unknown error, notSentAll bool, attempts int) error {
	if last == nil {
		return ctxErr
	}
	if unknown != nil {
		err := outcomeUnknown(unknown)
		if last != unknown {
			err = fmt.Errorf("%w; %d attempts with the same idempotency key did not learn the outcome, the last: %v", err, attempts, last)
		}
		if ctxErr != nil {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		return err
	}
	err := last
	if notSentAll {
		err = fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if ctxErr != nil {
		err = fmt.Errorf("%w after %d attempts, the last: %w", ctxErr, attempts, err)
	}
	return err
}

// backoff is the jittered pause before the nth retry of a call (n >= 1).
func (c *Client) backoff(n int) time.Duration {
	d := c.minBackoff
	for i := 1; i < n && d < c.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.maxBackoff)
	if d <= 0 {
		return 0
	}
	return d - mrand.N(d/2+1)
}

// sleep waits d, or until ctx ends. When d would outlast ctx's deadline
// it returns context.DeadlineExceeded at once: no time is left for another
// attempt.
func sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.DeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *Client) newHTTPRequest(ctx context.Context, base string, req request) (*http.Request, error) {
	q := req.query
	if req.block > 0 {
		q = append(q[:len(q):len(q)], "wait="+url.QueryEscape(req.block.String()))
	} else if req.wait {
		if dl, ok := ctx.Deadline(); ok {
			// Nine tenths of what is left, so the server's answer (a
			// timeout with the applied index, say) arrives before the
			// attempt or the caller gives up.
			q = append(q[:len(q):len(q)], "wait="+url.QueryEscape(min(max(time.Until(dl)*9/10, time.Millisecond), maxServerWait).String()))
		}
	}
	u := base + req.path
	if len(q) > 0 {
		u += "?" + strings.Join(q, "&")
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
