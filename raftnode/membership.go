package raftnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// Server is a member of the raft configuration.
type Server struct {
	ID       string
	RaftAddr string
	Voter    bool
}

// Servers returns the latest raft configuration (committed or not), as this
// node knows it; empty before the node is part of a cluster.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raftnode: configuration: %w", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Bootstrapped reports whether this node is part of a cluster: it has a
// non-empty configuration, from its own state, a bootstrap or a leader.
func (n *Node) Bootstrapped() bool {
	s, err := n.Servers()
	return err == nil && len(s) > 0
}

// Bootstrap creates a new cluster whose voters are servers, sorted by id so
// that every node that bootstraps from the same set computes the same
// configuration (raft accepts identical bootstraps). A node with raft state
// answers ErrAlreadyBootstrapped, which is normal on restart and must never
// be "fixed" by wiping the data: the data holds this member's log and vote,
// and a member that forgets them can vote twice in a term or lose
// acknowledged writes.
func (n *Node) Bootstrap(servers []Server) error {
	sorted := append([]Server(nil), servers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	var conf raft.Configuration
	for _, s := range sorted {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.RaftAddr)})
	}
	err := n.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return ErrAlreadyBootstrapped
	}
	if err != nil {
		return fmt.Errorf("raftnode: bootstrap: %w", err)
	}
	return nil
}

// Configuration returns the latest raft configuration (committed or not)
// and the index of the log entry that holds it: pass the index as
// prevIndex to a change that must apply to this configuration only.
func (n *Node) Configuration() ([]Server, uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("raftnode: configuration: %w", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, f.Index(), nil
}

// AddVoter adds a voter, promotes a non-voter, or gives an existing voter
// a new raft address. A voter already present with the same address is
// left alone. Leader only.
func (n *Node) AddVoter(ctx context.Context, id, raftAddr string) error {
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == id && s.RaftAddr == raftAddr && s.Voter {
			return nil
		}
	}
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, n.timeout(ctx))
	if err := changeError(ctx, f, 0, n); err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	return nil
}

// AddNonvoter adds a non-voter, or gives an existing member a new raft
// address and leaves its suffrage as it is: a voter is never demoted by
// it. A member already present with the same address is left alone.
// Leader only.
func (n *Node) AddNonvoter(ctx context.Context, id, raftAddr string) error {
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == id && s.RaftAddr == raftAddr {
			return nil
		}
	}
	f := n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, n.timeout(ctx))
	if err := changeError(ctx, f, 0, n); err != nil {
		return fmt.Errorf("add non-voter %s: %w", id, err)
	}
	return nil
}

// Promote makes the non-voter id a voter, provided the configuration is
// still the one at prevIndex (ErrConfigurationChanged otherwise, nothing
// changed); a prevIndex of 0 applies to any configuration. kv.ErrNotFound
// if id is not a member; a voter is left alone. Leader only.
func (n *Node) Promote(ctx context.Context, id string, prevIndex uint64) error {
	servers, _, err := n.Configuration()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(servers, func(s Server) bool { return s.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: %s is not a member", kv.ErrNotFound, id)
	}
	if servers[i].Voter {
		return nil
	}
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(servers[i].RaftAddr), prevIndex, n.timeout(ctx))
	if err := changeError(ctx, f, prevIndex, n); err != nil {
		return fmt.Errorf("promote %s: %w", id, err)
	}
	return nil
}

// RemoveServer removes a member (kv.ErrNotFound if it is none), provided
// the configuration is still the one at prevIndex (ErrConfigurationChanged
// otherwise, nothing changed); a prevIndex of 0 applies to any
// configuration. Leader only.
func (n *Node) RemoveServer(ctx context.Context, id string, prevIndex uint64) error {
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(servers, func(s Server) bool { return s.ID == id }) {
		return fmt.Errorf("%w: %s is not a member", kv.ErrNotFound, id)
	}
	f := n.raft.RemoveServer(raft.ServerID(id), prevIndex, n.timeout(ctx))
	if err := changeError(ctx, f, prevIndex, n); err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	return nil
}

// changeError waits for a configuration change and maps its error. raft
// gives a change an index only when it appends it, so a failed change
// without one was not applied: with a prevIndex that is no longer the
// latest configuration's, that is ErrConfigurationChanged (raft refused it
// for that reason; its error has no type to tell).
// It gives up when ctx ends first (kv.ErrOutcomeUnknown: the change may
// still commit), so that a caller that is closing is never held by a
// change that waits for a quorum.
func changeError(ctx context.Context, f raft.IndexFuture, prevIndex uint64, n *Node) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // raft answers every future, at the latest on shutdown
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("%w: configuration change: %w", kv.ErrOutcomeUnknown, ctx.Err())
	}
	if err == nil {
		return nil
	}
	if prevIndex != 0 && f.Index() == 0 {
		if _, latest, cerr := n.Configuration(); cerr == nil && latest != prevIndex {
			return fmt.Errorf("%w: %w", ErrConfigurationChanged, err)
		}
	}
	return membershipError(err)
}

// TransferLeadership hands leadership to the voter id, or to the voter raft
// considers most caught up when id is empty, and waits for the hand-off.
// Leader only.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	var f raft.Future
	if id == n.cfg.ID {
		return nil // already the leader
	}
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		servers, err := n.Servers()
		if err != nil {
			return err
		}
		i := slices.IndexFunc(servers, func(s Server) bool { return s.ID == id })
		if i < 0 {
			return fmt.Errorf("%w: %s is not a member", kv.ErrNotFound, id)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(servers[i].RaftAddr))
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("transfer leadership: %w", membershipError(err))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: transfer leadership: %w", kv.ErrTimeout, ctx.Err())
	}
}

func (n *Node) timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return n.cfg.ApplyTimeout
}

func membershipError(err error) error {
	if errors.Is(err, raft.ErrNotLeader) {
		return kv.ErrNotLeader
	}
	return applyError(err)
}
