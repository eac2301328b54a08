package raftkv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftnode"
	"github.com/raftkv/raftkv/store"
)

// RestoreConfig describes one member of a new cluster that starts from a
// backup (Restore).
type RestoreConfig struct {
	// Snapshot is the backup: a snapshot stream as GET /v1/snapshot sends
	// it and `raftkv snapshot save` writes it.
	Snapshot io.Reader
	// DataDir is the member's data directory. It must not exist, or be
	// empty.
	DataDir string
	// LogStore is the kind of raft log store the member will run with
	// (Config.LogStore: "boltdb", the default when empty, or "wal"):
	// Restore creates it empty, and the member must be started with the
	// same kind.
	LogStore string
	// ID is the member's raft server id, one of Members.
	ID string
	// Members are the new cluster's voters: raft server id → the raft
	// address each will advertise (its --raft-advertise, or --raft-addr).
	// Every member must be restored with the same file and Members.
	Members map[string]string
	// ClusterID, if set, is the new cluster's identity. Empty derives it
	// from the backup and Members (RestoreResult.ClusterID): every member
	// restored from the same file with the same Members gets the same
	// identity, one that no other cluster has.
	ClusterID string
}

// RestoreResult describes a data directory Restore prepared.
type RestoreResult struct {
	// Index, Keys and SHA256 describe the restored state: the backup's
	// applied index, key count and digest (GET /v1/debug/hash on the new
	// cluster gives this digest until its first write).
	Index  uint64
	Keys   int64
	SHA256 string
	// ClusterID is the new cluster's identity; SourceClusterID the
	// identity of the cluster the backup was taken from ("" for a backup
	// of a cluster that had none).
	ClusterID       string
	SourceClusterID string
	// Members are the new cluster's voters (as given).
	Members map[string]string
}

// restoreTerm is the term a restored state and its raft snapshot are
// labelled with. The new members' raft state starts at term 0, and their
// first election runs term 1: the raft log must never hold an entry of a
// term below an earlier entry's, so the snapshot, which stands for every
// entry up to its index, is of term 1. The backup's own term belongs to
// the old cluster.
const restoreTerm = 1

// Restore prepares, offline, the data directory of one member of a new
// cluster that starts with exactly the state in cfg.Snapshot and a new
// identity. The backup is verified first (header, length, checksum, a
// state file at its index); the directory then gets one raft snapshot of
// that state, whose configuration is cfg.Members (raftnode.Seed). The
// state keeps its keys, indexes, leases, idempotency records and change
// history; it gets the new cluster's identity and forgets the old
// members' API addresses. Open (raftkv serve) on each restored directory
// forms the new cluster: no Join and no BootstrapExpect are needed.
//
// Restore refuses a directory that holds anything; on any error it
// leaves the directory as it found it (absent, or empty).
func Restore(ctx context.Context, cfg RestoreConfig) (res RestoreResult, err error) {
	if cfg.Snapshot == nil {
		return res, errors.New("raftkv: restore: no snapshot")
	}
	if cfg.DataDir == "" {
		return res, errors.New("raftkv: restore: DataDir is required")
	}
	if _, ok := cfg.Members[cfg.ID]; !ok || cfg.ID == "" {
		return res, fmt.Errorf("raftkv: restore: member id %q is not one of the members", cfg.ID)
	}
	servers := make([]raftnode.Server, 0, len(cfg.Members))
	for id, addr := range cfg.Members {
		if _, _, err := net.SplitHostPort(addr); err != nil || id == "" {
			return res, fmt.Errorf("raftkv: restore: member %q at %q: want id=host:port", id, addr)
		}
		servers = append(servers, raftnode.Server{ID: id, RaftAddr: addr, Voter: true})
	}
	if _, err := raftnode.ParseLogStore(cfg.LogStore); err != nil {
		return res, fmt.Errorf("raftkv: restore: %w", err)
	}
	if cfg.ClusterID != "" {
		if err := kv.ValidateClusterID(cfg.ClusterID); err != nil {
			return res, fmt.Errorf("raftkv: restore: %w", err)
		}
	}
	created, err := emptyDir(cfg.DataDir)
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			undoDir(cfg.DataDir, created)
		}
	}()
	unlock, err := lockDir(cfg.DataDir)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, unlock()) }()

	b, err := store.OpenBackup(ctxReader{ctx, cfg.Snapshot}, filepath.Join(cfg.DataDir, "backup.unpack"))
	if err != nil {
		return res, fmt.Errorf("raftkv: restore: %w", err)
	}
	defer func() { err = errors.Join(err, b.Close()) }()
	sum := b.Summary()
	if sum.Index == 0 {
		return res, fmt.Errorf("raftkv: restore: %w: the backup's state has applied no entry", store.ErrBadSnapshot)
	}
	id := cfg.ClusterID
	if id == "" {
		id = restoredClusterID(sum, cfg.Members)
	}
	if id == sum.ClusterID {
		return res, fmt.Errorf("raftkv: restore: %w: cluster id %s is the backup's own cluster's: the restored cluster must have a new one", kv.ErrBadRequest, id)
	}
	if err := b.Reseed(id, restoreTerm); err != nil {
		return res, fmt.Errorf("raftkv: restore: %w", err)
	}
	err = raftnode.Seed(cfg.DataDir, cfg.LogStore, sum.Index, restoreTerm, servers, func(w io.Writer) error {
		_, err := b.WriteTo(&ctxWriter{ctx, w})
		return err
	})
	if err != nil {
		return res, fmt.Errorf("raftkv: restore: %w", err)
	}
	return RestoreResult{
		Index: sum.Index, Keys: sum.Keys, SHA256: sum.SHA256,
		ClusterID: id, SourceClusterID: sum.ClusterID, Members: cfg.Members,
	}, nil
}

// restoredClusterID derives a new cluster's identity from the backup (its
// cluster, index and digest) and the new members: the same for every
// member restored from one file with one member list, and different for a
// different file or list (members restored with different lists refuse
// each other: 409 wrong_cluster).
func restoredClusterID(sum store.SnapshotSummary, members map[string]string) string {
	h := sha256.New()
	fmt.Fprintf(h, "raftkv restore\nsource %s\nindex %d\ndigest %s\n", sum.ClusterID, sum.Index, sum.SHA256)
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(h, "member %s %s\n", strconv.Quote(id), strconv.Quote(members[id]))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// emptyDir makes sure dir exists and is empty, creating it if needed
// (created reports that it did).
func emptyDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("raftkv: restore: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("raftkv: restore: %w", err)
	case len(entries) > 0:
		return false, fmt.Errorf("raftkv: restore: %w: data directory %s is not empty (it holds %s): restore only into a new, empty directory",
			kv.ErrBadRequest, dir, entries[0].Name())
	}
	return false, nil
}

// undoDir puts dir back as emptyDir found it: removed if it created it,
// else emptied.
func undoDir(dir string, created bool) {
	if created {
		_ = os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// ctxReader fails reads once ctx has ended, so a cancelled copy stops
// (ctxWriter, snapshot.go, is its writing side).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
