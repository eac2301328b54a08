package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/store"
)

// Errors of Recover.
var (
	// ErrNoState: the data directory holds no raft state (no raft.db and
	// no wal/, or one with no log, no term and no snapshot): there is nothing to
	// recover, and a new cluster is formed with a bootstrap instead.
	ErrNoState = errors.New("no raft state to recover")
	// ErrNotMember: the id given is not in the configuration the data
	// directory holds (a typo, or another member's directory).
	ErrNotMember = errors.New("not a member of the configuration")
)

// RecoverConfig configures Recover. ID and DataDir are required.
type RecoverConfig struct {
	// ID is the server id of the member whose data directory this is.
	ID string
	// DataDir holds its raft log store (raft.db or wal/: Recover opens
	// the kind it finds) and snapshots/.
	DataDir string
	// RaftAddr is the raft address the recovered member is known at in the
	// new configuration; empty keeps the one the current configuration has
	// for ID.
	RaftAddr string
	// DryRun only reads: Recover reports the configuration and the last
	// index and changes nothing (StateFile and Scratch are not used).
	DryRun bool
	// Logger receives raft's logs (at RaftLogLevel and above). Nil discards.
	Logger       *slog.Logger
	RaftLogLevel string
}

// RecoverResult reports what Recover found and did.
type RecoverResult struct {
	// LogStore is the kind of raft log store the data directory holds
	// (LogStoreBoltDB or LogStoreWAL).
	LogStore string
	// Before is the latest configuration in the data directory (committed
	// or not), ConfigIndex the index it was written at.
	Before      []Server
	ConfigIndex uint64
	// LastIndex and LastTerm are those of the newest entry the directory
	// holds, in the log or in the newest snapshot; SnapshotIndex is the
	// newest snapshot's index (0: none). The recovered state holds every
	// entry up to LastIndex.
	LastIndex, LastTerm uint64
	SnapshotIndex       uint64
	// After is the new configuration: this member alone, a voter. Empty
	// on a dry run.
	After []Server
	// Index and Term are those of the snapshot Recover wrote, which the
	// state file now holds (LastIndex and LastTerm); zero on a dry run.
	Index, Term uint64
}

// HasLog reports whether dir holds a raft log store of either kind
// (raft.db or wal/). Recover's caller checks it before opening the state
// file, which opening would create.
func HasLog(dir string) (bool, error) {
	kind, err := DetectLogStore(dir)
	return kind != "", err
}

// Recover rewrites the raft configuration of a stopped member so that it
// starts as a cluster of one voter, itself, with all the entries it holds:
// what an operator does once a quorum is lost for good. Other members then
// join it as new members. The caller makes sure no node runs on the
// directory (the root package's lock).
//
// It uses raft.RecoverCluster, which replays every entry of the log onto a
// state machine, committed or not (there is no quorum left to say which
// were), writes a snapshot of the result with the new configuration, and
// empties the log. The replay goes onto scratch, an empty store the caller
// opened beside the data and removes afterwards, so that the member's own
// state file, state, is untouched until the new configuration is written;
// then state is replaced by that snapshot. A recovery that fails before
// that leaves the directory as it was, or with a new configuration and the
// old state file (which the node catches up from the snapshot at start).
//
// ctx is checked before anything is written; the rewrite itself is not
// interruptible.
func Recover(ctx context.Context, cfg RecoverConfig, state, scratch *store.Store) (RecoverResult, error) {
	var res RecoverResult
	if cfg.ID == "" || cfg.DataDir == "" {
		return res, errors.New("raftnode: recover: ID and DataDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	level, err := parseLevel(cfg.RaftLogLevel)
	if err != nil {
		return res, err
	}
	hlog := newHclogBridge(cfg.Logger, level)
	kind, err := DetectLogStore(cfg.DataDir)
	if err != nil {
		return res, err
	} else if kind == "" {
		return res, fmt.Errorf("raftnode: %w: %s has no %s and no %s/", ErrNoState, cfg.DataDir, logFile, walDir)
	}
	res.LogStore = kind
	logs, err := openLogStore(cfg.DataDir, kind, 0, hlog)
	if err != nil {
		return res, err
	}
	defer func() { _ = logs.Close() }()
	snaps, err := openSnapshotStore(cfg.DataDir, hlog)
	if err != nil {
		return res, err
	}
	if ok, err := raft.HasExistingState(logs, logs, snaps); err != nil {
		return res, fmt.Errorf("raftnode: recover: %w", err)
	} else if !ok {
		return res, fmt.Errorf("raftnode: %w: %s holds no log, term or snapshot", ErrNoState, cfg.DataDir)
	}
	if err := describe(&res, logs, snaps); err != nil {
		return res, err
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	// GetConfiguration builds a Raft that never starts: it must not touch
	// a state machine either.
	rc.NoSnapshotRestoreOnStart = true
	_, trans := raft.NewInmemTransport("")
	defer func() { _ = trans.Close() }()
	getConf := *rc
	conf, err := raft.GetConfiguration(&getConf, noFSM{}, logs, logs, snaps, trans)
	if err != nil {
		return res, fmt.Errorf("raftnode: read configuration: %w", err)
	}
	for _, s := range conf.Servers {
		res.Before = append(res.Before, Server{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	res.ConfigIndex, err = configIndex(logs, snaps)
	if err != nil {
		return res, err
	}
	i := slices.IndexFunc(res.Before, func(s Server) bool { return s.ID == cfg.ID })
	if i < 0 {
		var ids []string
		for _, s := range res.Before {
			ids = append(ids, s.ID)
		}
		return res, fmt.Errorf("raftnode: %w: %q is not in the configuration of %s (members: %v)", ErrNotMember, cfg.ID, cfg.DataDir, ids)
	}
	addr := cfg.RaftAddr
	if addr == "" {
		addr = res.Before[i].RaftAddr
	}
	if cfg.DryRun {
		return res, nil
	}
	if state == nil || scratch == nil {
		return res, errors.New("raftnode: recover: the state and scratch stores are required")
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("raftnode: recover: %w", err)
	}

	after := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(addr)}}}
	guard := &recoverFSM{Store: scratch}
	err = raft.RecoverCluster(rc, guard, logs, logs, snaps, trans, after)
	guard.release()
	if err != nil {
		return res, fmt.Errorf("raftnode: recover cluster: %w", err)
	}
	res.After = []Server{{ID: cfg.ID, RaftAddr: addr, Voter: true}}
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return res, fmt.Errorf("raftnode: recover: the new snapshot is not listed: %v", err)
	}
	res.Index, res.Term = list[0].Index, list[0].Term
	cfg.Logger.Info("raft configuration rewritten", "id", cfg.ID, "raft_addr", addr, "index", res.Index, "term", res.Term)

	// The member's own state file takes the recovered state. If this
	// fails, raft's state is already rewritten: the node restores the
	// snapshot at start when the file is behind it, which it is unless the
	// log had been lost (then the file must go: see the error).
	_, rc2, err := snaps.Open(list[0].ID)
	if err == nil {
		err = state.Restore(rc2)
	}
	if err == nil {
		err = state.SetAppliedFloor(res.Index)
	}
	if err != nil {
		return res, fmt.Errorf("raftnode: recover: the configuration is rewritten, but the state file could not take the recovered snapshot %s (remove kv.db before starting the node; it is rebuilt from that snapshot): %w", list[0].ID, err)
	}
	return res, nil
}

// describe fills res's last index and term and newest snapshot index.
func describe(res *RecoverResult, logs raft.LogStore, snaps raft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("raftnode: list snapshots: %w", err)
	}
	if len(list) > 0 {
		res.SnapshotIndex = list[0].Index
		res.LastIndex, res.LastTerm = list[0].Index, list[0].Term
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("raftnode: last log index: %w", err)
	}
	if last > res.LastIndex {
		var l raft.Log
		if err := logs.GetLog(last, &l); err != nil {
			return fmt.Errorf("raftnode: log entry %d: %w", last, err)
		}
		res.LastIndex, res.LastTerm = l.Index, l.Term
	}
	return nil
}

// configIndex is the index of the latest configuration: the newest
// configuration entry of the log after the newest snapshot, else the
// snapshot's own configuration index.
func configIndex(logs raft.LogStore, snaps raft.SnapshotStore) (uint64, error) {
	var index, from uint64
	list, err := snaps.List()
	if err != nil {
		return 0, fmt.Errorf("raftnode: list snapshots: %w", err)
	}
	if len(list) > 0 {
		index, from = list[0].ConfigurationIndex, list[0].Index+1
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return 0, fmt.Errorf("raftnode: first log index: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("raftnode: last log index: %w", err)
	}
	for i := max(from, first); i <= last && i > 0; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return 0, fmt.Errorf("raftnode: log entry %d: %w", i, err)
		}
		if l.Type == raft.LogConfiguration {
			index = i
		}
	}
	return index, nil
}

// recoverFSM is the scratch store as raft.RecoverCluster sees it. That
// function ignores what Apply returns and snapshots whatever the state
// machine holds under the last index of the log; a store that stopped
// applying (a failed commit: disk full) would be written down as holding
// entries it does not. Snapshot refuses then, before anything is written.
// RecoverCluster never releases the snapshot it takes (which pins a bbolt
// read transaction, and with it the store's Close): release does.
type recoverFSM struct {
	*store.Store
	last  uint64 // the last entry handed to Apply
	snaps []raft.FSMSnapshot
}

func (f *recoverFSM) release() {
	for _, s := range f.snaps {
		s.Release()
	}
	f.snaps = nil
}

func (f *recoverFSM) Apply(l *raft.Log) any {
	f.last = l.Index
	return f.Store.Apply(l)
}

func (f *recoverFSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.Err(); err != nil {
		return nil, fmt.Errorf("the state machine stopped applying the log: %w", err)
	}
	if applied := f.AppliedIndex(); applied < f.last {
		return nil, fmt.Errorf("the state machine applied up to %d of the log's %d", applied, f.last)
	}
	s, err := f.Store.Snapshot()
	if err == nil {
		f.snaps = append(f.snaps, s)
	}
	return s, err
}

// noFSM is the state machine of the Raft instance GetConfiguration builds
// (with NoSnapshotRestoreOnStart, it is never called).
type noFSM struct{}

var errNoFSM = errors.New("raftnode: no state machine here")

func (noFSM) Apply(*raft.Log) any                 { return errNoFSM }
func (noFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errNoFSM }
func (noFSM) Restore(rc io.ReadCloser) error      { _ = rc.Close(); return errNoFSM }
