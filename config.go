package raftkv

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftnode"
	"github.com/raftkv/raftkv/store"
)

// Config configures a Node. ID and DataDir are required.
type Config struct {
	// ID is the node's raft server id: unique in the cluster, stable for
	// the life of its data directory.
	ID string
	// DataDir holds the raft log (raft.db or wal/: see LogStore),
	// snapshots/ and kv.db. One process at a time.
	DataDir string
	// LogStore is the kind of raft log store in DataDir: "boltdb"
	// (raftnode.LogStoreBoltDB, raft-boltdb/v2 in raft.db; the default
	// when empty) or "wal" (raftnode.LogStoreWAL, hashicorp/raft-wal in
	// wal/). A data directory keeps the kind it was created with: Open
	// refuses one that holds the other kind's state
	// (raftnode.ErrLogStoreMismatch).
	LogStore string

	// RaftAddr is where the raft transport listens (default 127.0.0.1:0).
	// With port 0 the system picks a free port the first time, and the node
	// remembers it in the data directory (file raft-addr) and binds it again
	// on every later Open, because its cluster knows the node by that
	// address; Open fails if the port has been taken meanwhile.
	// RaftAdvertise is where peers dial it (default the bound address).
	RaftAddr      string
	RaftAdvertise string
	// RaftPeerAddrs overrides, by server id, the address this node dials
	// to reach a peer's raft transport (for example through a proxy).
	RaftPeerAddrs map[string]string
	// APIPeerAddrs overrides, by server id, the HTTP address this node uses
	// for its requests to a peer's API (write batches, read indexes,
	// leadership checks, joins, relayed calls) instead of the address the
	// peer registered (for example through a proxy that a test cuts).
	APIPeerAddrs map[string]string

	// HTTPAddr, if set, makes Open serve the HTTP API there (port 0 picks a
	// free port; see Node.HTTPAddr). HTTPAdvertise is the host:port other
	// members and redirected clients use (default the bound address).
	HTTPAddr      string
	HTTPAdvertise string
	// HTTPListener, if set, is used instead of listening on HTTPAddr (a
	// caller that must know the address before Open, such as a test that
	// lists it in other nodes' Join). The node closes it.
	HTTPListener net.Listener

	// Join lists HTTP addresses (host:port) of other members, asked when
	// this node has no raft state yet.
	Join []string
	// BootstrapExpect is the number of voters that form a new cluster
	// together. 0 means: join an existing cluster through Join only; with no
	// Join addresses, a single-node cluster is formed (as with 1).
	BootstrapExpect int

	// PromoteLag is how many entries a non-voter's applied index may be
	// behind the leader's last index for the leader to count it as caught
	// up; one caught up for PromoteRounds checks in a row is promoted to
	// voter (default DefaultPromoteLag). Only the leader's setting counts.
	PromoteLag uint64

	// MaxValueSize limits values (default kv.DefaultMaxValueSize).
	MaxValueSize int64

	// WatchHistory is how many raft indexes of change history the node
	// keeps for watches (default DefaultWatchHistory); negative keeps
	// none, so a watch sees only the changes applied while it is open.
	// Members of one cluster should keep the same.
	WatchHistory int
	// WatchWindow bounds the memory, in bytes of keys and values, of the
	// recent events the node keeps for watchers that keep up (default
	// DefaultWatchWindow, 16 MiB); a watcher behind it reads the
	// stored history instead.
	WatchWindow int
	// MaxWatchers bounds the watches and blocking reads the node serves at
	// once (default DefaultMaxWatchers); past it they fail with
	// kv.ErrTooManyWatchers.
	MaxWatchers int

	// LeaseCheckpoint is how often the leader records, through raft, the
	// remaining time of each lease whose time the log has not recorded
	// for that long (default DefaultLeaseCheckpoint, 2s): a node that
	// restarts resumes a lease from it. A lease is gone no later than its
	// TTL plus this interval plus an election timeout after its last
	// keepalive (docs/leases.md).
	LeaseCheckpoint time.Duration

	// Logger receives the node's logs; nil discards them. RaftLogLevel is
	// the lowest raft log level passed on ("info" by default).
	Logger       *slog.Logger
	RaftLogLevel string

	// Registry receives the node's metrics and is what /metrics serves;
	// nil creates one for this node, with the Go runtime and process
	// collectors (go_*, process_*) registered.
	Registry *prometheus.Registry

	// Pprof serves net/http/pprof under /debug/pprof/ on the HTTP API.
	Pprof bool

	// TLS, if set, secures every connection (docs/architecture.md, "TLS"):
	// the HTTP API is HTTPS, the raft transport and member-to-member HTTP
	// are mutual TLS with member certificates. Nil is plaintext. A cluster
	// is all TLS or all plaintext.
	TLS *TLSConfig

	// ACL, if set, turns access control on (docs/security.md): tokens
	// with rights on key prefixes. Nil serves every request. Every member
	// of a cluster should run with the same setting.
	ACL *ACLConfig

	// Tuning adjusts raft; the zero value is the production default.
	Tuning Tuning

	// applyDelay, set only by tests (export_test.go), stalls the state
	// machine after every applied batch, to widen windows such as a
	// rebuild's log replay.
	applyDelay time.Duration
	// walSegmentSize, set only by tests (export_test.go), is
	// raftnode.Config.WALSegmentSize: small segments that rotate.
	walSegmentSize int
	// protocolVersion, set only by tests (export_test.go), replaces
	// kv.ProtocolVersion as the version this node states and checks: a
	// test's stand-in for a build of another version.
	protocolVersion int
}

// The kinds of raft log store (Config.LogStore).
const (
	// LogStoreBoltDB is raft-boltdb/v2 in the data directory's raft.db:
	// the default.
	LogStoreBoltDB = raftnode.LogStoreBoltDB
	// LogStoreWAL is hashicorp/raft-wal in the data directory's wal/.
	LogStoreWAL = raftnode.LogStoreWAL
)

// TLSConfig names the PEM files of a node's TLS set-up.
type TLSConfig struct {
	// CertFile and KeyFile are the node's member certificate (OU
	// tlsutil.MemberOU, server and client auth, valid for the hosts peers
	// and clients dial) and its key. They are read again when they change
	// (polled every second) and on Node.ReloadTLS: new connections use the
	// new pair.
	CertFile string
	KeyFile  string
	// CAFile is the cluster's CA: the members' certificates are checked
	// against it, and clients' too unless ClientCAFile is set.
	CAFile string
	// ClientCAFile, if set, makes the HTTP API require a client
	// certificate, signed by it or by CAFile. Without it a client
	// certificate is verified (against CAFile) only when one is given.
	ClientCAFile string
}

// Tuning holds raft timing and log-compaction settings. Zero fields take
// the defaults of package raftnode.
type Tuning struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	// MaxBatch is the most writes group commit gathers into one raft
	// entry; 1 turns group commit off.
	MaxBatch int
	// LeaderWait bounds how long a write or a linearizable read waits for
	// a leader when none took it (no leader known, the leader unreachable
	// or no longer leading: nothing was sent or applied), counted from the
	// first failure and also bounded by the request; default
	// DefaultLeaderWait (5s). Past it the answer is kv.ErrNoLeader (503).
	LeaderWait time.Duration
	// FSMSync fsyncs the state file (kv.db) on every commit of it. Off by
	// default: the raft log, always synced, is the durable record, and a
	// node that finds kv.db was open without fsync when its machine stopped
	// rebuilds it from the newest snapshot and the log (store.Options.NoSync).
	FSMSync bool
	// StateCommitInterval is how long applied writes may wait in an open
	// kv.db transaction for later ones to share its commit (default
	// store.DefaultCommitInterval, 100ms; negative, or with FSMSync: every
	// batch commits as it is applied). Reads commit it first, so they never
	// miss an applied write; durability is the raft log's either way.
	StateCommitInterval time.Duration
}

// The defaults of Config's watch settings.
const (
	DefaultWatchHistory = 100_000
	DefaultMaxWatchers  = 10_000
	DefaultWatchWindow  = store.DefaultWatchWindow
)

func (c *Config) setDefaults() error {
	if c.ID == "" {
		return errors.New("raftkv: Config.ID is required")
	}
	if c.DataDir == "" {
		return errors.New("raftkv: Config.DataDir is required")
	}
	kind, err := raftnode.ParseLogStore(c.LogStore)
	if err != nil {
		return fmt.Errorf("raftkv: Config.LogStore: %w", err)
	}
	c.LogStore = kind
	if c.RaftAddr == "" {
		c.RaftAddr = "127.0.0.1:0"
	}
	if t := c.TLS; t != nil && *t == (TLSConfig{}) {
		c.TLS = nil // nothing given: plaintext
	} else if t != nil && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "") {
		return errors.New("raftkv: Config.TLS needs CertFile, KeyFile and CAFile together (or none of them)")
	}
	if c.ACL != nil {
		if err := c.ACL.check(); err != nil {
			return err
		}
	}
	if c.BootstrapExpect < 0 {
		return errors.New("raftkv: Config.BootstrapExpect must not be negative")
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		c.BootstrapExpect = 1
	}
	if c.Tuning.LeaderWait <= 0 {
		c.Tuning.LeaderWait = DefaultLeaderWait
	}
	if c.PromoteLag == 0 {
		c.PromoteLag = DefaultPromoteLag
	}
	if c.MaxValueSize <= 0 {
		c.MaxValueSize = kv.DefaultMaxValueSize
	}
	if c.WatchHistory == 0 {
		c.WatchHistory = DefaultWatchHistory
	}
	if c.MaxWatchers <= 0 {
		c.MaxWatchers = DefaultMaxWatchers
	}
	if c.LeaseCheckpoint <= 0 {
		c.LeaseCheckpoint = DefaultLeaseCheckpoint
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = NewRegistry()
	}
	return nil
}

// NewRegistry returns the registry a node makes for itself when
// Config.Registry is nil: /metrics then also shows the Go runtime
// (go_memstats_heap_inuse_bytes, ...) and the process, as a Prometheus
// user expects. A program that registers collectors of its own beside the
// node's starts from it and passes it as Config.Registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
