package raftkv

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/coalesce"
	"github.com/raftkv/raftkv/internal/forward"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftnode"
	"github.com/raftkv/raftkv/store"
)

// Node is one member of a raftkv cluster. Its methods are safe for
// concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	raft    *raftnode.Node
	handler *httpapi.Handler
	unlock  func() error
	// tls is nil without Config.TLS.
	tls *nodeTLS

	// peers is the pooled keep-alive HTTP client for every request to
	// another member: write batches, read indexes, leadership checks,
	// joins, relayed membership calls.
	peers *http.Client
	// toLeader sends a follower's writes to the leader in batches.
	toLeader *forward.Batcher
	// readIndex shares read-index requests to the leader among the
	// follower's concurrent linearizable reads.
	readIndex coalesce.Group[uint64]
	// checkFirst is the voter whose answer completed the last leadership
	// check: the next check asks it first (confirmLeadership).
	checkFirst atomic.Pointer[string]
	// rebuild holds reads while a discarded kv.db is rebuilt (rebuild.go).
	rebuild rebuildHold
	metrics *nodeMetrics

	httpLn  net.Listener
	httpSrv *http.Server
	apiAddr string // advertised HTTP host:port, "" when not serving

	stop     context.CancelFunc // stops background work
	life     context.Context    // ends with stop: watches end
	watchers watchers
	// leases are this node's lease timers (leases.go).
	leases leaseTimers
	// promoter records, on the leader, how its non-voters keep up
	// (members.go).
	promoter  promoter
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open starts a node. It returns once raft and (with Config.HTTPAddr) the
// HTTP server are running; forming or joining the cluster goes on in the
// background; see WaitReady.
func Open(cfg Config) (n *Node, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("raftkv: data dir: %w", err)
	}
	unlock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n = &Node{cfg: cfg, log: cfg.Logger, unlock: unlock, httpLn: cfg.HTTPListener, life: context.Background()}
	n.readIndex.Round = n.askReadIndex
	node := n // the error returns below set n to nil
	defer func() {
		if err != nil {
			_ = node.Close()
		}
	}()
	var raftTLS *raftnode.TLS
	if cfg.TLS != nil {
		if n.tls, err = openTLS(cfg.TLS, cfg.Logger); err != nil {
			return nil, err
		}
		n.peers = httpapi.NewPeerClientTLS(n.tls.client)
		raftTLS = &n.tls.raft
	} else {
		n.peers = httpapi.NewPeerClient()
	}
	// Every request to another member says which cluster this node is
	// in and which protocol it speaks; members of another cluster, or of
	// a version this one cannot work with, refuse it (identity.go).
	httpapi.IdentifyPeerClient(n.peers, httpapi.Identity{
		ClusterID:       n.ClusterID,
		ProtocolVersion: n.protocolVersion(),
		Logger:          cfg.Logger.With("component", "http"),
	})
	if cfg.ACL != nil {
		// Read when each request is sent: the store opens below, and the
		// secret arrives with the bootstrap entry.
		n.peers.Transport = memberSecretTransport{base: n.peers.Transport, secret: func() []byte {
			if n.store == nil {
				return nil
			}
			return n.store.ACL().MemberSecret
		}}
	}

	httpMetrics, err := httpapi.NewMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	metrics, err := newNodeMetrics(cfg.Registry, httpMetrics, n.stats)
	n.metrics = metrics
	if err != nil {
		return nil, err
	}
	// A state file removed by hand (a corrupted kv.db set aside) is rebuilt
	// like one Open discards: see the read hold below.
	_, statErr := os.Stat(filepath.Join(cfg.DataDir, "kv.db"))
	stateMissing := errors.Is(statErr, os.ErrNotExist)
	n.store, err = store.Open(filepath.Join(cfg.DataDir, "kv.db"), store.Options{
		Logger:         cfg.Logger.With("component", "store"),
		NoSync:         !cfg.Tuning.FSMSync,
		CommitInterval: cfg.Tuning.StateCommitInterval,
		ObserveBatch:   n.observeApply(metrics.observeApplyBatch),
		WatchHistory:   uint64(max(cfg.WatchHistory, 0)),
		WatchWindow:    cfg.WatchWindow,
		OnLeases:       n.leases.onLeases,
	})
	if err != nil {
		return nil, fmt.Errorf("raftkv: %w", err)
	}
	// Before raft replays the log onto it.
	if err := n.seedLeases(); err != nil {
		return nil, err
	}
	raftAddr, remembered, err := raftBindAddr(cfg.DataDir, cfg.RaftAddr)
	if err != nil {
		return nil, err
	}
	t := cfg.Tuning
	n.raft, err = raftnode.Open(raftnode.Config{
		ID:                 cfg.ID,
		DataDir:            cfg.DataDir,
		LogStore:           cfg.LogStore,
		WALSegmentSize:     cfg.walSegmentSize,
		RaftAddr:           raftAddr,
		RaftAdvertise:      cfg.RaftAdvertise,
		TLS:                raftTLS,
		PeerAddrs:          cfg.RaftPeerAddrs,
		Logger:             cfg.Logger.With("component", "raft"),
		RaftLogLevel:       cfg.RaftLogLevel,
		HeartbeatTimeout:   t.HeartbeatTimeout,
		ElectionTimeout:    t.ElectionTimeout,
		LeaderLeaseTimeout: t.LeaderLeaseTimeout,
		SnapshotThreshold:  t.SnapshotThreshold,
		SnapshotInterval:   t.SnapshotInterval,
		TrailingLogs:       t.TrailingLogs,
		ConfirmLeadership:  n.confirmLeadership,
		MaxBatch:           t.MaxBatch,
	}, n.store)
	if err != nil && remembered != "" && errors.Is(err, syscall.EADDRINUSE) {
		// Another port would make a node its cluster cannot reach.
		return nil, fmt.Errorf("raftkv: this node's raft address was %s (remembered in %s, and the cluster knows the node by it); it cannot be bound again: free the port or set Config.RaftAddr: %w",
			remembered, filepath.Join(cfg.DataDir, raftAddrFile), err)
	}
	if err != nil {
		return nil, fmt.Errorf("raftkv: %w", err)
	}
	if err := rememberRaftAddr(cfg.DataDir, cfg.RaftAddr, n.raft.RaftAddr()); err != nil {
		return nil, err
	}
	// A node with raft state but a new, empty kv.db (discarded by Open, or
	// removed by hand) restarts from its snapshot, behind what it served;
	// one whose process died restarts from kv.db's last commit, which may
	// be behind what it applied and served (store.Store.Interrupted).
	if floor := n.raft.Status().LastIndex; n.store.Interrupted() || stateMissing && floor > 0 {
		n.rebuild.hold(floor)
		n.log.Warn("state file older than what this node may have served: reads wait until the log is applied again", "up_to_index", floor, "applied_index", n.store.AppliedIndex(), "discarded", n.store.Discarded())
	}
	n.toLeader = forward.New(forward.Config{
		Leader:  n.leaderAPIAddr,
		Client:  n.peers,
		Scheme:  n.Scheme(),
		Header:  http.Header{httpapi.HeaderForwardedBy: {cfg.ID}},
		Observe: metrics.observeForwardBatch,
	})
	var isMember func(*tls.ConnectionState) bool
	if n.tls != nil {
		isMember = n.tls.isMember
	}
	var acl httpapi.Authorizer
	if cfg.ACL != nil {
		acl = aclAuth{n}
	}
	n.handler, err = httpapi.New(httpapi.Config{
		Backend:         backend{n},
		Logger:          cfg.Logger.With("component", "http"),
		Metrics:         httpMetrics,
		Gatherer:        cfg.Registry,
		MaxValueSize:    cfg.MaxValueSize,
		Peers:           n.peers,
		Pprof:           cfg.Pprof,
		Scheme:          n.Scheme(),
		IsMember:        isMember,
		ProtocolVersion: n.protocolVersion(),
		ACL:             acl,
		ACLMetrics:      cfg.ACL != nil && cfg.ACL.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("raftkv: %w", err)
	}

	ctx, stop := context.WithCancel(context.Background())
	n.stop, n.life = stop, ctx
	if cfg.HTTPAddr != "" || cfg.HTTPListener != nil {
		if err := n.serveHTTP(); err != nil {
			return nil, err
		}
	} else if cfg.HTTPAdvertise != "" {
		n.apiAddr = cfg.HTTPAdvertise
	}
	// The node's goroutines, each until ctx ends (Close).
	n.wg.Go(func() { n.formCluster(ctx) })
	if cfg.ACL != nil {
		n.wg.Go(func() { n.runACLBootstrap(ctx) })
	}
	n.wg.Go(func() { n.claimIdentity(ctx) })
	n.wg.Go(func() { n.promoteNonvoters(ctx) })
	n.wg.Go(func() { n.runLeases(ctx) })
	n.wg.Go(func() { n.followLeadership(ctx) })
	return n, nil
}

func (n *Node) serveHTTP() error {
	ln := n.cfg.HTTPListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("raftkv: http listen: %w", err)
		}
	}
	n.httpLn = ln
	if n.tls != nil {
		// No plaintext answer on the TLS port (tlsOnlyListener).
		ln = tls.NewListener(tlsOnlyListener{ln}, n.tls.api)
	}
	n.apiAddr = n.cfg.HTTPAdvertise
	if n.apiAddr == "" {
		addr := ln.Addr().(*net.TCPAddr)
		if addr.IP.IsUnspecified() {
			return fmt.Errorf("raftkv: HTTP address %s is unspecified: set HTTPAdvertise to the address peers use", ln.Addr())
		}
		n.apiAddr = addr.String()
	}
	conns := &newConns{m: map[net.Conn]struct{}{}}
	n.httpSrv = &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		ConnState:         conns.track,
	}
	n.httpSrv.RegisterOnShutdown(conns.closeAll)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "error", err)
		}
	}()
	n.log.Info("serving HTTP API", "addr", n.apiAddr, "scheme", n.Scheme())
	return nil
}

// newConns tracks the HTTP connections that have not yet sent a whole
// request header. http.Server.Shutdown waits up to five seconds for such a
// connection before it counts it as idle, and peers' pooled clients leave
// them behind (a request cancelled while its connection was being dialed
// parks the new connection in the pool). Once Shutdown has closed the
// listener, closeAll closes them: a request that had not arrived yet is
// refused, as one arriving a moment later would be.
type newConns struct {
	mu      sync.Mutex
	m       map[net.Conn]struct{}
	closing bool // closeAll ran: a connection accepted just before is closed as it is tracked
}

func (c *newConns) track(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case state == http.StateNew && c.closing:
		_ = conn.Close()
	case state == http.StateNew:
		c.m[conn] = struct{}{}
	default:
		delete(c.m, conn)
	}
}

func (c *newConns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	for conn := range c.m {
		_ = conn.Close()
		delete(c.m, conn)
	}
}

// ID returns the node's raft server id.
func (n *Node) ID() string { return n.cfg.ID }

// HTTPAddr returns the advertised HTTP address (host:port), or "" when the
// node neither serves nor advertises one.
func (n *Node) HTTPAddr() string { return n.apiAddr }

// RaftAddr returns the raft transport's address.
func (n *Node) RaftAddr() string { return n.raft.RaftAddr() }

// Handler returns the HTTP API handler, for mounting on another server.
func (n *Node) Handler() http.Handler { return n.handler }

// IsLeader reports whether this node believes it is the leader.
func (n *Node) IsLeader() bool { return n.raft.IsLeader() }

// AppliedIndex returns the raft index the local state machine has applied.
func (n *Node) AppliedIndex() uint64 { return n.store.AppliedIndex() }

// Digest hashes the local state machine: every key, value and index at the
// applied index it reports. Replicas that applied the same entries agree.
func (n *Node) Digest() (kv.DigestInfo, error) {
	d, err := n.store.Digest()
	if err != nil {
		return kv.DigestInfo{}, err
	}
	return kv.DigestInfo{Node: n.cfg.ID, AppliedIndex: d.AppliedIndex, Keys: d.Keys, SHA256: d.SHA256}, nil
}

// Snapshot makes raft take a snapshot now and compact its log.
func (n *Node) Snapshot() error { return n.raft.Snapshot() }

// WaitReady blocks until the node can serve linearizable reads (it is in a
// cluster with a reachable leader whose API address is known) or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	wait := 10 * time.Millisecond
	for {
		err := n.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftkv: not ready: %w (%w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// Close stops the node: background work and HTTP first, then raft, then the
// state machine, and last the TLS certificate reloader. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.stop != nil {
			n.stop()
		}
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.httpSrv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
				_ = n.httpSrv.Close()
			}
			cancel()
		} else if n.httpLn != nil {
			_ = n.httpLn.Close()
		}
		n.wg.Wait()
		if n.toLeader != nil {
			n.toLeader.Close()
		}
		if n.raft != nil {
			errs = append(errs, n.raft.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		if n.peers != nil {
			n.peers.CloseIdleConnections()
		}
		if n.tls != nil {
			n.tls.certs.Close()
		}
		if n.unlock != nil {
			errs = append(errs, n.unlock())
		}
		if err := errors.Join(errs...); err != nil {
			n.closeErr = fmt.Errorf("raftkv: close: %w", err)
		}
	})
	return n.closeErr
}

// observeApply wraps the state machine's per-batch observer with the
// test-only apply delay.
func (n *Node) observeApply(observe func(entries int, took time.Duration)) func(int, time.Duration) {
	d := n.cfg.applyDelay
	if d == 0 {
		return observe
	}
	return func(entries int, took time.Duration) {
		observe(entries, took)
		time.Sleep(d) // a test widening a window, never a wait for state
	}
}

// leaderAPIAddr is the leader's registered HTTP address, "" when unknown.
func (n *Node) leaderAPIAddr() string {
	id, _ := n.raft.Leader()
	return n.apiAddrOf(id)
}

// apiAddrOf is the HTTP address this node uses to reach member id ("" for
// none known): its own when id is this node.
func (n *Node) apiAddrOf(id string) string {
	if id == "" {
		return ""
	}
	if id == n.cfg.ID && n.apiAddr != "" {
		return n.apiAddr
	}
	addr, _ := n.peerAPIAddr(id)
	return addr
}

// followLeadership runs for the life of the node and tells the forward
// batcher of every change of leader this node sees, so that batches on
// their way to a leader it no longer follows are abandoned at once (a
// partition that drops packets would otherwise hold them, and their
// slots, until their deadline).
func (n *Node) followLeadership(ctx context.Context) {
	events, cancel := n.raft.SubscribeLeadership()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-events:
			if !ok {
				return
			}
			n.toLeader.LeaderChanged(n.apiAddrOf(l.LeaderID))
		}
	}
}

// peerAPIAddr is the HTTP address this node uses to reach member id's API:
// Config.APIPeerAddrs' override, else the address id registered.
func (n *Node) peerAPIAddr(id string) (string, bool) {
	if a, ok := n.cfg.APIPeerAddrs[id]; ok {
		return a, true
	}
	return n.store.NodeAPIAddr(id)
}

// leaderClient returns a client bound to the leader's API, marked as
// forwarded so the leader never forwards it again.
func (n *Node) leaderClient() (*client.Client, error) {
	addr := n.leaderAPIAddr()
	if addr == "" {
		return nil, fmt.Errorf("%w: no leader known", kv.ErrNoLeader)
	}
	return client.New(client.Config{
		Endpoints:  []string{n.Scheme() + "://" + addr},
		HTTPClient: n.peers,
		Header:     http.Header{httpapi.HeaderForwardedBy: {n.cfg.ID}},
		// One attempt at this node and no discovery: the caller wants
		// this node's answer and retries on its own.
		MaxAttempts:     1,
		RefreshInterval: -1,
	})
}

// leaderReadIndex returns a read index from the leader, sharing the
// request with every linearizable read waiting at the moment (see package
// coalesce for why that is safe).
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	index, err := n.readIndex.Do(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, fmt.Errorf("%w: read index from the leader: %w", kv.ErrTimeout, err)
	}
	return index, err
}

// closeBody reads what is left of a peer's answer (a JSON decoder may stop
// at the end of the value, before the newline after it and the end of the
// body), up to a bound, and closes it: net/http reuses a connection only
// for a body read to its end, and read-index rounds and leadership checks
// are many a second under linearizable reads.
func closeBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// askReadIndex is one read-index round trip to the leader.
func (n *Node) askReadIndex() (uint64, error) {
	leader := n.leaderAPIAddr()
	if leader == "" {
		return 0, fmt.Errorf("%w: no leader known", kv.ErrNoLeader)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readIndexTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.Scheme()+"://"+leader+httpapi.ReadIndexPath, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set(httpapi.HeaderForwardedBy, n.cfg.ID)
	// This node's word for the reads waiting on this round, which all
	// began before it: its term now, read after they began. A voter whose
	// term is the leader's spares the leader its leadership check
	// (raftnode.Node.ReadIndexFor).
	req.Header.Set(httpapi.HeaderTerm, strconv.FormatUint(n.raft.Term(), 10))
	resp, err := n.peers.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: leader at %s unreachable: %w", kv.ErrNoLeader, leader, err)
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("read index from %s: %w", leader, client.DecodeError(resp))
	}
	var out httpapi.ReadIndexResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("%w: read index from %s: %w", kv.ErrNoLeader, leader, err)
	}
	return out.Index, nil
}

// confirmLeadership asks the other voters, over HTTP, whom they follow in
// which term, and succeeds once a quorum (this node included) answers
// "this node, in term". It asks as many as a quorum needs, those that
// completed the last check first, and the rest only if one of them fails
// or has not answered within leaderCheckHedge: in a cluster of three, one
// request a check instead of two. The requests leave after the caller's
// reads began, so the answers vouch for leadership after that moment (see
// raftnode.Config.ConfirmLeadership for why raft's VerifyLeader does not).
// Each answer counts for the voter asked only (checkFollows), so no
// process is counted twice, whatever addresses the nodes table holds.
func (n *Node) confirmLeadership(term uint64) error {
	servers, err := n.raft.Servers()
	if err != nil {
		return err
	}
	var others []string
	voters, self := 0, false
	for _, s := range servers {
		if !s.Voter {
			continue
		}
		voters++
		if s.ID == n.cfg.ID {
			self = true
		} else {
			others = append(others, s.ID)
		}
	}
	need := voters/2 + 1
	if self {
		need--
	}
	if need <= 0 {
		return nil
	}
	if first := n.checkFirst.Load(); first != nil {
		if i := slices.Index(others, *first); i > 0 {
			others[0], others[i] = others[i], others[0]
		}
	}
	// The checks still out once a quorum answered are left to finish (the
	// node's life and readIndexTimeout bound them), not cancelled: a
	// request cancelled in flight closes its connection, and the next
	// round would dial the slower voter again.
	ctx, cancel := context.WithTimeout(n.life, readIndexTimeout)
	type answer struct {
		id  string
		err error
	}
	answers := make(chan answer, len(others))
	var checks sync.WaitGroup
	defer func() {
		go func() {
			checks.Wait()
			cancel()
		}()
	}()
	asked := 0
	ask := func() {
		id := others[asked]
		asked++
		checks.Go(func() { answers <- answer{id, n.checkFollows(ctx, id, term)} })
	}
	for asked < min(need, len(others)) {
		ask()
	}
	hedge := time.NewTimer(leaderCheckHedge)
	defer hedge.Stop()
	var errs []error
	for out := asked; out > 0; {
		select {
		case a := <-answers:
			out--
			if a.err != nil {
				errs = append(errs, a.err)
				if asked < len(others) {
					ask()
					out++
				}
			} else if need--; need == 0 {
				if first := n.checkFirst.Load(); first == nil || *first != a.id {
					n.checkFirst.Store(&a.id)
				}
				return nil
			}
		case <-hedge.C:
			for asked < len(others) {
				ask()
				out++
			}
		}
	}
	return fmt.Errorf("%w: no quorum confirms leadership in term %d: %w", kv.ErrNotLeader, term, errors.Join(errs...))
}

// leaderCheckHedge is how long a leadership check waits for the voters it
// asked first before it asks the others too.
const leaderCheckHedge = 5 * time.Millisecond

// checkFollows asks voter id, at the API address the nodes table holds for
// it, whether it follows this node in term. The address may have come to
// belong to another process (id restarted elsewhere, another member took
// its old port), so the request names id and the answer must come from
// id: a member that is not id refuses (kv.ErrWrongNode), and an answer
// from any other id is not counted.
func (n *Node) checkFollows(ctx context.Context, id string, term uint64) error {
	lc, err := n.leaderCheck(ctx, id)
	if err != nil {
		return err
	}
	if lc.Term != term || lc.LeaderID != n.cfg.ID {
		return fmt.Errorf("%s follows %q in term %d", id, lc.LeaderID, lc.Term)
	}
	return nil
}

// readIndexTimeout bounds one read-index round trip to the leader.
const readIndexTimeout = 3 * time.Second

// ready reports whether the node can serve a linearizable read now.
func (n *Node) ready(ctx context.Context) error {
	servers, err := n.raft.Servers()
	if err != nil {
		return err
	}
	if len(servers) == 0 {
		return fmt.Errorf("%w: not part of a cluster yet", kv.ErrNoLeader)
	}
	if !slices.ContainsFunc(servers, func(s raftnode.Server) bool { return s.ID == n.cfg.ID }) {
		return fmt.Errorf("%w: this node is not a member of the cluster (removed?)", kv.ErrNoLeader)
	}
	if cur, _ := n.store.NodeAPIAddr(n.cfg.ID); n.apiAddr != "" && cur != n.apiAddr {
		return fmt.Errorf("%w: this node's API address is not registered yet", kv.ErrNoLeader)
	}
	if n.raft.IsLeader() {
		_, err := n.raft.LinearizableBarrier(ctx)
		return err
	}
	s := n.raft.Status()
	if s.LeaderID == "" {
		return fmt.Errorf("%w: no leader known", kv.ErrNoLeader)
	}
	// A follower serves linearizable reads with a read index from the
	// leader: it is ready when the leader answers one and this node has
	// applied up to it.
	index, err := n.leaderReadIndex(ctx)
	if err != nil {
		return err
	}
	if err := n.store.WaitApplied(ctx, index); err != nil {
		return fmt.Errorf("%w: applied index %d is behind the leader's read index %d: %w", kv.ErrTimeout, n.store.AppliedIndex(), index, err)
	}
	return nil
}
