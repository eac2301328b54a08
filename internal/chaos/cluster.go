//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/internal/netns"
	"github.com/raftkv/raftkv/kv"
)

// Config describes a cluster of raftkv processes.
type Config struct {
	// Binary is the raftkv executable.
	Binary string
	// Dir is the run directory: each node's data dir and log go under it.
	Dir string
	// Size is the number of nodes (default 3).
	Size int
	// Seed seeds the proxies' randomness.
	Seed uint64
	// ExtraArgs are added to every `raftkv serve` command line.
	ExtraArgs []string
	// ProxyHTTP routes the members' HTTP to each other (write batches,
	// read indexes, leadership checks) through proxies as well, so that
	// CutPair, Isolate and DropOneWay cut it too. Off, it goes direct: a
	// proxy accepts a connection before it can know its target is down, so
	// a request to a killed node fails after it was sent (outcome unknown)
	// rather than at the dial (not applied), and kill faults would drown
	// the history in unknown outcomes.
	ProxyHTTP bool
	// Hosts runs every node as a host of its own: a Linux network
	// namespace per node on a private network the cluster makes (package
	// internal/netns), nodes on <address>:8001 (HTTP) and :9001 (raft),
	// the harness's clients in a namespace of their own, and the network
	// faults (CutPair, Isolate, DropOneWay, Restore) made by the router
	// between them, dropping packets silently; no proxies. Needs root on
	// Linux (netns.Probe); ProxyHTTP must be off.
	Hosts bool
	// Logf receives the harness's own log lines (nil discards them).
	Logf func(format string, args ...any)
}

// Ports of a node in Hosts mode, on its own address.
const (
	hostHTTPPort = 8001
	hostRaftPort = 9001
)

// Cluster runs raftkv nodes as separate processes on loopback (or, with
// Config.Hosts, each in a network namespace of its own). On loopback, the raft
// traffic of every ordered pair of nodes (A dials B) passes through a Proxy
// the cluster owns: node A is started with --raft-peer-addrs B=<proxy A→B>.
// With Config.ProxyHTTP so does the members' HTTP to each other (write
// batches, read indexes, leadership checks): --api-peer-addrs B=<HTTP
// proxy A→B>. Clients' HTTP goes to the nodes directly. Close kills every process and stops every
// proxy.
type Cluster struct {
	cfg       Config
	links     map[[2]string]*Proxy
	httpLinks map[[2]string]*Proxy
	// HTTP is the harness's HTTP client (in Hosts mode it connects from
	// the client namespace).
	HTTP *http.Client
	net  *netns.Network // Hosts mode
	sp   *spawner
	dial func(ctx context.Context, network, address string) (net.Conn, error)

	mu      sync.Mutex // guards nodes, every Node's addresses, proc and paused, and netErrs
	nodes   []*Node
	gone    []*Node  // forgotten by ForgetNode: still found by id, never listed
	netErrs []string // network changes that failed (Hosts mode)
}

// Node is one member's identity: its id and files stay the same across
// restarts, and so do its addresses unless Move changes them (read them
// through the Cluster: HTTPAddr, URL).
type Node struct {
	ID       string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	LogPath  string

	proc   *proc
	paused bool
	joiner bool // added by AddNode: joins, never bootstraps
}

// NewCluster allocates addresses and proxies; Start runs the nodes.
func NewCluster(cfg Config) (*Cluster, error) {
	if cfg.Size == 0 {
		cfg.Size = 3
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c := &Cluster{
		cfg:       cfg,
		links:     map[[2]string]*Proxy{},
		httpLinks: map[[2]string]*Proxy{},
		dial:      (&net.Dialer{Timeout: time.Second}).DialContext,
		sp:        newSpawner(),
	}
	if cfg.Hosts {
		if err := c.newHosts(); err != nil {
			c.sp.close()
			return nil, err
		}
	}
	c.HTTP = &http.Client{Transport: &http.Transport{
		DialContext:         c.dial,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}}
	if cfg.Hosts {
		return c, nil
	}
	ports, err := freePorts(2*cfg.Size, cfg.Seed)
	if err != nil {
		return nil, err
	}
	for i := range cfg.Size {
		id := fmt.Sprintf("n%d", i+1)
		nd := filepath.Join(cfg.Dir, id)
		if err := os.MkdirAll(filepath.Join(nd, "data"), 0o700); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &Node{
			ID:       id,
			HTTPAddr: ports[2*i],
			RaftAddr: ports[2*i+1],
			DataDir:  filepath.Join(nd, "data"),
			LogPath:  filepath.Join(nd, "node.log"),
		})
	}
	for i, a := range c.nodes {
		for j, b := range c.nodes {
			if a == b {
				continue
			}
			p, err := NewProxy(a.ID, b.ID, b.RaftAddr, cfg.Seed+uint64(i*cfg.Size+j)+1)
			if err != nil {
				c.Close()
				return nil, err
			}
			c.links[[2]string{a.ID, b.ID}] = p
			if !cfg.ProxyHTTP {
				continue
			}
			hp, err := NewProxy(a.ID, b.ID, b.HTTPAddr, cfg.Seed+uint64(cfg.Size*cfg.Size+i*cfg.Size+j)+1)
			if err != nil {
				c.Close()
				return nil, err
			}
			c.httpLinks[[2]string{a.ID, b.ID}] = hp
		}
	}
	return c, nil
}

// freePorts picks n distinct free loopback ports below the kernel's
// ephemeral range, so that no outgoing connection can take a node's port
// while the node is down between a kill and its restart.
func freePorts(n int, seed uint64) ([]string, error) {
	lo, hi := 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if start, err := strconv.Atoi(f[0]); err == nil && start > 12000 {
				hi = start
				lo = max(10000, start-12768)
			}
		}
	}
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	var out []string
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		addr := fmt.Sprintf("127.0.0.1:%d", lo+rng.IntN(hi-lo))
		if slices.Contains(out, addr) {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		_ = ln.Close()
		out = append(out, addr)
	}
	if len(out) < n {
		return nil, errors.New("chaos: no free ports")
	}
	return out, nil
}

// list is a copy of the node list.
func (c *Cluster) list() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// IDs lists the node ids, n1 first (nodes added later after it, in the
// order they were added).
func (c *Cluster) IDs() []string {
	var ids []string
	for _, n := range c.list() {
		ids = append(ids, n.ID)
	}
	return ids
}

// Node returns the node with this id.
func (c *Cluster) Node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodeLocked(id)
}

func (c *Cluster) nodeLocked(id string) *Node {
	for _, n := range c.nodes {
		if n.ID == id {
			return n
		}
	}
	// A client may still hold the id of a node forgotten since it looked.
	for _, n := range c.gone {
		if n.ID == id {
			return n
		}
	}
	panic("chaos: no node " + id)
}

// HTTPAddr is the node's API address (host:port) now.
func (c *Cluster) HTTPAddr(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodeLocked(id).HTTPAddr
}

// Link is the proxy that carries from's raft connections to to.
func (c *Cluster) Link(from, to string) *Proxy { return c.links[[2]string{from, to}] }

// HTTPLink is the proxy that carries from's HTTP requests to to's API;
// nil without Config.ProxyHTTP.
func (c *Cluster) HTTPLink(from, to string) *Proxy { return c.httpLinks[[2]string{from, to}] }

// Links lists every raft proxy.
func (c *Cluster) Links() []*Proxy {
	var out []*Proxy
	nodes := c.list()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b && c.Link(a.ID, b.ID) != nil {
				out = append(out, c.Link(a.ID, b.ID))
			}
		}
	}
	return out
}

// URL is the node's HTTP base URL.
func (c *Cluster) URL(id string) string { return "http://" + c.HTTPAddr(id) }

// args is n's `raftkv serve` command line; c.mu is held.
func (c *Cluster) args(n *Node) []string {
	var peers, apiPeers, join []string
	for _, o := range c.nodes {
		if o == n {
			// The node's own entry keeps raft from warning on every RPC
			// that it has no override for itself.
			peers = append(peers, o.ID+"="+o.RaftAddr)
			continue
		}
		join = append(join, o.HTTPAddr)
		if c.net != nil {
			continue // hosts dial each other's own addresses
		}
		peers = append(peers, o.ID+"="+c.Link(n.ID, o.ID).Addr())
		if hl := c.HTTPLink(n.ID, o.ID); hl != nil {
			apiPeers = append(apiPeers, o.ID+"="+hl.Addr())
		}
	}
	args := []string{"serve",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr,
		"--raft-addr", n.RaftAddr,
		"--raft-advertise", n.RaftAddr,
		"--join", strings.Join(join, ","),
		"--log-level", "info",
		"--raft-log-level", "info",
	}
	if c.net == nil {
		args = append(args, "--raft-peer-addrs", strings.Join(peers, ","))
	}
	if !n.joiner {
		args = append(args, "--bootstrap-expect", strconv.Itoa(c.cfg.Size))
	}
	if len(apiPeers) > 0 {
		args = append(args, "--api-peer-addrs", strings.Join(apiPeers, ","))
	}
	return append(args, c.cfg.ExtraArgs...)
}

// Start starts every node that is not running.
func (c *Cluster) Start() error {
	for _, n := range c.list() {
		if err := c.StartNode(n.ID); err != nil {
			return err
		}
	}
	return nil
}

// StartNode starts the node's process from its data dir, if it is not
// running.
func (c *Cluster) StartNode(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(id)
	if n.proc != nil && !n.proc.exited() {
		return nil
	}
	argv := append([]string{c.cfg.Binary}, c.args(n)...)
	if c.net != nil {
		pre, err := c.net.ExecArgs(id)
		if err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		argv = append(pre, argv...)
	}
	p, err := c.sp.start(argv, n.LogPath)
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	n.proc = p
	n.paused = false
	c.cfg.Logf("started %s (pid %d)", id, p.cmd.Process.Pid)
	return nil
}

// Kill SIGKILLs the node and waits until it is gone.
func (c *Cluster) Kill(id string) error {
	n := c.Node(id)
	c.mu.Lock()
	p := n.proc
	n.paused = false
	c.mu.Unlock()
	if p == nil || p.exited() {
		return nil
	}
	c.cfg.Logf("SIGKILL %s", id)
	return p.kill()
}

// KillAll SIGKILLs every node at (nearly) the same moment.
func (c *Cluster) KillAll() error {
	var procs []*proc
	c.mu.Lock()
	for _, n := range c.nodes {
		if n.proc != nil && !n.proc.exited() {
			n.proc.mu.Lock()
			n.proc.expected = true
			n.proc.mu.Unlock()
			procs = append(procs, n.proc)
		}
		n.paused = false
	}
	c.mu.Unlock()
	c.cfg.Logf("SIGKILL every node")
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.signal(syscall.SIGKILL))
	}
	for _, p := range procs {
		errs = append(errs, p.kill())
	}
	return errors.Join(errs...)
}

// Pause SIGSTOPs the node; Resume SIGCONTs it.
func (c *Cluster) Pause(id string) error { return c.pause(id, true) }

// Resume continues a paused node.
func (c *Cluster) Resume(id string) error { return c.pause(id, false) }

func (c *Cluster) pause(id string, stop bool) error {
	n := c.Node(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.proc == nil || n.proc.exited() {
		return fmt.Errorf("%s is not running", id)
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	c.cfg.Logf("%s %s", sig, id)
	n.paused = stop
	return n.proc.signal(sig)
}

// Running reports whether the node's process is alive (paused or not).
func (c *Cluster) Running(id string) bool {
	n := c.Node(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.proc != nil && !n.proc.exited()
}

// Paused reports whether the node is SIGSTOPped.
func (c *Cluster) Paused(id string) bool {
	n := c.Node(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.paused
}

// RunningIDs lists the nodes whose process is alive (paused ones too).
func (c *Cluster) RunningIDs() []string {
	var out []string
	for _, n := range c.list() {
		if c.Running(n.ID) {
			out = append(out, n.ID)
		}
	}
	return out
}

// Wipe empties the data dir of a node that is not running.
func (c *Cluster) Wipe(id string) error {
	if c.Running(id) {
		return fmt.Errorf("wipe %s: still running", id)
	}
	n := c.Node(id)
	if err := os.RemoveAll(n.DataDir); err != nil {
		return err
	}
	c.cfg.Logf("wiped %s", id)
	return os.MkdirAll(n.DataDir, 0o700)
}

// UnexpectedExits lists nodes whose process ended without the harness
// killing it (a crash of raftkv itself).
func (c *Cluster) UnexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range c.nodes {
		if n.proc == nil {
			continue
		}
		if err, ok := n.proc.unexpectedExit(); ok {
			out = append(out, fmt.Sprintf("%s exited on its own (%v); log %s", n.ID, err, n.LogPath))
		}
	}
	return out
}

// Close kills every process and stops every proxy.
func (c *Cluster) Close() {
	c.mu.Lock()
	var procs []*proc
	for _, n := range c.nodes {
		if n.proc != nil {
			procs = append(procs, n.proc)
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.kill()
	}
	c.sp.close()
	for _, p := range c.links {
		p.Close()
	}
	for _, p := range c.httpLinks {
		p.Close()
	}
	c.HTTP.CloseIdleConnections()
	if c.net != nil {
		if err := c.net.Close(); err != nil {
			c.cfg.Logf("closing the network: %v", err)
		}
	}
}

// ---- network faults ----

// Heal clears every link fault.
func (c *Cluster) Heal() {
	if c.net != nil {
		c.netDo("heal", c.net.Heal)
		return
	}
	for _, p := range c.links {
		p.Heal()
	}
	for _, p := range c.httpLinks {
		p.Heal()
	}
	c.cfg.Logf("network healed")
}

// CutPair cuts a and b off from each other, both ways: their raft links
// are cut (connections closed, new ones held), and their HTTP to each
// other stalls in both directions, connections open, as when a route
// drops every packet (requests already sent wait for answers that never
// come).
func (c *Cluster) CutPair(a, b string) {
	if c.net != nil {
		c.netDo(fmt.Sprintf("cut %s <-> %s", a, b), func(ctx context.Context) error { return c.net.Cut(ctx, a, b) })
		return
	}
	c.Link(a, b).Update(func(f *LinkFault) { f.Cut = true })
	c.Link(b, a).Update(func(f *LinkFault) { f.Cut = true })
	for _, p := range []*Proxy{c.HTTPLink(a, b), c.HTTPLink(b, a)} {
		if p != nil {
			p.Update(func(f *LinkFault) { f.Hold[Up], f.Hold[Down] = true, true })
		}
	}
	c.cfg.Logf("cut %s <-> %s", a, b)
}

// Isolate cuts id off from every other node (not from the clients).
func (c *Cluster) Isolate(id string) {
	if c.net != nil {
		c.netDo("isolate "+id, func(ctx context.Context) error { return c.net.Isolate(ctx, id, netns.ClientHost) })
		return
	}
	for _, o := range c.list() {
		if o.ID != id {
			c.CutPair(id, o.ID)
		}
	}
}

// DropOneWay loses every packet from `from` to `to` while the other
// direction still flows: on to's connections to from, from's answers are
// held; on from's connections to to, from's requests are held.
func (c *Cluster) DropOneWay(from, to string) {
	if c.net != nil {
		c.netDo(fmt.Sprintf("drop packets %s -> %s", from, to), func(ctx context.Context) error { return c.net.Drop(ctx, from, to) })
		return
	}
	c.Link(to, from).Update(func(f *LinkFault) { f.Hold[Down] = true })
	c.Link(from, to).Update(func(f *LinkFault) { f.Hold[Up] = true })
	if c.cfg.ProxyHTTP {
		c.HTTPLink(to, from).Update(func(f *LinkFault) { f.Hold[Down] = true })
		c.HTTPLink(from, to).Update(func(f *LinkFault) { f.Hold[Up] = true })
	}
	c.cfg.Logf("drop packets %s -> %s", from, to)
}

// ---- HTTP helpers ----

// get fetches url into out (JSON) with a per-call timeout.
func (c *Cluster) getJSON(ctx context.Context, url string, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: %w", url, err)
		}
	}
	return resp.StatusCode, nil
}

// Info is the node's GET /v1/cluster.
func (c *Cluster) Info(ctx context.Context, id string) (kv.ClusterInfo, error) {
	var info kv.ClusterInfo
	_, err := c.getJSON(ctx, c.URL(id)+"/v1/cluster", &info)
	return info, err
}

// Digest is the node's GET /v1/debug/hash.
func (c *Cluster) Digest(ctx context.Context, id string) (kv.DigestInfo, error) {
	var d kv.DigestInfo
	_, err := c.getJSON(ctx, c.URL(id)+"/v1/debug/hash", &d)
	return d, err
}

// Ready is nil when the node's /readyz answers 200.
func (c *Cluster) Ready(ctx context.Context, id string) error {
	_, err := c.getJSON(ctx, c.URL(id)+"/readyz", nil)
	return err
}

// Poll calls f until it returns nil or timeout passes (or ctx ends),
// backing off from 5ms to 100ms; it returns f's last error.
func Poll(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-timer.C: // a poll interval: f is checked again
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Leader waits up to timeout for a node that says it leads and whose
// /readyz proves it (its term's entry applied, leadership confirmed by a
// quorum), and returns its id. Nodes in except are not asked.
func (c *Cluster) Leader(ctx context.Context, timeout time.Duration, except ...string) (string, error) {
	var leader string
	err := Poll(ctx, timeout, func() error {
		var errs []error
		for _, id := range c.RunningIDs() {
			if c.Paused(id) || slices.Contains(except, id) {
				continue
			}
			info, err := c.Info(ctx, id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if info.State != "leader" {
				continue
			}
			if err := c.Ready(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("%s leads but is not ready: %w", id, err))
				continue
			}
			leader = id
			return nil
		}
		return fmt.Errorf("no ready leader: %w", errors.Join(errs...))
	})
	return leader, err
}

// Members is the raft configuration as the leader reports it.
func (c *Cluster) Members(ctx context.Context) ([]kv.NodeInfo, error) {
	leader, err := c.Leader(ctx, 10*time.Second)
	if err != nil {
		return nil, err
	}
	info, err := c.Info(ctx, leader)
	if err != nil {
		return nil, err
	}
	return info.Nodes, nil
}

// WaitReady waits until every running node answers /readyz and the
// leader's configuration lists every node in ids with its API address.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration, ids []string) error {
	return Poll(ctx, timeout, func() error {
		for _, id := range ids {
			if err := c.Ready(ctx, id); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
		}
		leader := ""
		for _, id := range ids {
			info, err := c.Info(ctx, id)
			if err != nil {
				return err
			}
			if info.State == "leader" {
				leader = id
			}
		}
		if leader == "" {
			return errors.New("no node of the set leads")
		}
		info, err := c.Info(ctx, leader)
		if err != nil {
			return err
		}
		for _, id := range ids {
			i := slices.IndexFunc(info.Nodes, func(n kv.NodeInfo) bool { return n.ID == id })
			if i < 0 || info.Nodes[i].APIAddr != c.HTTPAddr(id) || info.Nodes[i].Suffrage != "voter" {
				return fmt.Errorf("%s is not a registered voter in %s's configuration: %+v", id, leader, info.Nodes)
			}
		}
		return nil
	})
}

// WaitConverged waits until every node in ids reports the same applied
// index (at least minIndex) and the same state-machine hash.
func (c *Cluster) WaitConverged(ctx context.Context, timeout time.Duration, ids []string, minIndex uint64) ([]kv.DigestInfo, error) {
	var last []kv.DigestInfo
	err := Poll(ctx, timeout, func() error {
		last = last[:0]
		for _, id := range ids {
			d, err := c.Digest(ctx, id)
			if err != nil {
				return err
			}
			last = append(last, d)
		}
		for _, d := range last {
			if d.AppliedIndex < minIndex {
				return fmt.Errorf("%s applied %d < %d", d.Node, d.AppliedIndex, minIndex)
			}
			if d.AppliedIndex != last[0].AppliedIndex || d.SHA256 != last[0].SHA256 {
				return fmt.Errorf("digests differ: %+v", last)
			}
		}
		return nil
	})
	return last, err
}

// Do sends one request and returns status, headers and body. The error is
// a transport error (the request may or may not have been sent).
func (c *Cluster) Do(ctx context.Context, method, url string, body []byte, hdr map[string]string) (int, http.Header, []byte, error) {
	var r io.Reader
	if body != nil {
		r = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, resp.Header, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

// PutRetry writes key=value through any live node, retrying until a 200
// or timeout, and returns the write's mod_index.
func (c *Cluster) PutRetry(ctx context.Context, timeout time.Duration, key, value string) (uint64, error) {
	var idx uint64
	err := Poll(ctx, timeout, func() error {
		var errs []error
		for _, id := range c.RunningIDs() {
			if c.Paused(id) {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			st, _, b, err := c.Do(rctx, http.MethodPut, c.URL(id)+"/v1/kv/"+key, []byte(value), nil)
			cancel()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if st != http.StatusOK {
				errs = append(errs, fmt.Errorf("PUT %s on %s: %d %s", key, id, st, strings.TrimSpace(string(b))))
				continue
			}
			var pr kv.PutResponse
			if err := json.Unmarshal(b, &pr); err != nil {
				return err
			}
			idx = pr.ModIndex
			return nil
		}
		return errors.Join(errs...)
	})
	return idx, err
}

// RemoveNode removes id from the raft configuration through another node
// (the leader when it is not id), retrying until the leader's
// configuration no longer lists it.
func (c *Cluster) RemoveNode(ctx context.Context, timeout time.Duration, id string) error {
	return Poll(ctx, timeout, func() error {
		var via string
		for _, o := range c.RunningIDs() {
			if o != id && !c.Paused(o) {
				via = o
				break
			}
		}
		if via == "" {
			return errors.New("no other running node")
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, _, b, err := c.Do(rctx, http.MethodDelete, c.URL(via)+"/v1/cluster/nodes/"+id, nil, nil)
		cancel()
		if err != nil {
			return err
		}
		// 404 not_found: an earlier attempt removed it (the node asked
		// had not applied the change when it was checked).
		if st != http.StatusOK && (st != http.StatusNotFound || errorCode(b) != "not_found") {
			return fmt.Errorf("DELETE /v1/cluster/nodes/%s via %s: %d %s", id, via, st, strings.TrimSpace(string(b)))
		}
		info, err := c.Info(ctx, via)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(info.Nodes, func(n kv.NodeInfo) bool { return n.ID == id }) {
			return fmt.Errorf("%s still lists %s", via, id)
		}
		return nil
	})
}
