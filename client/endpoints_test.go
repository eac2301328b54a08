package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// member is a test server that serves kv requests and GET /v1/cluster
// with the member list of its cluster.
type member struct {
	srv      *httptest.Server
	kvHits   atomic.Int64
	infoHits atomic.Int64
}

// fakeCluster is a set of members that all describe the same membership.
type fakeCluster struct {
	mu      sync.Mutex
	members []*member
	listed  []string // the API addresses /v1/cluster returns
}

func newFakeCluster(t *testing.T, n int) *fakeCluster {
	fc := &fakeCluster{}
	for range n {
		m := &member{}
		m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/cluster" {
				m.infoHits.Add(1)
				fc.mu.Lock()
				info := kv.ClusterInfo{ID: m.srv.Listener.Addr().String()}
				for i, a := range fc.listed {
					info.Nodes = append(info.Nodes, kv.NodeInfo{ID: fmt.Sprintf("n%d", i+1), APIAddr: a, Suffrage: "voter"})
				}
				fc.mu.Unlock()
				writeJSON(w, http.StatusOK, info)
				return
			}
			m.kvHits.Add(1)
			ok(w, r)
		}))
		t.Cleanup(m.srv.Close)
		fc.members = append(fc.members, m)
		fc.listed = append(fc.listed, m.srv.Listener.Addr().String())
	}
	return fc
}

func (fc *fakeCluster) list(addrs ...string) {
	fc.mu.Lock()
	fc.listed = addrs
	fc.mu.Unlock()
}

// poll calls f until it returns nil or timeout passes.
func poll(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond) // a poll interval: f is checked again
	}
}

func hasAll(c *Client, urls ...string) error {
	got := c.eps.order()
	for _, u := range urls {
		if !slices.Contains(got, u) {
			return fmt.Errorf("endpoints %q lack %s", got, u)
		}
	}
	return nil
}

// A client given one endpoint learns the others from GET /v1/cluster on
// its first call, and keeps working when that endpoint dies.
func TestDiscoverySurvivesTheConfiguredEndpoint(t *testing.T) {
	fc := newFakeCluster(t, 3)
	a, b, cc := fc.members[0], fc.members[1], fc.members[2]
	c := newClient(t, Config{Endpoints: []string{a.srv.URL}, RefreshInterval: time.Hour})
	if n := a.kvHits.Load() + a.infoHits.Load(); n != 0 {
		t.Fatalf("New sent %d requests", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, func() error { return hasAll(c, a.srv.URL, b.srv.URL, cc.srv.URL) })
	if got := c.eps.order(); len(got) != 3 {
		t.Errorf("endpoints %q: the configured one is listed twice", got)
	}
	a.srv.Close()
	for range 5 {
		if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatalf("Put with the configured endpoint dead: %v", err)
		}
		if _, err := c.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil {
			t.Fatalf("Get with the configured endpoint dead: %v", err)
		}
	}
	if b.kvHits.Load()+cc.kvHits.Load() != 10 {
		t.Errorf("the other members served %d+%d requests, want 10", b.kvHits.Load(), cc.kvHits.Load())
	}
	if n := a.infoHits.Load(); n != 1 {
		t.Errorf("%d refreshes with a RefreshInterval of an hour, want 1", n)
	}
}

// The list follows membership changes at RefreshInterval; configured
// endpoints stay; the scheme is the configured one.
func TestRefreshInterval(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.members[0], fc.members[1]
	fc.list(a.srv.Listener.Addr().String())
	c := newClient(t, Config{Endpoints: []string{a.srv.URL}, RefreshInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	fc.list(b.srv.Listener.Addr().String()) // b joined, a left
	poll(t, 5*time.Second, func() error {
		if _, err := c.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil {
			return err
		}
		return hasAll(c, b.srv.URL)
	})
	if err := hasAll(c, a.srv.URL); err != nil {
		t.Errorf("the configured endpoint was dropped: %v", err)
	}

	var e endpoints
	e.init([]string{"https://h:1"})
	e.setMembers("https", []string{"h:2", "h:1", "bad host:x"})
	if got := strings.Join(e.order(), " "); got != "https://h:1 https://h:2" {
		t.Errorf("endpoints %q", got)
	}
}

// When a refresh is due.
func TestRefreshPolicy(t *testing.T) {
	const every = time.Minute
	tests := []struct {
		name       string
		age        time.Duration // since the last refresh; 0: never
		failed     bool
		refreshing bool
		closed     bool
		want       bool
	}{
		{"never refreshed", 0, false, false, false, true},
		{"fresh", time.Millisecond, false, false, false, false},
		{"due", every, false, false, false, true},
		{"failed attempt, just refreshed", time.Millisecond, true, false, false, false},
		{"failed attempt", minRefreshGap, true, false, false, true},
		{"one already running", every, true, true, false, false},
		{"closed", 0, true, false, true, false},
	}
	for _, tt := range tests {
		var e endpoints
		e.init([]string{"http://h:1"})
		if tt.age > 0 {
			e.refreshedAt = time.Now().Add(-tt.age)
		}
		e.refreshing, e.closed = tt.refreshing, tt.closed
		var wg sync.WaitGroup
		if got := e.startRefresh(every, tt.failed, &wg); got != tt.want {
			t.Errorf("%s: startRefresh = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Close stops a refresh in progress and waits for it; calls after Close
// start none.
func TestCloseStopsRefresh(t *testing.T) {
	canceled := make(chan struct{})
	var infoHits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/cluster" {
			infoHits.Add(1)
			<-r.Context().Done() // a node that never answers
			close(canceled)
			return
		}
		ok(w, r)
	}))
	defer srv.Close()
	c, err := New(Config{Endpoints: []string{srv.URL}, AttemptTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), []byte("k"), kv.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, func() error {
		if infoHits.Load() == 0 {
			return errors.New("no refresh yet")
		}
		return nil
	})
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a refresh waited for an answer")
	}
	select {
	case <-canceled: // the refresh's request was canceled, long before its minute-long attempt timeout
	case <-time.After(10 * time.Second):
		t.Error("the refresh's request was not canceled by Close")
	}
	if _, err := c.Get(context.Background(), []byte("k"), kv.ReadOptions{}); err != nil {
		t.Fatalf("Get after Close: %v", err)
	}
	if n := infoHits.Load(); n != 1 {
		t.Errorf("%d refreshes, want 1: none after Close", n)
	}
}
