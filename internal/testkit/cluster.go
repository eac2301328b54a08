package testkit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
)

// Options adjust a test cluster.
type Options struct {
	// Tuning overrides the fast test defaults when non-zero.
	Tuning raftkv.Tuning
	// MaxValueSize is passed to every node.
	MaxValueSize int64
	// Configure, if set, adjusts node i's Config (0-based) before every
	// Open: the first start and each Restart.
	Configure func(i int, cfg *raftkv.Config)
	// TLS starts the nodes with TLS on (see PKI): URL is https, and HTTP
	// trusts the CA and presents a client certificate.
	TLS bool
}

// Cluster is a set of nodes started by NewCluster.
type Cluster struct {
	t     testing.TB
	opts  Options
	mu    sync.Mutex
	nodes []*raftkv.Node // nil while stopped
	specs []spec
	HTTP  *http.Client
	// PKI is the development PKI of a cluster started with Options.TLS,
	// nil otherwise.
	PKI *PKI
}

type spec struct {
	id, dir, httpAddr, raftAddr string
}

// FastTuning are the raft timings tests use: raft's defaults, which a
// loaded two-core machine under -race keeps without spurious elections
// (a 250ms leader lease made leaders step down mid-test there).
var FastTuning = raftkv.Tuning{
	HeartbeatTimeout:   time.Second,
	ElectionTimeout:    time.Second,
	LeaderLeaseTimeout: 500 * time.Millisecond,
}

// NewCluster starts size nodes that form one cluster with
// BootstrapExpect=size, and waits until every node is ready.
func NewCluster(t testing.TB, size int, opts Options) *Cluster {
	t.Helper()
	if opts.Tuning == (raftkv.Tuning{}) {
		opts.Tuning = FastTuning
	}
	c := &Cluster{t: t, opts: opts, HTTP: &http.Client{Timeout: 15 * time.Second}}
	if opts.TLS {
		c.PKI = NewPKI(t, size)
		c.HTTP.Transport = &http.Transport{TLSClientConfig: c.PKI.ClientTLS(t)}
	}
	lns := make([]net.Listener, size)
	for i := range size {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		lns[i] = ln
		c.specs = append(c.specs, spec{
			id:       fmt.Sprintf("n%d", i+1),
			dir:      filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i+1)),
			httpAddr: ln.Addr().String(),
			raftAddr: "127.0.0.1:0",
		})
	}
	// Registered after t.TempDir: cleanups run last-in first-out, so the
	// nodes stop before their directories are removed.
	t.Cleanup(c.Close)
	c.nodes = make([]*raftkv.Node, size)
	for i := range size {
		c.start(i, lns[i], size)
	}
	c.WaitReady()
	return c
}

func (c *Cluster) start(i int, ln net.Listener, expect int) {
	c.t.Helper()
	c.mu.Lock()
	s := c.specs[i]
	var join []string
	for j, o := range c.specs {
		if j != i {
			join = append(join, o.httpAddr)
		}
	}
	c.mu.Unlock()
	cfg := raftkv.Config{
		ID:              s.id,
		DataDir:         s.dir,
		RaftAddr:        s.raftAddr,
		HTTPListener:    ln,
		Join:            join,
		BootstrapExpect: expect,
		MaxValueSize:    c.opts.MaxValueSize,
		Logger:          testLogger(c.t, s.id),
		RaftLogLevel:    "warn",
		Tuning:          c.opts.Tuning,
	}
	if c.PKI != nil {
		cfg.TLS = c.PKI.Config(i)
	}
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	n, err := raftkv.Open(cfg)
	if err != nil {
		c.t.Fatalf("open %s: %v", s.id, err)
	}
	c.mu.Lock()
	c.specs[i].raftAddr = n.RaftAddr() // keep the port across restarts
	c.nodes[i] = n
	c.mu.Unlock()
}

// testLogger writes node logs to the test log when RAFTKV_TEST_LOG is set,
// else discards them.
func testLogger(t testing.TB, id string) *slog.Logger {
	if os.Getenv("RAFTKV_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", id)
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Node returns node i (0-based), nil while it is stopped.
func (c *Cluster) Node(i int) *raftkv.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Size is the number of nodes, running or not.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.specs)
}

// spec returns node i's spec; AddNode may grow the list meanwhile.
func (c *Cluster) spec(i int) spec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.specs[i]
}

// URL is node i's HTTP base URL; it stays the same across restarts.
func (c *Cluster) URL(i int) string { return c.scheme() + "://" + c.spec(i).httpAddr }

func (c *Cluster) scheme() string {
	if c.PKI != nil {
		return "https"
	}
	return "http"
}

// Dir is node i's data directory.
func (c *Cluster) Dir(i int) string { return c.spec(i).dir }

// Stop closes node i, as a clean shutdown would.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	if err := n.Close(); err != nil {
		c.t.Errorf("close %s: %v", c.specs[i].id, err)
	}
}

// Restart starts a stopped node i again from its data directory, on the
// same HTTP and raft addresses.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	var ln net.Listener
	err := Eventually(5*time.Second, func() error {
		var err error
		ln, err = net.Listen("tcp", c.specs[i].httpAddr)
		return err
	})
	if err != nil {
		c.t.Fatalf("relisten %s: %v", c.specs[i].httpAddr, err)
	}
	c.start(i, ln, len(c.specs))
}

// AddNode starts one more node, with an empty data directory, that joins
// the running cluster through the other nodes' HTTP addresses (no
// BootstrapExpect: it never forms a cluster of its own), and returns its
// index. Its id is "n" and its index + 1. It does not wait for the node to
// be ready or promoted.
func (c *Cluster) AddNode() int {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatalf("listen: %v", err)
	}
	c.mu.Lock()
	i := len(c.specs)
	c.specs = append(c.specs, spec{
		id:       fmt.Sprintf("n%d", i+1),
		dir:      filepath.Join(c.t.TempDir(), fmt.Sprintf("n%d", i+1)),
		httpAddr: ln.Addr().String(),
		raftAddr: "127.0.0.1:0",
	})
	c.nodes = append(c.nodes, nil)
	c.mu.Unlock()
	c.start(i, ln, 0)
	return i
}

// RestartMoved starts a stopped node i again from its data directory on
// new HTTP and raft addresses (free ports picked now), as a member
// rescheduled onto another address comes back.
func (c *Cluster) RestartMoved(i int) {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatalf("listen: %v", err)
	}
	raftLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatalf("listen: %v", err)
	}
	raftAddr := raftLn.Addr().String()
	_ = raftLn.Close() // free for the node to bind
	c.mu.Lock()
	c.specs[i].httpAddr, c.specs[i].raftAddr = ln.Addr().String(), raftAddr
	c.mu.Unlock()
	c.start(i, ln, len(c.specs))
}

// ID is node i's raft server id.
func (c *Cluster) ID(i int) string { return c.spec(i).id }

// Leader waits for a leader among the running nodes and returns its index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	leader := -1
	err := Eventually(20*time.Second, func() error {
		for i := range c.specs {
			if n := c.Node(i); n != nil && n.IsLeader() {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("no leader among running nodes")
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return leader
}

// Follower returns the index of a running node that is not the leader.
func (c *Cluster) Follower() int {
	c.t.Helper()
	l := c.Leader()
	for i := range c.specs {
		if i != l && c.Node(i) != nil {
			return i
		}
	}
	c.t.Fatal("no running follower")
	return -1
}

// WaitReady waits until every running node can serve linearizable reads.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range c.specs {
		if n := c.Node(i); n != nil {
			if err := n.WaitReady(ctx); err != nil {
				c.t.Fatalf("node %s: %v", c.specs[i].id, err)
			}
		}
	}
}

// Close stops every running node.
func (c *Cluster) Close() {
	for i := range c.specs {
		c.mu.Lock()
		n := c.nodes[i]
		c.nodes[i] = nil
		c.mu.Unlock()
		if n != nil {
			_ = n.Close()
		}
	}
	c.HTTP.CloseIdleConnections()
}

// Eventually calls f until it returns nil or timeout passes, backing off
// from 5ms to 100ms between calls; it returns f's last error on timeout.
func Eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(wait) // a poll interval, not a wait for state: f is re-checked
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Do sends an HTTP request and returns the response with its body read.
func (c *Cluster) Do(method, url string, body io.Reader, header map[string]string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		c.t.Fatalf("request: %v", err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}
