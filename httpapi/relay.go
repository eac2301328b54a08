package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// NewPeerClient returns the pooled keep-alive client for member-to-member
// requests (a follower's write batches and read indexes, leadership
// checks, joins, relayed membership calls): many idle connections per
// host, since every concurrent request to a member holds one. It does not
// follow redirects: they are answers to pass on.
//
// Its connections notice a peer that vanished within seconds: keep-alive
// probes after peerKeepAliveIdle of silence (a request sent and waiting for
// its answer is silence too), and, on Linux, a bound on data left
// unacknowledged (peerUserTimeout). A request to such a peer then fails
// instead of waiting for its deadline.
func NewPeerClient() *http.Client { return NewPeerClientTLS(nil) }

// NewPeerClientTLS is NewPeerClient for a cluster that runs TLS: its
// connections use tc (the member certificate as client certificate, the
// cluster's CA as roots), so requests go to https:// addresses. A nil tc
// is NewPeerClient.
func NewPeerClientTLS(tc *tls.Config) *http.Client {
	dialer := &net.Dialer{
		Timeout: 2 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     peerKeepAliveIdle,
			Interval: peerKeepAliveInterval,
			Count:    peerKeepAliveCount,
		},
		Control: setUserTimeout,
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			TLSClientConfig:     tc,
			TLSHandshakeTimeout: 5 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// How the peer client's connections notice a dead peer: probes after 2s of
// silence, one a second, given up after 3 unanswered (about 5s); data
// unacknowledged for 5s ends the connection (Linux).
const (
	peerKeepAliveIdle     = 2 * time.Second
	peerKeepAliveInterval = time.Second
	peerKeepAliveCount    = 3
	peerUserTimeout       = 5 * time.Second
)

// relay sends r, with body, on to the leader and copies the answer back:
// the membership calls, which only the leader serves. A request that was
// itself relayed (HeaderForwardedBy) is not relayed again: this node is
// not the leader either, so the client sees no_leader and may retry.
func (h *Handler) relay(w http.ResponseWriter, r *http.Request, body []byte) {
	if by := r.Header.Get(HeaderForwardedBy); by != "" {
		writeError(w, fmt.Errorf("%w: request forwarded by %s reached %s, which is not the leader", kv.ErrNoLeader, by, h.b.ID()))
		return
	}
	leader := h.b.LeaderAPIAddr()
	if leader == "" {
		writeError(w, fmt.Errorf("%w: no leader known", kv.ErrNoLeader))
		return
	}
	if err := r.Context().Err(); err != nil {
		// Ended before anything was sent: certainly not applied.
		writeError(w, fmt.Errorf("%w: before relaying to the leader at %s: %w", kv.ErrTimeout, leader, err))
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, h.scheme+"://"+leader+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		writeError(w, fmt.Errorf("relay: %w", err))
		return
	}
	// Only the headers a membership call uses. Never Idempotency-Key:
	// net/http's transport would take the request for idempotent and
	// resend it by itself after a lost connection.
	// The asker's identity headers too: the leader checks them as this
	// node did.
	for _, name := range []string{"Content-Type", "Accept", HeaderClusterID, HeaderProtocol} {
		if v := r.Header.Values(name); len(v) > 0 {
			out.Header[name] = v
		}
	}
	out.Header.Set(HeaderForwardedBy, h.b.ID())
	if h.m != nil {
		h.m.forwarded.Inc()
	}
	resp, err := h.peers.Do(out)
	if err != nil {
		writeError(w, relayError(err, true, leader))
		return
	}
	defer resp.Body.Close()
	for name, v := range resp.Header {
		w.Header()[name] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// relayError says what a failed relay to the leader means for the client.
// A request that certainly reached no server (kv.NotSent: the connection
// was never made) was not applied: 503 no_leader, or 504 timeout when the
// request's context ended first. A write that may have reached the leader
// may have been applied: 504 outcome_unknown, whatever ended it. A read
// changes nothing, so a lost one is no_leader (timeout when its context
// ended).
func relayError(err error, write bool, leader string) error {
	notSent := kv.NotSent(err)
	switch {
	case write && !notSent:
		return fmt.Errorf("%w: relaying to the leader at %s: %w", kv.ErrOutcomeUnknown, leader, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: relaying to the leader at %s: %w", kv.ErrTimeout, leader, err)
	default:
		return fmt.Errorf("%w: leader at %s unreachable: %w", kv.ErrNoLeader, leader, err)
	}
}
