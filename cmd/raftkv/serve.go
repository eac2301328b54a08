package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/kv"
)

const serveSummary = `Runs one raftkv node. Every flag can also be set with an environment
variable: RAFTKV_ and the flag name in upper case with - as _ (for example
RAFTKV_DATA_DIR); a flag on the command line wins.

A node with an empty data dir forms a cluster with --bootstrap-expect
nodes found through --join, or joins the cluster a --join node is in. A
node with a data dir rejoins its cluster as before. SIGINT or SIGTERM stops
it cleanly.

With --tls-cert, --tls-key and --tls-ca (all three, or none) every
connection is TLS: the HTTP API is HTTPS, the raft transport and the
members' requests to each other are mutual TLS with member certificates
(raftkv cert makes a development set). The certificate and key files are
read again when they change, and on SIGHUP.

With --acl every API request but /livez, /readyz and /metrics (those too
with --acl-metrics) needs a token (Authorization: Bearer, or the CLI's
--token). The founding members (--bootstrap-expect) get the root token's
secret in --acl-bootstrap-token-file (raftkv acl bootstrap-token writes a
new one); a member that joins later presents an admin token from
--acl-token-file. See docs/security.md.`

// serveFlags are the flags of raftkv serve.
type serveFlags struct {
	id, dataDir, httpAddr, httpAdv, raftAddr, raftAdv, peerAddrs, apiPeerAddrs *string
	expect                                                                     *int
	promoteLag                                                                 *uint64
	join                                                                       *string
	maxValue                                                                   *int64
	logLevel, raftLogLevel, raftLogStore                                       *string
	maxBatch                                                                   *int
	snapThreshold                                                              *uint64
	snapInterval                                                               *time.Duration
	trailingLogs                                                               *uint64
	leaderWait                                                                 *time.Duration
	watchHistory, watchWindow, maxWatchers                                     *int
	leaseCheckpoint, stateCommit                                               *time.Duration
	fsmSync, pprofOn, raftMetrics                                              *bool
	logFormat, tlsCert, tlsKey, tlsCA, tlsClientCA                             *string
	acl, aclReset, aclMetrics                                                  *bool
	aclBootstrapFile, aclTokenFile                                             *string
}

// newServeCommand defines the serve command and its flags (the deployment
// files' test reads the flag set from it).
func newServeCommand(stderr io.Writer) (*command, *serveFlags) {
	c := newCommand("serve", "", serveSummary, stderr)
	fs := c.fs
	f := &serveFlags{}
	f.id = fs.String("id", "", "raft server id of this node, unique and stable (required)")
	f.dataDir = fs.String("data-dir", "", "directory for the raft log (raft.db or wal/), snapshots/ and kv.db (required)")
	f.raftLogStore = fs.String("raft-log-store", raftkv.LogStoreBoltDB, "raft log store: boltdb (raft-boltdb, raft.db) or wal (raft-wal, wal/); a data dir keeps the kind it was made with, and a node refuses to start with the other")
	f.httpAddr = fs.String("http-addr", "127.0.0.1:8001", "address the HTTP API listens on")
	f.httpAdv = fs.String("http-advertise", "", "HTTP host:port other nodes and redirected clients use, a host name resolved at each connection (default: --http-addr)")
	f.raftAddr = fs.String("raft-addr", "127.0.0.1:9001", "address the raft transport listens on")
	f.raftAdv = fs.String("raft-advertise", "", "raft host:port peers dial; a host name is kept as a name and resolved at each dial (default: --raft-addr)")
	f.peerAddrs = fs.String("raft-peer-addrs", "", "dial overrides for peers' raft transports, as id=host:port,... (proxies in tests; stable DNS names where IPs change, as in deploy/)")
	f.apiPeerAddrs = fs.String("api-peer-addrs", "", "dial overrides for peers' HTTP APIs, as id=host:port,... (for proxies in tests)")
	f.expect = fs.Int("bootstrap-expect", 0, "number of voters that form a new cluster together (0: join only; alone with no --join: single node)")
	f.join = fs.String("join", "", "comma-separated HTTP addresses of other nodes")
	f.promoteLag = fs.Uint64("promote-lag", raftkv.DefaultPromoteLag, "entries a joining non-voter may be behind the leader and count as caught up; the leader promotes it to voter after "+strconv.Itoa(raftkv.PromoteRounds)+" checks in a row within it")
	f.maxValue = fs.Int64("max-value-size", 1<<20, "largest value in bytes")
	f.logLevel = fs.String("log-level", "info", "log level: debug, info, warn, error")
	f.raftLogLevel = fs.String("raft-log-level", "warn", "lowest raft log level shown: debug, info, warn, error")
	f.maxBatch = fs.Int("max-batch", 0, "most writes gathered into one raft entry (0: default 512; 1: no group commit)")
	f.snapThreshold = fs.Uint64("snapshot-threshold", 0, "new log entries that trigger a snapshot (0: default 8192)")
	f.snapInterval = fs.Duration("snapshot-interval", 0, "how often raft checks whether to snapshot (0: default 30s)")
	f.trailingLogs = fs.Uint64("trailing-logs", 0, "log entries kept after a snapshot (0: default 10240)")
	f.leaderWait = fs.Duration("leader-wait", 0, "how long a write or linearizable read waits for a leader when none took it (0: default 5s)")
	f.watchHistory = fs.Int("watch-history", raftkv.DefaultWatchHistory, "raft indexes of change history kept for watches (0: none; a watch then sees only changes made while it is open)")
	f.watchWindow = fs.Int("watch-window", raftkv.DefaultWatchWindow, "bytes of recent events kept in memory for watchers that keep up; one behind reads the stored history")
	f.maxWatchers = fs.Int("max-watchers", raftkv.DefaultMaxWatchers, "most watches and blocking reads served at once; past it 503 too_many_watchers")
	f.leaseCheckpoint = fs.Duration("lease-checkpoint-interval", raftkv.DefaultLeaseCheckpoint, "how often the leader records leases' remaining time through raft; a node that restarts resumes leases from it (a lease is gone within TTL + this + an election timeout)")
	f.stateCommit = fs.Duration("state-commit-interval", 0, "how long applied writes may wait in an open kv.db transaction for later ones to share its commit; reads commit it first (0: default 100ms; negative, or with --fsm-sync: commit every batch)")
	f.fsmSync = fs.Bool("fsm-sync", false, "fsync kv.db at every commit of it (default off: the raft log is synced, and kv.db is rebuilt from it after a machine stop)")
	f.pprofOn = fs.Bool("pprof", false, "serve Go profiles under /debug/pprof/ on the HTTP address")
	f.raftMetrics = fs.Bool("raft-metrics", false, "also show hashicorp/raft's own measurements on /metrics (raft_commitTime, raft_rpc_appendEntries_storeLogs, ...; summaries in milliseconds, named by raft, not part of the API contract)")
	f.logFormat = fs.String("log-format", "text", "log format: text or json")
	f.tlsCert = fs.String("tls-cert", "", "PEM file of this node's member certificate: turns TLS on (with --tls-key and --tls-ca); reloaded when it changes and on SIGHUP")
	f.tlsKey = fs.String("tls-key", "", "PEM file of the member certificate's key")
	f.tlsCA = fs.String("tls-ca", "", "PEM file of the cluster's CA, which signs the members' certificates (and clients' without --tls-client-ca)")
	f.tlsClientCA = fs.String("tls-client-ca", "", "PEM file of a CA for clients: the HTTP API then requires a client certificate signed by it or by --tls-ca")
	f.acl = fs.Bool("acl", false, "turn access control on: every API request needs a token with the rights it uses (docs/security.md)")
	f.aclBootstrapFile = fs.String("acl-bootstrap-token-file", "", "`FILE` holding the root token's secret (16 to 512 printable characters; surrounding whitespace is ignored): the founding members commit its hash once; never logged")
	f.aclReset = fs.Bool("acl-bootstrap-reset", false, "when this node leads, make the --acl-bootstrap-token-file secret a root token again in a cluster bootstrapped already (a lost root token); restart without it afterwards")
	f.aclTokenFile = fs.String("acl-token-file", "", "`FILE` holding the secret of the admin token this node presents when it joins a cluster (default: the bootstrap token)")
	f.aclMetrics = fs.Bool("acl-metrics", false, "make /metrics, /livez and /readyz need a token too")
	return c, f
}

// runServe runs a node until ctx ends (SIGINT/SIGTERM).
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, f := newServeCommand(stderr)
	fs := c.fs
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	if err := flagsFromEnv(fs); err != nil {
		return err
	}
	if *f.id == "" || *f.dataDir == "" {
		return usagef("serve: --id and --data-dir are required")
	}
	logStore, err := logStoreFlag("serve", *f.raftLogStore)
	if err != nil {
		return err
	}
	if *f.watchHistory < 0 || *f.maxWatchers < 1 || *f.watchWindow < 1 {
		return usagef("serve: --watch-history must be 0 or more, --max-watchers and --watch-window 1 or more")
	}
	if *f.watchHistory == 0 {
		*f.watchHistory = -1 // Config: negative keeps none
	}
	if *f.leaseCheckpoint < 10*time.Millisecond {
		return usagef("serve: --lease-checkpoint-interval must be at least 10ms")
	}
	var tlsCfg *raftkv.TLSConfig
	if *f.tlsCert != "" || *f.tlsKey != "" || *f.tlsCA != "" || *f.tlsClientCA != "" {
		if *f.tlsCert == "" || *f.tlsKey == "" || *f.tlsCA == "" {
			return usagef("serve: --tls-cert, --tls-key and --tls-ca go together (--tls-client-ca needs them)")
		}
		tlsCfg = &raftkv.TLSConfig{CertFile: *f.tlsCert, KeyFile: *f.tlsKey, CAFile: *f.tlsCA, ClientCAFile: *f.tlsClientCA}
	}
	logger, err := newLogger(stderr, *f.logLevel, *f.logFormat)
	if err != nil {
		return err
	}
	logger = logger.With("node", *f.id)
	aclCfg, err := f.aclConfig(logger)
	if err != nil {
		return err
	}

	var joinAddrs []string
	for a := range strings.SplitSeq(*f.join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			joinAddrs = append(joinAddrs, a)
		}
	}
	peers, err := parsePeerAddrs("raft-peer-addrs", *f.peerAddrs)
	if err != nil {
		return err
	}
	apiPeers, err := parsePeerAddrs("api-peer-addrs", *f.apiPeerAddrs)
	if err != nil {
		return err
	}
	var reg *prometheus.Registry // nil: the node makes its own
	if *f.raftMetrics {
		if reg, err = raftMetricsRegistry(); err != nil {
			return err
		}
	}
	node, err := raftkv.Open(raftkv.Config{
		Registry:        reg,
		ID:              *f.id,
		DataDir:         *f.dataDir,
		LogStore:        logStore,
		HTTPAddr:        *f.httpAddr,
		HTTPAdvertise:   *f.httpAdv,
		RaftAddr:        *f.raftAddr,
		RaftAdvertise:   *f.raftAdv,
		RaftPeerAddrs:   peers,
		APIPeerAddrs:    apiPeers,
		Join:            joinAddrs,
		BootstrapExpect: *f.expect,
		PromoteLag:      *f.promoteLag,
		MaxValueSize:    *f.maxValue,
		WatchHistory:    *f.watchHistory,
		MaxWatchers:     *f.maxWatchers,
		WatchWindow:     *f.watchWindow,
		LeaseCheckpoint: *f.leaseCheckpoint,
		Logger:          logger,
		RaftLogLevel:    *f.raftLogLevel,
		Pprof:           *f.pprofOn,
		TLS:             tlsCfg,
		ACL:             aclCfg,
		Tuning: raftkv.Tuning{
			MaxBatch:            *f.maxBatch,
			SnapshotThreshold:   *f.snapThreshold,
			SnapshotInterval:    *f.snapInterval,
			TrailingLogs:        *f.trailingLogs,
			FSMSync:             *f.fsmSync,
			StateCommitInterval: *f.stateCommit,
			LeaderWait:          *f.leaderWait,
		},
	})
	if err != nil {
		return err
	}
	logger.Info("node started", "http", node.HTTPAddr(), "raft", node.RaftAddr(), "data_dir", *f.dataDir, "scheme", node.Scheme(), "acl", aclCfg != nil)
	var hup chan os.Signal
	if tlsCfg != nil {
		// SIGHUP reloads the certificate (only with TLS: without it,
		// SIGHUP keeps its default meaning).
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hup:
			if err := node.ReloadTLS(); err != nil {
				logger.Error("SIGHUP: certificate not reloaded; keeping the current one", "error", err)
			} else {
				logger.Info("SIGHUP: certificate reloaded")
			}
		}
	}
	logger.Info("stopping")
	if err := node.Close(); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// flagsFromEnv sets every flag not given on the command line from its
// RAFTKV_* environment variable, if that is set.
func flagsFromEnv(fs *flag.FlagSet) error { return flagsFromLookup(fs, os.LookupEnv) }

// flagsFromLookup is flagsFromEnv with the environment read through lookup.
func flagsFromLookup(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := envName(f.Name)
		if v, ok := lookup(env); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = usagef("%s=%q: %v", env, v, serr)
			}
		}
	})
	return err
}

// envName is the environment variable of the flag name: RAFTKV_ and the
// name in upper case with - as _.
func envName(flag string) string {
	return "RAFTKV_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format must be text or json, not %q", format)
}

// logStoreFlag checks the --raft-log-store value of the command cmd.
func logStoreFlag(cmd, v string) (string, error) {
	switch v {
	case raftkv.LogStoreBoltDB, raftkv.LogStoreWAL:
		return v, nil
	}
	return "", usagef("%s: --raft-log-store must be %s or %s, not %q", cmd, raftkv.LogStoreBoltDB, raftkv.LogStoreWAL, v)
}

// parsePeerAddrs reads a --*-peer-addrs flag: id=host:port,...
func parsePeerAddrs(flag, v string) (map[string]string, error) {
	peers := map[string]string{}
	for kvp := range strings.SplitSeq(v, ",") {
		if kvp = strings.TrimSpace(kvp); kvp == "" {
			continue
		}
		id, addr, ok := strings.Cut(kvp, "=")
		if !ok || id == "" || addr == "" {
			return nil, usagef("--%s: %q is not id=host:port", flag, kvp)
		}
		peers[id] = addr
	}
	return peers, nil
}

// aclConfig returns the node's access control from the --acl flags: nil
// without --acl (then any other ACL flag is a usage error). The token
// files are read here, once; a file that cannot be read or holds no valid
// secret is a usage error that names the file, never its content.
func (f *serveFlags) aclConfig(logger *slog.Logger) (*raftkv.ACLConfig, error) {
	if !*f.acl {
		var set []string
		for _, fl := range []struct {
			name string
			on   bool
		}{
			{"acl-bootstrap-token-file", *f.aclBootstrapFile != ""},
			{"acl-bootstrap-reset", *f.aclReset},
			{"acl-token-file", *f.aclTokenFile != ""},
			{"acl-metrics", *f.aclMetrics},
		} {
			if fl.on {
				set = append(set, "--"+fl.name)
			}
		}
		if len(set) > 0 {
			return nil, usagef("serve: %s without --acl: access control is off unless --acl is given", strings.Join(set, ", "))
		}
		return nil, nil
	}
	if *f.aclReset && *f.aclBootstrapFile == "" {
		return nil, usagef("serve: --acl-bootstrap-reset needs --acl-bootstrap-token-file (the new root token's secret)")
	}
	cfg := &raftkv.ACLConfig{BootstrapReset: *f.aclReset, Metrics: *f.aclMetrics}
	var err error
	if cfg.BootstrapToken, err = readSecretFile("acl-bootstrap-token-file", *f.aclBootstrapFile, logger); err != nil {
		return nil, err
	}
	if cfg.Token, err = readSecretFile("acl-token-file", *f.aclTokenFile, logger); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readSecretFile reads the token secret in file (flag names the flag that
// gave it): its content trimmed of surrounding whitespace, checked with
// kv.ValidateSecret. An empty file name is no secret. A file that others
// than its owner may read is logged as a warning.
func readSecretFile(flag, file string, logger *slog.Logger) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usagef("serve: --%s: %v", flag, err)
	}
	secret := strings.TrimSpace(string(b))
	if err := kv.ValidateSecret(secret); err != nil {
		// The message gives the length and the rule, never the content.
		msg := strings.TrimPrefix(err.Error(), kv.ErrBadRequest.Error()+": ")
		return "", usagef("serve: --%s %s: %s", flag, file, msg)
	}
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
		logger.Warn("a token file is readable by other users than its owner: chmod 600 it", "flag", "--"+flag, "file", file, "mode", st.Mode().Perm().String())
	}
	return secret, nil
}
