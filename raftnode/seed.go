package raftnode

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Seed prepares dataDir, which must hold no raft state, to start a member
// of a new cluster whose voters are servers, from a state machine snapshot
// stream at index (what write writes: the store's snapshot format). It
// writes one raft snapshot: that stream, labelled with index and term,
// whose configuration is servers (committed at index), and creates an
// empty raft log store of kind logStore (ParseLogStore: "" is boltdb), so
// the directory is one of that kind (Open with the other kind refuses it).
// Open then starts from it like a member restarting from its newest
// snapshot: the configuration makes the node a member (no bootstrap, no
// join), and catchUpFromSnapshot restores the state machine from it.
//
// Every member of the new cluster must be seeded with the same stream,
// index, term and servers. term must not be above the terms the new
// cluster will run (a fresh raft state starts at term 0 and votes from
// term 1): raftkv seeds with term 1.
func Seed(dataDir, logStore string, index, term uint64, servers []Server, write func(io.Writer) error) (err error) {
	kind, err := ParseLogStore(logStore)
	if err != nil {
		return err
	}
	if index == 0 || term == 0 {
		return errors.New("raftnode: seed: index and term must be above 0")
	}
	if len(servers) == 0 {
		return errors.New("raftnode: seed: no servers")
	}
	sorted := append([]Server(nil), servers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	var conf raft.Configuration
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, s := range sorted {
		if s.ID == "" || s.RaftAddr == "" {
			return fmt.Errorf("raftnode: seed: server %q at %q: id and address are required", s.ID, s.RaftAddr)
		}
		if ids[s.ID] || addrs[s.RaftAddr] {
			return fmt.Errorf("raftnode: seed: server %s at %s appears twice", s.ID, s.RaftAddr)
		}
		ids[s.ID], addrs[s.RaftAddr] = true, true
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.RaftAddr)})
	}
	if have, err := DetectLogStore(dataDir); err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	} else if have != "" {
		return fmt.Errorf("raftnode: seed: %s has raft state (%s)", dataDir, logStorePath(have))
	}
	hlog := hclog.NewNullLogger()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dataDir, "snapshots"), 2, hlog)
	if err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	if list, err := snaps.List(); err != nil || len(list) > 0 {
		return fmt.Errorf("raftnode: seed: %s has raft snapshots already (%d, %v)", dataDir, len(list), err)
	}
	// The snapshot's metadata also lists the voters in raft's legacy
	// encoding, which needs a transport: an in-memory one, never used to
	// send anything.
	_, trans := raft.NewInmemTransport("")
	defer func() { _ = trans.Close() }()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, conf, index, trans)
	if err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	if err := write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftnode: seed: writing the snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	logs, err := openLogStore(dataDir, kind, 0, hlog)
	if err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	if err := logs.Close(); err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	return nil
}
