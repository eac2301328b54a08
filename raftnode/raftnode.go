package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/coalesce"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Errors returned by this package, beside the kv sentinels.
var (
	// ErrAlreadyBootstrapped: BootstrapCluster was refused because this node
	// already has raft state. It is the normal answer on restart.
	ErrAlreadyBootstrapped = errors.New("raft state exists: already bootstrapped")
	// ErrConfigurationChanged: a membership change was refused, and
	// nothing changed, because the configuration is no longer the one it
	// was meant for (another change came first). Check again and retry.
	ErrConfigurationChanged = errors.New("raft configuration changed")
)

// Config is the raft side of a node. ID, DataDir and RaftAddr are required;
// zero values elsewhere take the defaults documented on each field.
type Config struct {
	// ID is the raft server id, unique and stable for the life of the member.
	ID string
	// DataDir holds the raft log and stable store (raft.db or wal/, see
	// LogStore) and snapshots/.
	DataDir string
	// LogStore is the kind of raft log store: LogStoreBoltDB ("boltdb",
	// the default when empty) or LogStoreWAL ("wal"). Open refuses, with
	// ErrLogStoreMismatch, a DataDir that holds the other kind's state.
	LogStore string
	// WALSegmentSize is the size in bytes of a new WAL segment file (0:
	// raft-wal's default, 64 MiB). Tests make it small, so that segments
	// fill, rotate and are deleted by log compaction.
	WALSegmentSize int
	// RaftAddr is the TCP address the raft transport listens on. Port 0 picks
	// a free port (see Node.RaftAddr).
	RaftAddr string
	// RaftAdvertise is the address peers dial; defaults to the bound address,
	// which must then not be unspecified (0.0.0.0). A host name (not an IP)
	// is kept as a name in the configuration and resolved by each peer at
	// each dial, so the member is found when the name moves to another IP.
	RaftAdvertise string
	// TLS, if set, makes the transport mutual TLS between members
	// (tls.go); nil is plain TCP.
	TLS *TLS
	// PeerAddrs, if set, overrides the address this node dials to reach a
	// peer, by server id; peers not in it are dialed at their configured
	// address. A test harness uses it to route each link through a proxy.
	PeerAddrs map[string]string
	// Logger receives raft's logs (at RaftLogLevel and above). Nil discards.
	Logger *slog.Logger
	// RaftLogLevel is the lowest raft log level passed on: "debug", "info"
	// (the default), "warn" or "error". raft's own default is debug.
	RaftLogLevel string

	// LogCacheSize is the number of recent log entries kept in memory in
	// front of the log store (default 1024).
	LogCacheSize int
	// MaxAppendEntries bounds the entries in one AppendEntries RPC (default 256).
	MaxAppendEntries int
	// SnapshotThreshold is the number of new log entries that trigger a
	// snapshot (default 8192); SnapshotInterval how often that is checked
	// (default 30s); TrailingLogs how many entries stay after a snapshot,
	// so a briefly absent follower catches up from the log (default 10240).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout default to
	// raft's (1s, 1s, 500ms). Tests shorten them.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// ApplyTimeout bounds a write whose context has no deadline (default 10s).
	ApplyTimeout time.Duration
	// CommitTimeout is how long the leader stays silent before it sends
	// followers an AppendEntries that carries the commit index (default
	// 5ms; raft's own default is 50ms). Followers learn that an entry is
	// committed only from such a message, and a follower's linearizable
	// read waits until it has applied the leader's commit index: a read
	// that follows a write on another node waits up to twice this long.
	CommitTimeout time.Duration
	// ConfirmLeadership, if set, replaces raft's VerifyLeader in the read
	// path: it must return nil only if a quorum of voters, asked after the
	// call began, answered that this node leads them in term. raft's
	// VerifyLeader also counts answers to messages sent before it was
	// called, which a leader paused (SIGSTOP, a long GC, a frozen VM) and
	// resumed reads out of its socket buffers: it then serves a stale read
	// while a newer leader exists. The caller, which knows the members'
	// API addresses, asks them directly.
	ConfirmLeadership func(term uint64) error
	// MaxBatch is the most writes group commit gathers into one raft entry
	// (default 512); 1 turns group commit off (one entry per write).
	MaxBatch int
	// MaxInflight is how many group-commit entries raft may hold at once
	// (default 2).
	MaxInflight int
}

func (c *Config) setDefaults() error {
	if c.ID == "" {
		return errors.New("raftnode: ID is required")
	}
	if c.DataDir == "" {
		return errors.New("raftnode: DataDir is required")
	}
	if c.RaftAddr == "" {
		return errors.New("raftnode: RaftAddr is required")
	}
	kind, err := ParseLogStore(c.LogStore)
	if err != nil {
		return err
	}
	c.LogStore = kind
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LogCacheSize == 0 {
		c.LogCacheSize = 1024
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = 256
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 5 * time.Millisecond
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 2
	}
	return nil
}

func parseLevel(s string) (hclog.Level, error) {
	switch s {
	case "", "info":
		return hclog.Info, nil
	case "debug":
		return hclog.Debug, nil
	case "warn":
		return hclog.Warn, nil
	case "error":
		return hclog.Error, nil
	}
	return hclog.NoLevel, fmt.Errorf("raftnode: unknown raft log level %q", s)
}

// Node is a running raft member whose state machine is a *store.Store.
type Node struct {
	cfg Config
	// electionTimeout is raft's, after defaults.
	electionTimeout time.Duration
	log             *slog.Logger
	raft            *raft.Raft
	fsm             *store.Store
	trans           *raft.NetworkTransport
	logs            logStore

	// readyTerm is the term in which this node, as leader, has seen its own
	// first entry applied: only then are the entries committed by earlier
	// leaders in the state machine, so only then does it serve
	// linearizable reads (readindex.go). readyMu guards readyCh, closed and
	// replaced when readyTerm changes.
	readyTerm atomic.Uint64
	readyMu   sync.Mutex
	readyCh   chan struct{}

	// verify shares VerifyLeader rounds among concurrent reads: at most
	// one in flight, and a read never uses a round that began before it.
	verify coalesce.Group[struct{}]
	// vouched counts read indexes served on a follower's word (ReadIndexFor).
	vouched atomic.Uint64
	// leadership fans the leadership watcher's views out to subscribers
	// (leadership.go).
	leadership leadershipHub
	// commit gathers concurrent writes into shared entries; nil when
	// MaxBatch is 1.
	commit *committer
	// direct counts the entries handed to raft outside the committer (the
	// leader's no-op, writes with group commit off) until raft answers
	// them; Close waits for them before it shuts raft down (see Close).
	direct applyGate

	shutdownCh chan struct{}
	closeOnce  sync.Once
	closeErr   error
	wg         sync.WaitGroup
}

// Open starts raft over the state machine fsm, which the caller opened and
// closes (after Node.Close). It does not bootstrap: see Bootstrap and
// AddVoter.
func Open(cfg Config, fsm *store.Store) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	level, err := parseLevel(cfg.RaftLogLevel)
	if err != nil {
		return nil, err
	}
	hlog := newHclogBridge(cfg.Logger, level)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	logs, err := openLogStore(cfg.DataDir, cfg.LogStore, cfg.WALSegmentSize, hlog)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, fsm: fsm, logs: logs, readyCh: make(chan struct{}), shutdownCh: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			if n.trans != nil {
				_ = n.trans.Close()
			}
			_ = logs.Close()
		}
	}()

	cache, err := raft.NewLogCache(cfg.LogCacheSize, logs)
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	snaps, err := openSnapshotStore(cfg.DataDir, hlog)
	if err != nil {
		return nil, err
	}
	if err := catchUpFromSnapshot(fsm, snaps, cfg.Logger); err != nil {
		return nil, err
	}

	// An advertised IP goes to raft as it is; a host name stays a name in
	// the configuration, resolved by each peer at each dial (advertise.go).
	advertise, err := advertiseAddr(cfg.RaftAdvertise)
	if err != nil {
		return nil, err
	}
	// MaxRPCsInFlight 1: no pipelined replication. raft v1.7.3's pipeline
	// can wedge for good after a follower answers an AppendEntries with
	// success false (a term change, a log mismatch): the response decoder
	// stops reading, the decoded-response goroutine blocks handing on the
	// next answer, and the sender, which may still pick one more send
	// before it notices, blocks queueing it, inside the replication
	// goroutine that would close the pipeline. That follower then gets
	// heartbeats but no entries until the leader restarts, and the
	// leader's Shutdown waits for that goroutine forever (seen after
	// leadership transfers: a node's Close hung 8 minutes in
	// TestLeaseExpiryAcrossLeaderChanges). Without a pipeline each
	// AppendEntries waits for its answer; group commit makes them large.
	tc := &raft.NetworkTransportConfig{MaxPool: 3, MaxRPCsInFlight: 1, Timeout: 10 * time.Second, Logger: hlog}
	if len(cfg.PeerAddrs) > 0 {
		tc.ServerAddressProvider = peerAddrs(cfg.PeerAddrs)
	}
	if cfg.TLS != nil {
		var stream *tlsStream
		if stream, err = newTLSStream(cfg.RaftAddr, advertise, cfg.TLS); err == nil {
			tc.Stream = stream
			n.trans = raft.NewNetworkTransportWithConfig(tc)
		}
	} else if name, ok := advertise.(hostAddr); ok {
		var stream *tcpStream
		if stream, err = newTCPStream(cfg.RaftAddr, name); err == nil {
			tc.Stream = stream
			n.trans = raft.NewNetworkTransportWithConfig(tc)
		}
	} else {
		n.trans, err = raft.NewTCPTransportWithConfig(cfg.RaftAddr, advertise, tc)
	}
	if err != nil {
		return nil, fmt.Errorf("raftnode: raft transport on %s: %w", cfg.RaftAddr, err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.CommitTimeout = cfg.CommitTimeout
	// A round of group-commit entries (commit.go) is handed to raft one
	// Apply after another; with the apply channel buffered (to
	// MaxAppendEntries) they wait there together, and the leader loop
	// takes them all into one log write. Apply's enqueue timeout no longer
	// bounds the wait, but the caller's context does (writeq), and raft
	// answers every future, also those still buffered when leadership ends
	// (ErrNotLeader: never appended).
	rc.BatchApplyCh = true
	// kv.db outlives a restart (store.Open discards it only when it cannot
	// be trusted) and records its own applied index, so raft need not
	// rebuild it from the newest snapshot on every start (catchUpFromSnapshot
	// covers the case where kv.db is behind that snapshot).
	rc.NoSnapshotRestoreOnStart = true
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	n.electionTimeout = rc.ElectionTimeout
	n.raft, err = raft.NewRaft(rc, fsm, cache, logs, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("raftnode: start raft: %w", err)
	}
	n.verify.Round = func() (struct{}, error) {
		var err error
		if cfg.ConfirmLeadership != nil {
			err = cfg.ConfirmLeadership(n.raft.CurrentTerm())
		} else {
			err = n.raft.VerifyLeader().Error()
		}
		if err != nil {
			if errors.Is(err, raft.ErrRaftShutdown) {
				err = kv.ErrClosed
			}
			err = fmt.Errorf("verify leader: %w: %w", kv.ErrNotLeader, err)
		}
		return struct{}{}, err
	}
	ok = true

	if cfg.MaxBatch > 1 {
		n.commit = newCommitter(n, cfg.MaxBatch, 4<<20, cfg.MaxInflight, cfg.MaxAppendEntries)
	}
	n.startLeadershipWatch()
	events, _ := n.SubscribeLeadership() // ends with the watcher, at Close
	n.wg.Add(1)
	go n.prepareReads(events)
	return n, nil
}

// openSnapshotStore opens dir's snapshots/, which keeps the two newest.
func openSnapshotStore(dir string, hlog hclog.Logger) (*raft.FileSnapshotStore, error) {
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	return snaps, nil
}

// catchUpFromSnapshot restores fsm from the newest raft snapshot when kv.db
// is behind it. raft starts replaying the log after the snapshot's index
// (NoSnapshotRestoreOnStart or not), so an FSM below that index would miss
// entries for good. This happens when kv.db was lost or replaced, when
// store.Open discarded it (by default kv.db is written without fsync, and
// after a machine stop it is rebuilt from the newest snapshot and the log:
// see store/sync.go), or when the snapshot ended on entries the FSM never
// sees (raft no-ops). See docs/architecture.md, "Start-up:
// raftnode.catchUpFromSnapshot" and "kv.db without fsync".
func catchUpFromSnapshot(fsm *store.Store, snaps *raft.FileSnapshotStore, log *slog.Logger) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("raftnode: list snapshots: %w", err)
	}
	if len(list) == 0 || list[0].Index <= fsm.AppliedIndex() {
		return nil
	}
	meta, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("raftnode: open snapshot %s: %w", list[0].ID, err)
	}
	log.Info("state machine is behind the newest snapshot; restoring it",
		"applied_index", fsm.AppliedIndex(), "snapshot_index", meta.Index)
	if err := fsm.Restore(rc); err != nil {
		return fmt.Errorf("raftnode: restore snapshot %s: %w", meta.ID, err)
	}
	return fsm.SetAppliedFloor(meta.Index)
}

// peerAddrs is a raft.ServerAddressProvider over a fixed map.
type peerAddrs map[string]string

func (p peerAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := p[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	return "", fmt.Errorf("no override for %s", id)
}

// RaftAddr is the address peers reach this node's raft transport at.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// ID is this node's raft server id.
func (n *Node) ID() string { return n.cfg.ID }

// Raft exposes the underlying raft instance for tests and diagnostics.
func (n *Node) Raft() *raft.Raft { return n.raft }

// ElectionTimeout is the election timeout raft runs with (Config's, or
// raft's default).
func (n *Node) ElectionTimeout() time.Duration { return n.electionTimeout }

// IsLeader reports whether this node believes it is the leader. Only a
// ReadIndex round proves it.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's id and raft address as this node knows them;
// empty when no leader is known.
func (n *Node) Leader() (id, raftAddr string) {
	addr, lid := n.raft.LeaderWithID()
	return string(lid), string(addr)
}

// Status is a point-in-time view of the node for /v1/cluster and metrics.
type Status struct {
	ID           string
	State        string // Leader, Follower, Candidate, Shutdown
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64 // the state machine's own applied index
	LastIndex    uint64
	LeaderID     string
	LeaderAddr   string
	// LastContact is when the leader was last heard from; zero on the
	// leader itself and before any contact.
	LastContact time.Time
}

// Term is the node's current raft term. A node whose term is T has voted
// for no candidate of a later term yet: raft moves to a candidate's term
// before it grants its vote.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Status reads the node's current status without blocking on raft.
func (n *Node) Status() Status {
	lid, laddr := n.Leader()
	state := n.raft.State()
	var contact time.Time
	if state != raft.Leader { // raft keeps the time from before it led
		contact = n.raft.LastContact()
	}
	return Status{
		ID:           n.cfg.ID,
		State:        state.String(),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.AppliedIndex(),
		LastIndex:    n.raft.LastIndex(),
		LeaderID:     lid,
		LeaderAddr:   laddr,
		LastContact:  contact,
	}
}

// Apply hands cmd to raft and waits for the state machine's result.
//
// Errors: kv.ErrNotLeader when this node is not the leader (nothing was
// applied); kv.ErrNoLeader during a leadership transfer (nothing applied);
// kv.ErrOutcomeUnknown when the entry may or may not have been committed
// (leadership lost after hand-off, ctx done while waiting, shutdown, or
// this node's state machine failing on a committed entry). A failed
// condition or a reused idempotency key is not an error here: it is in the
// Result.
func (n *Node) Apply(ctx context.Context, cmd *store.Command) (*store.Result, error) {
	res, errs := n.ApplyMany([]context.Context{ctx}, []*store.Command{cmd})
	return res[0], errs[0]
}

// ApplyMany applies cmds as Apply does, concurrently, each bounded by its
// own context (ctxs[i] for cmds[i]), and returns each command's result or
// error. Group commit may put several of them in one raft entry.
func (n *Node) ApplyMany(ctxs []context.Context, cmds []*store.Command) ([]*store.Result, []error) {
	res := make([]*store.Result, len(cmds))
	errs := make([]error, len(cmds))
	var todoCtx []context.Context
	var todo []*store.Command
	var at []int
	for i, ctx := range ctxs {
		switch {
		case ctx.Err() != nil:
			errs[i] = fmt.Errorf("%w: %w", kv.ErrTimeout, ctx.Err())
		case n.raft.State() != raft.Leader:
			errs[i] = fmt.Errorf("apply: %w", kv.ErrNotLeader)
		default:
			todoCtx, todo, at = append(todoCtx, ctx), append(todo, cmds[i]), append(at, i)
		}
	}
	if len(todo) == 0 {
		return res, errs
	}
	var r []*store.Result
	var e []error
	if n.commit != nil {
		r, e = n.commit.ApplyMany(todoCtx, todo)
	} else {
		r, e = n.applyEach(todoCtx, todo)
	}
	for j, i := range at {
		res[i], errs[i] = r[j], e[j]
	}
	return res, errs
}

// applyEach hands every command to raft as an entry of its own (group
// commit off), then waits for each.
func (n *Node) applyEach(ctxs []context.Context, cmds []*store.Command) ([]*store.Result, []error) {
	res := make([]*store.Result, len(cmds))
	errs := make([]error, len(cmds))
	dones := make([]chan error, len(cmds))
	fs := make([]raft.ApplyFuture, len(cmds))
	for i, cmd := range cmds {
		if !n.direct.enter() {
			errs[i] = fmt.Errorf("raft: %w", kv.ErrClosed)
			continue
		}
		timeout := n.cfg.ApplyTimeout
		if dl, ok := ctxs[i].Deadline(); ok {
			timeout = time.Until(dl)
		}
		fs[i] = n.raft.Apply(cmd.Encode(nil), timeout)
		// Waits for raft's answer even when the caller stops waiting, so
		// that Close knows when raft holds none of these entries.
		dones[i] = make(chan error, 1)
		go func() {
			defer n.direct.leave()
			dones[i] <- fs[i].Error()
		}()
	}
	for i, f := range fs {
		if f != nil {
			res[i], errs[i] = waitFuture(ctxs[i], f, dones[i])
		}
	}
	return res, errs
}

// waitFuture waits for one command's entry (done: f.Error(), from a
// goroutine of the caller's), or for ctx.
func waitFuture(ctx context.Context, f raft.ApplyFuture, done <-chan error) (*store.Result, error) {
	select {
	case err := <-done:
		if err != nil {
			return nil, applyError(err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w after the write was handed to raft", kv.ErrOutcomeUnknown, ctx.Err())
	}
	rs, ok := f.Response().([]*store.Result)
	if !ok || len(rs) != 1 || rs[0] == nil {
		return nil, fmt.Errorf("%w: unexpected state machine response %#v", kv.ErrOutcomeUnknown, f.Response())
	}
	return commandOutcome(rs[0])
}

// applyError maps raft's apply errors to the kv sentinels, which callers
// branch on (never on raft's own errors): what was certainly not applied
// against what may have been.
func applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("apply: %w", kv.ErrNotLeader)
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: leadership transfer in progress, write not applied", kv.ErrNoLeader)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, kv.ErrClosed)
	default:
		// ErrLeadershipLost: the entry may have been committed by the next
		// leader. ErrEnqueueTimeout is in fact never handed off, but the
		// leader was too busy to take it; reporting it as unknown errs on
		// the side of the client that must not assume either way.
		return fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, err)
	}
}

// Snapshot asks raft for a snapshot now (tests, operators).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raftnode: snapshot: %w", err)
	}
	return nil
}

// Close shuts raft down, then the transport and the log store, in that order. It
// does not close the state machine. Close is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.shutdownCh)
		// The committer closes first, while raft still runs: writes still
		// queued fail as never applied, and the entries already handed to
		// raft get their answer from it (applied, or leadership lost).
		// Then the entries handed to raft directly are waited for the same
		// way, and no new one is handed. In the other order an entry still
		// in raft's buffered apply channel (BatchApplyCh) when raft shut
		// down would never be answered, and its waiter would wait for ever.
		if n.commit != nil {
			n.commit.Close()
		}
		n.direct.close()
		err := n.raft.Shutdown().Error()
		n.wg.Wait()
		err = errors.Join(err, n.trans.Close(), n.logs.Close())
		if err != nil {
			n.closeErr = fmt.Errorf("raftnode: close: %w", err)
		}
	})
	return n.closeErr
}

var _ io.Closer = (*Node)(nil)

// applyGate counts raft.Apply calls whose futures are still unanswered, so
// that Close can wait for them while raft runs; after close, enter refuses.
type applyGate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// enter counts one more entry about to be handed to raft, or reports
// false once the gate is closed (the node is closing: hand nothing).
func (g *applyGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// leave is called once raft answered an entry enter counted.
func (g *applyGate) leave() { g.wg.Done() }

// close refuses new entries and waits for raft to answer the counted ones.
func (g *applyGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
