package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// minRefreshGap is the least time between two refreshes that failed
// attempts ask for.
const minRefreshGap = time.Second

// endpoints is the set of base URLs a Client sends to: the configured
// ones, then the members learned from the cluster.
type endpoints struct {
	mu          sync.Mutex
	seeds       []string
	list        []endpoint
	cur         int       // where calls start: the endpoint that last answered
	refreshedAt time.Time // when the last refresh started; zero: never
	refreshing  bool
	closed      bool // no more refreshes
}

type endpoint struct {
	url        string
	avoidUntil time.Time // prefer other endpoints until then
	retryAt    time.Time // its Retry-After: contact it again no sooner
}

func (e *endpoints) init(seeds []string) {
	for _, s := range seeds {
		if !slices.Contains(e.seeds, s) {
			e.seeds = append(e.seeds, s)
			e.list = append(e.list, endpoint{url: s})
		}
	}
}

func (e *endpoints) index(u string) int {
	return slices.IndexFunc(e.list, func(ep endpoint) bool { return ep.url == u })
}

// pick returns the endpoint for the next attempt: after prev in the list
// (from the current one for a call's first attempt), the first that is not
// avoided; when all are, the one avoided the shortest. The duration is how
// long its Retry-After still asks the client to wait.
func (e *endpoints) pick(prev string) (string, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := e.cur
	if prev != "" {
		if i := e.index(prev); i >= 0 {
			start = i + 1
		}
	}
	now := time.Now()
	best := -1
	for j := range len(e.list) {
		i := (start + j) % len(e.list)
		if !e.list[i].avoidUntil.After(now) {
			best = i
			break
		}
		if best < 0 || e.list[i].avoidUntil.Before(e.list[best].avoidUntil) {
			best = i
		}
	}
	return e.list[best].url, max(e.list[best].retryAt.Sub(now), 0)
}

// answered makes u the endpoint calls start from.
func (e *endpoints) answered(u string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i := e.index(u); i >= 0 {
		e.cur = i
		e.list[i].avoidUntil, e.list[i].retryAt = time.Time{}, time.Time{}
	}
}

// failed avoids u for avoid (and contacts it again no sooner than
// retryAfter) and, if calls start from u, moves them on.
func (e *endpoints) failed(u string, avoid, retryAfter time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := e.index(u)
	if i < 0 {
		return
	}
	now := time.Now()
	e.list[i].avoidUntil = now.Add(max(avoid, retryAfter))
	e.list[i].retryAt = now.Add(retryAfter)
	if e.cur == i {
		e.cur = (i + 1) % len(e.list)
	}
}

// len is the number of endpoints known.
func (e *endpoints) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.list)
}

// order lists the endpoints from the current one, those not avoided first.
func (e *endpoints) order() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	var ok, avoided []string
	for j := range len(e.list) {
		ep := e.list[(e.cur+j)%len(e.list)]
		if ep.avoidUntil.After(now) {
			avoided = append(avoided, ep.url)
		} else {
			ok = append(ok, ep.url)
		}
	}
	return append(ok, avoided...)
}

// setMembers makes the list the seeds followed by the members' API
// addresses (with scheme), keeping what is known of the endpoints that
// stay.
func (e *endpoints) setMembers(scheme string, addrs []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.list
	cur := old[e.cur].url
	e.list = nil
	add := func(u string) {
		if e.index(u) >= 0 {
			return
		}
		ep := endpoint{url: u}
		if i := slices.IndexFunc(old, func(o endpoint) bool { return o.url == u }); i >= 0 {
			ep = old[i]
		}
		e.list = append(e.list, ep)
	}
	for _, s := range e.seeds {
		add(s)
	}
	for _, a := range addrs {
		if u, err := ParseEndpoint(scheme + "://" + a); err == nil {
			add(u)
		}
	}
	e.cur = max(e.index(cur), 0)
}

// startRefresh reports whether the caller should refresh now, and if so
// marks a refresh as running and adds it to wg (under the lock close
// takes, so that Close, which waits for wg after close, never misses it).
func (e *endpoints) startRefresh(every time.Duration, failed bool, wg *sync.WaitGroup) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.refreshing {
		return false
	}
	age := time.Since(e.refreshedAt)
	if !e.refreshedAt.IsZero() && age < every && (!failed || age < minRefreshGap) {
		return false
	}
	e.refreshing = true
	e.refreshedAt = time.Now()
	wg.Add(1)
	return true
}

func (e *endpoints) endRefresh() {
	e.mu.Lock()
	e.refreshing = false
	e.mu.Unlock()
}

func (e *endpoints) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
}

// maybeRefresh starts a refresh of the members' addresses in the
// background when one is due: none yet, the last older than
// RefreshInterval, or (failed) an attempt just failed and the last is
// older than minRefreshGap. Close stops it.
func (c *Client) maybeRefresh(failed bool) {
	if c.refreshEvery < 0 || !c.eps.startRefresh(c.refreshEvery, failed, &c.wg) {
		return
	}
	go func() {
		defer c.wg.Done()
		defer c.eps.endRefresh()
		for _, base := range c.eps.order() {
			addrs, err := c.members(c.bg, base)
			if c.bg.Err() != nil {
				return
			}
			if err == nil && len(addrs) > 0 {
				u, _ := url.Parse(base) // parsed by ParseEndpoint before
				c.eps.setMembers(u.Scheme, addrs)
				return
			}
		}
	}()
}

// members asks base for the cluster's members and returns their API
// addresses (host:port), those that registered one.
func (c *Client) members(ctx context.Context, base string) ([]string, error) {
	timeout := c.attemptTimeout
	if timeout <= 0 {
		timeout = DefaultAttemptTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hr, err := c.newHTTPRequest(ctx, base, request{method: http.MethodGet, path: "/v1/cluster"})
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/v1/cluster: %w", base, DecodeError(resp))
	}
	var info kv.ClusterInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("GET %s/v1/cluster: %w", base, err)
	}
	var addrs []string
	for _, n := range info.Nodes {
		if n.APIAddr != "" {
			addrs = append(addrs, n.APIAddr)
		}
	}
	return addrs, nil
}
