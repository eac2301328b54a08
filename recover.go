package raftkv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftnode"
	"github.com/raftkv/raftkv/store"
)

// Errors of Recover (also raftnode.ErrNoState and raftnode.ErrNotMember).
var (
	// ErrNoData: the data directory does not exist or holds no raft log
	// store (no raft.db, no wal/).
	ErrNoData = errors.New("no raftkv data")
)

// RecoverConfig configures Recover. ID and DataDir are required.
type RecoverConfig struct {
	// ID is the member's id (serve's --id); it must be in the
	// configuration its data directory holds.
	ID string
	// DataDir is the member's data directory. No node may be running on
	// it: Recover takes its lock.
	DataDir string
	// RaftAddr is the raft address the member is known at after the
	// recovery (its advertised address); empty keeps the one the current
	// configuration has for ID. A node that starts on another address
	// registers it anyway, as on any restart.
	RaftAddr string
	// WatchHistory is Config.WatchHistory of the node: the replay records
	// the change history as the node would.
	WatchHistory int
	// DryRun reports what Recover would start from (configuration, last
	// index) and changes nothing.
	DryRun bool
	// Logger receives the logs; nil discards them. RaftLogLevel is the
	// lowest raft log level passed on ("info" by default).
	Logger       *slog.Logger
	RaftLogLevel string
}

// RecoverResult reports what Recover found and did.
type RecoverResult struct {
	// LogStore is the kind of raft log store the data directory holds,
	// "boltdb" or "wal" (Recover finds it; Config.LogStore).
	LogStore string
	// Before is the configuration the data directory held (Suffrage
	// "voter" or "nonvoter"; APIAddr when the state file knew it), written
	// at ConfigIndex.
	Before      []kv.NodeInfo
	ConfigIndex uint64
	// LastIndex and LastTerm are those of the newest entry the member
	// held (log or snapshot); SnapshotIndex its newest snapshot's index.
	// Recovery keeps every entry up to LastIndex.
	LastIndex, LastTerm uint64
	SnapshotIndex       uint64
	// After is the new configuration: the member alone. Empty on a dry run.
	After []kv.NodeInfo
	// State is the digest of the recovered state file (as GET
	// /v1/debug/hash gives it once the node runs); zero on a dry run.
	State kv.DigestInfo
}

// scratchDir is where Recover replays the log, inside the data directory
// (the same file system, and removed by the next Recover if left behind).
const scratchDir = ".recover-scratch"

// Recover rewrites the raft configuration of a stopped member so that it
// starts as a cluster of one voter, itself, holding every entry it had:
// what to do when a quorum of the cluster is lost for good (its other
// members' machines or disks are gone). Start the node afterwards as
// before (same id, same data directory): it elects itself, and new
// members, with new ids and empty directories, join it through --join.
//
// Entries the member had in its log but did not know to be committed are
// committed by the recovery: there is no quorum left to tell. Writes that
// were acknowledged by a quorum this member was not part of are lost with
// that quorum: recover the member with the highest LastIndex (DryRun
// reports it without changing anything).
//
// The other members must never come back with their old data: they would
// form a cluster of their own with the same ids. See docs/operations.md,
// "Disaster recovery".
func Recover(ctx context.Context, cfg RecoverConfig) (RecoverResult, error) {
	var res RecoverResult
	if cfg.ID == "" || cfg.DataDir == "" {
		return res, errors.New("raftkv: recover: ID and DataDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if fi, err := os.Stat(cfg.DataDir); err != nil || !fi.IsDir() {
		return res, fmt.Errorf("raftkv: %w: %s is not a directory", ErrNoData, cfg.DataDir)
	}
	if ok, err := raftnode.HasLog(cfg.DataDir); err != nil {
		return res, err
	} else if !ok {
		return res, fmt.Errorf("raftkv: %w: %s has no raft.db and no wal/", ErrNoData, cfg.DataDir)
	}
	unlock, err := lockDir(cfg.DataDir)
	if err != nil {
		return res, err
	}
	defer func() { _ = unlock() }()

	rcfg := raftnode.RecoverConfig{
		ID:           cfg.ID,
		DataDir:      cfg.DataDir,
		RaftAddr:     cfg.RaftAddr,
		DryRun:       cfg.DryRun,
		Logger:       cfg.Logger.With("component", "raft"),
		RaftLogLevel: cfg.RaftLogLevel,
	}
	if cfg.DryRun {
		r, err := raftnode.Recover(ctx, rcfg, nil, nil)
		fillRecoverResult(&res, r, nil)
		return res, err
	}

	history := cfg.WatchHistory
	switch {
	case history == 0:
		history = DefaultWatchHistory
	case history < 0:
		history = 0
	}
	opts := store.Options{Logger: cfg.Logger.With("component", "store"), NoSync: true, WatchHistory: uint64(history)}
	scratch := filepath.Join(cfg.DataDir, scratchDir)
	if err := os.RemoveAll(scratch); err != nil {
		return res, fmt.Errorf("raftkv: recover: %w", err)
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return res, fmt.Errorf("raftkv: recover: %w", err)
	}
	defer func() { _ = os.RemoveAll(scratch) }()
	replay, err := store.Open(filepath.Join(scratch, "kv.db"), opts)
	if err != nil {
		return res, fmt.Errorf("raftkv: recover: %w", err)
	}
	defer func() { _ = replay.Close() }()
	state, err := store.Open(filepath.Join(cfg.DataDir, "kv.db"), opts)
	if err != nil {
		return res, fmt.Errorf("raftkv: recover: %w", err)
	}
	r, err := raftnode.Recover(ctx, rcfg, state, replay)
	apis, aerr := state.NodeAPIAddrs()
	if aerr != nil {
		apis = nil
	}
	fillRecoverResult(&res, r, apis)
	if err == nil {
		var d store.Digest
		if d, err = state.Digest(); err == nil {
			res.State = kv.DigestInfo{Node: cfg.ID, AppliedIndex: d.AppliedIndex, Keys: d.Keys, SHA256: d.SHA256}
		}
	}
	// Close syncs the state file and marks it clean.
	if cerr := state.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("raftkv: recover: %w", cerr)
	}
	return res, err
}

func fillRecoverResult(res *RecoverResult, r raftnode.RecoverResult, apis map[string]string) {
	nodes := func(servers []raftnode.Server) []kv.NodeInfo {
		var out []kv.NodeInfo
		for _, s := range servers {
			ni := kv.NodeInfo{ID: s.ID, RaftAddr: s.RaftAddr, APIAddr: apis[s.ID], Suffrage: "nonvoter"}
			if s.Voter {
				ni.Suffrage = "voter"
			}
			out = append(out, ni)
		}
		return out
	}
	res.Before, res.After = nodes(r.Before), nodes(r.After)
	res.LogStore = r.LogStore
	res.ConfigIndex, res.LastIndex, res.LastTerm, res.SnapshotIndex = r.ConfigIndex, r.LastIndex, r.LastTerm, r.SnapshotIndex
}
