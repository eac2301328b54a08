package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// NewForwardClient returns the pooled keep-alive client a follower uses to
// reach the leader: many idle connections per host, since every concurrent
// forwarded request holds one.
func NewForwardClient() *http.Client {
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		// Redirects are answers to pass on, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// redirect answers a write on a follower with a 307 to the leader when the
// request asks for it (?redirect), and refuses a write that a follower
// already forwarded here. It reports whether it answered; if not, the
// Backend takes the write to the leader.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, p params) bool {
	if h.b.IsLeader() {
		return false
	}
	if by := r.Header.Get(HeaderForwardedBy); by != "" {
		writeError(w, fmt.Errorf("%w: request forwarded by %s reached %s, which is not the leader", kv.ErrNoLeader, by, h.b.ID()))
		return true
	}
	redirect, err := p.flag("redirect")
	if err != nil {
		writeError(w, err)
		return true
	}
	if !redirect {
		return false
	}
	leader := h.b.LeaderAPIAddr()
	if leader == "" {
		writeError(w, fmt.Errorf("%w: no leader to redirect to", kv.ErrNoLeader))
		return true
	}
	// 307 keeps the method and body; 301/302 would turn a PUT into a GET.
	w.Header().Set("Location", "http://"+leader+r.URL.RequestURI())
	writeJSON(w, http.StatusTemporaryRedirect, map[string]string{"leader": leader})
	return true
}

// applyBodyLimit bounds a forwarded batch: the batcher's 4 MiB, or one
// command as large as the largest transaction a client may send.
func (h *Handler) applyBodyLimit() int64 { return 8<<20 + h.txnBodyLimit() }

// postApply is the leader's side of a follower's batch of writes.
func (h *Handler) postApply(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, h.applyBodyLimit())
	if err != nil {
		writeError(w, err)
		return
	}
	out, err := h.b.ApplyForwarded(r.Context(), body)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", ApplyContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// forward relays r to the leader and copies the answer back. A request
// that was itself forwarded is not forwarded again: this node is not the
// leader either, so the client sees no_leader and may retry.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, body []byte, write bool) {
	if by := r.Header.Get(HeaderForwardedBy); by != "" {
		writeError(w, fmt.Errorf("%w: request forwarded by %s reached %s, which is not the leader", kv.ErrNoLeader, by, h.b.ID()))
		return
	}
	leader := h.b.LeaderAPIAddr()
	if leader == "" {
		writeError(w, fmt.Errorf("%w: no leader known", kv.ErrNoLeader))
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+leader+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		writeError(w, fmt.Errorf("forward: %w", err))
		return
	}
	for _, name := range []string{"Content-Type", "If-Match", "If-None-Match", "Accept", HeaderIdempotencyKey} {
		if v := r.Header.Values(name); len(v) > 0 {
			out.Header[name] = v
		}
	}
	out.Header.Set(HeaderForwardedBy, h.b.ID())
	if h.m != nil {
		h.m.forwarded.Inc()
	}
	resp, err := h.fwd.Do(out)
	if err != nil {
		writeError(w, forwardError(err, write, leader))
		return
	}
	defer resp.Body.Close()
	for name, v := range resp.Header {
		w.Header()[name] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// forwardError says what a failed forward means for the client: a request
// that never reached the leader was certainly not applied; one that did may
// have been.
func forwardError(err error, write bool, leader string) error {
	var op *net.OpError
	notSent := errors.As(err, &op) && op.Op == "dial"
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if write && !notSent {
			return fmt.Errorf("%w: forwarding to the leader at %s: %w", kv.ErrOutcomeUnknown, leader, err)
		}
		return fmt.Errorf("%w: forwarding to the leader at %s: %w", kv.ErrTimeout, leader, err)
	case notSent || !write:
		return fmt.Errorf("%w: leader at %s unreachable: %w", kv.ErrNoLeader, leader, err)
	default:
		return fmt.Errorf("%w: forwarding to the leader at %s: %w", kv.ErrOutcomeUnknown, leader, err)
	}
}

func decodeJoin(body []byte) (kv.JoinRequest, error) {
	var req kv.JoinRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: join body: %w", kv.ErrBadRequest, err)
	}
	if dec.More() {
		return req, fmt.Errorf("%w: join body: trailing data", kv.ErrBadRequest)
	}
	if req.ID == "" || req.RaftAddr == "" {
		return req, fmt.Errorf("%w: join body needs id and raft_addr", kv.ErrBadRequest)
	}
	for _, a := range []string{req.RaftAddr, req.APIAddr} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return req, fmt.Errorf("%w: join body: address %q is not host:port", kv.ErrBadRequest, a)
		}
	}
	return req, nil
}
