package raftkv

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftnode"
)

// Cluster describes the cluster as this node sees it.
func (n *Node) Cluster(ctx context.Context) (kv.ClusterInfo, error) {
	if err := ctx.Err(); err != nil {
		return kv.ClusterInfo{}, err
	}
	s := n.raft.Status()
	info := kv.ClusterInfo{
		ID:              n.cfg.ID,
		ClusterID:       n.ClusterID(),
		ProtocolVersion: n.protocolVersion(),
		LeaderID:        s.LeaderID,
		LeaderAPI:       n.leaderAPIAddr(),
		Term:            s.Term,
		CommitIndex:     s.CommitIndex,
		AppliedIndex:    s.AppliedIndex,
		State:           strings.ToLower(s.State),
		RaftAddr:        n.raft.RaftAddr(),
		APIAddr:         n.apiAddr,
		Nodes:           []kv.NodeInfo{},
	}
	servers, err := n.raft.Servers()
	if err != nil {
		return kv.ClusterInfo{}, err
	}
	info.Bootstrapped = len(servers) > 0
	apis, err := n.store.NodeAPIAddrs()
	if err != nil {
		return kv.ClusterInfo{}, err
	}
	var progress map[string]nonvoterProgress
	if n.raft.IsLeader() {
		progress = n.promoter.snapshot(s.Term)
	}
	for _, sv := range servers {
		ni := kv.NodeInfo{ID: sv.ID, RaftAddr: sv.RaftAddr, APIAddr: apis[sv.ID], Suffrage: kv.Nonvoter, State: "follower"}
		if sv.Voter {
			ni.Suffrage = kv.Voter
		} else if pr, ok := progress[sv.ID]; ok {
			ni.Lag, ni.CaughtUp = &pr.lag, pr.caughtUp
		}
		if sv.ID == s.LeaderID {
			ni.State = "leader"
		}
		if sv.ID == n.cfg.ID && ni.APIAddr == "" {
			ni.APIAddr = n.apiAddr
		}
		info.Nodes = append(info.Nodes, ni)
	}
	return info, nil
}

// formCluster brings a new node into a cluster and makes sure its API
// address is registered, then returns (docs/architecture.md, "Cluster formation"):
//   - a node with raft state just registers;
//   - otherwise it asks each Join address who it is; if one of them is in a
//     cluster with a leader it asks to be added;
//   - if none is, once BootstrapExpect nodes without state are known it
//     bootstraps with all of them, sorted by id (every one of them computes
//     the same configuration, and raft accepts identical bootstraps).
func (n *Node) formCluster(ctx context.Context) {
	wait := 100 * time.Millisecond
	for {
		done, err := n.formStep(ctx)
		if done {
			return
		}
		if err != nil {
			n.log.Debug("forming cluster", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

func (n *Node) formStep(ctx context.Context) (done bool, err error) {
	if n.raft.Bootstrapped() {
		return n.register(ctx)
	}
	peers := n.survey(ctx)
	for _, p := range peers {
		if p.Bootstrapped && p.LeaderID != "" {
			c, err := client.New(client.Config{Endpoints: []string{n.Scheme() + "://" + p.APIAddr}, HTTPClient: n.peers, Token: n.cfg.ACL.joinToken(), MaxAttempts: 1, RefreshInterval: -1})
			if err != nil {
				return false, err
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = c.Join(rctx, kv.JoinRequest{ID: n.cfg.ID, RaftAddr: n.raft.RaftAddr(), APIAddr: n.apiAddr})
			cancel()
			if err != nil {
				return false, fmt.Errorf("join through %s: %w", p.APIAddr, err)
			}
			n.log.Info("joined cluster", "through", p.APIAddr, "leader", p.LeaderID)
			return false, nil // registered by the join; confirmed on the next step
		}
	}
	if n.cfg.BootstrapExpect == 0 {
		return false, errors.New("no member with a leader answered yet")
	}
	servers := []raftnode.Server{{ID: n.cfg.ID, RaftAddr: n.raft.RaftAddr(), Voter: true}}
	for _, p := range peers {
		if p.Bootstrapped {
			return false, fmt.Errorf("%s is in a cluster without a leader; waiting", p.ID)
		}
		if !slices.ContainsFunc(servers, func(s raftnode.Server) bool { return s.ID == p.ID }) {
			servers = append(servers, raftnode.Server{ID: p.ID, RaftAddr: p.RaftAddr, Voter: true})
		}
	}
	if len(servers) < n.cfg.BootstrapExpect {
		return false, fmt.Errorf("know %d of %d nodes to bootstrap with", len(servers), n.cfg.BootstrapExpect)
	}
	if len(servers) > n.cfg.BootstrapExpect {
		// Nodes that saw different sets would bootstrap different
		// clusters: refuse, and say why.
		n.log.Error("more nodes without state than --bootstrap-expect; not bootstrapping: list only the initial members in --join",
			"found", len(servers), "expect", n.cfg.BootstrapExpect)
		return false, fmt.Errorf("found %d nodes without state, expected %d", len(servers), n.cfg.BootstrapExpect)
	}
	err = n.raft.Bootstrap(servers)
	if err != nil && !errors.Is(err, raftnode.ErrAlreadyBootstrapped) {
		return false, err
	}
	n.log.Info("bootstrapped cluster", "voters", len(servers))
	return false, nil
}

// survey asks every Join address who it is; addresses that do not answer
// are left out.
func (n *Node) survey(ctx context.Context) []kv.ClusterInfo {
	var out []kv.ClusterInfo
	for _, addr := range n.cfg.Join {
		if !strings.Contains(addr, "://") {
			addr = n.Scheme() + "://" + addr
		}
		c, err := client.New(client.Config{Endpoints: []string{addr}, HTTPClient: n.peers, Token: n.cfg.ACL.joinToken(), MaxAttempts: 1, RefreshInterval: -1})
		if err != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := c.Cluster(rctx)
		cancel()
		if err != nil || info.ID == n.cfg.ID {
			continue
		}
		out = append(out, info)
	}
	return out
}

// register records this node's API address in the replicated state, so
// every member can reach it; done once the local state shows it.
func (n *Node) register(ctx context.Context) (bool, error) {
	servers, err := n.raft.Servers()
	if err != nil {
		return false, err
	}
	// A member that is absent from the configuration was removed: it is
	// not re-added behind the operator's back (it rejoins with an empty
	// directory). One whose raft address changed (restarted with another
	// --raft-addr) asks to be re-addressed.
	i := slices.IndexFunc(servers, func(s raftnode.Server) bool { return s.ID == n.cfg.ID })
	if i < 0 {
		n.log.Warn("this node is not in the cluster configuration (removed?); not registering")
		return true, nil
	}
	raftOK := servers[i].RaftAddr == n.raft.RaftAddr()
	cur, ok := n.store.NodeAPIAddr(n.cfg.ID)
	if raftOK && (n.apiAddr == "" || ok && cur == n.apiAddr) {
		return true, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req := kv.JoinRequest{ID: n.cfg.ID, RaftAddr: n.raft.RaftAddr(), APIAddr: n.apiAddr}
	if n.raft.IsLeader() {
		return false, n.join(rctx, req)
	}
	if c, err := n.leaderClient(); err == nil {
		return false, c.Join(rctx, req)
	}
	// No leader known: this node may have moved, and the leader dials its
	// old raft address, so nothing reaches it. Any member passes a join on
	// to the leader.
	return false, n.joinThroughMembers(rctx, req)
}

// joinThroughMembers sends req to the members this node knows (their
// registered API addresses, then the Join addresses) in turn, until one
// takes it; each relays it to its leader.
func (n *Node) joinThroughMembers(ctx context.Context, req kv.JoinRequest) error {
	apis, err := n.store.NodeAPIAddrs()
	if err != nil {
		return err
	}
	var addrs []string
	for id, a := range apis {
		if id != n.cfg.ID {
			if o, ok := n.peerAPIAddr(id); ok {
				a = o
			}
			addrs = append(addrs, a)
		}
	}
	slices.Sort(addrs)
	for _, a := range n.cfg.Join {
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	var errs []error
	for _, addr := range addrs {
		if addr == n.apiAddr {
			continue
		}
		if !strings.Contains(addr, "://") {
			addr = n.Scheme() + "://" + addr
		}
		c, err := client.New(client.Config{Endpoints: []string{addr}, HTTPClient: n.peers, MaxAttempts: 1, RefreshInterval: -1})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = c.Join(ctx, req)
		c.Close()
		if err == nil {
			n.log.Info("re-registered through a member: no leader reaches this node at its old address", "through", addr)
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("re-register: no member took the request: %w", errors.Join(errs...))
}

// backend adapts the Node to httpapi.Backend: the same operations (a
// follower sends writes to the leader in batches).
type backend struct{ n *Node }

func (b backend) ID() string            { return b.n.cfg.ID }
func (b backend) ClusterID() string     { return b.n.ClusterID() }
func (b backend) IsLeader() bool        { return b.n.raft.IsLeader() }
func (b backend) LeaderAPIAddr() string { return b.n.leaderAPIAddr() }
func (b backend) AppliedIndex() uint64  { return b.n.store.AppliedIndex() }

func (b backend) Put(ctx context.Context, key, value []byte, opts kv.WriteOptions) (kv.PutResult, error) {
	return b.n.put(ctx, key, value, opts)
}

func (b backend) Delete(ctx context.Context, key []byte, opts kv.WriteOptions) (kv.DeleteResult, error) {
	return b.n.delete(ctx, key, opts)
}

func (b backend) DeletePrefix(ctx context.Context, prefix []byte, opts kv.WriteOptions) (kv.DeleteResult, error) {
	return b.n.deletePrefix(ctx, prefix, opts)
}

func (b backend) Get(ctx context.Context, key []byte, opts kv.ReadOptions) (kv.Record, uint64, error) {
	return b.n.get(ctx, key, opts)
}

func (b backend) List(ctx context.Context, opts kv.ListOptions) (kv.ListResult, error) {
	return b.n.list(ctx, opts)
}

func (b backend) Watch(_ context.Context, opts kv.WatchOptions) (httpapi.Watcher, error) {
	w, err := b.n.openWatch(opts)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (b backend) Cluster(ctx context.Context) (kv.ClusterInfo, error) { return b.n.Cluster(ctx) }

func (b backend) Join(ctx context.Context, req kv.JoinRequest) error { return b.n.join(ctx, req) }

func (b backend) Ready(ctx context.Context) error { return b.n.ready(ctx) }

func (b backend) ReadIndex(ctx context.Context, voter string, voterTerm uint64) (uint64, error) {
	return b.n.raft.ReadIndexFor(ctx, voter, voterTerm)
}

func (b backend) LeaderCheck() (uint64, string) {
	s := b.n.raft.Status()
	return s.Term, s.LeaderID
}

func (b backend) LastContact() time.Duration {
	if last := b.n.raft.Status().LastContact; !last.IsZero() {
		return time.Since(last)
	}
	return 0
}

func (b backend) Txn(ctx context.Context, t kv.Txn, opts kv.WriteOptions) (kv.TxnResult, error) {
	return b.n.txn(ctx, t, opts)
}

func (b backend) RemoveNode(ctx context.Context, id string, opts kv.RemoveOptions) (kv.MemberChange, error) {
	return b.n.removeMember(ctx, id, opts)
}

func (b backend) PromoteNode(ctx context.Context, id string) (kv.MemberChange, error) {
	return b.n.promoteMember(ctx, id)
}

func (b backend) TransferLeadership(ctx context.Context, id string) error {
	return b.n.raft.TransferLeadership(ctx, id)
}

func (b backend) Digest(context.Context) (kv.DigestInfo, error) { return b.n.Digest() }

func (b backend) Snapshot(ctx context.Context, opts kv.ReadOptions) (httpapi.Snapshot, error) {
	return b.n.openSnapshot(ctx, opts)
}

func (b backend) ApplyForwarded(ctx context.Context, body []byte) ([]byte, error) {
	return b.n.applyForwarded(ctx, body)
}

// Leases, locks and elections: the Node's own methods, which take the
// writes to the leader.

func (b backend) Grant(ctx context.Context, ttl time.Duration) (kv.Lease, error) {
	return b.n.Grant(ctx, ttl)
}

func (b backend) KeepAliveOnce(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	return b.n.KeepAliveOnce(ctx, id)
}

func (b backend) Revoke(ctx context.Context, id kv.LeaseID) (kv.RevokeResult, error) {
	return b.n.Revoke(ctx, id)
}

func (b backend) LeaseInfo(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	return b.n.LeaseInfo(ctx, id)
}

func (b backend) Leases(ctx context.Context) ([]kv.Lease, error) { return b.n.Leases(ctx) }

func (b backend) CreateToken(ctx context.Context, req kv.ACLTokenRequest) (kv.ACLToken, error) {
	return b.n.CreateToken(ctx, req)
}

func (b backend) Tokens() []kv.ACLToken { return b.n.Tokens() }

func (b backend) RevokeToken(ctx context.Context, id uint64) (uint64, error) {
	return b.n.RevokeToken(ctx, id)
}

func (b backend) Lock(ctx context.Context, name string, opts kv.LockOptions) (kv.Hold, error) {
	return b.n.Lock(ctx, name, opts)
}

func (b backend) Unlock(ctx context.Context, name string, token uint64) (uint64, error) {
	return b.n.Unlock(ctx, name, token)
}

func (b backend) Campaign(ctx context.Context, name string, value []byte, opts kv.LockOptions) (kv.Hold, error) {
	return b.n.Campaign(ctx, name, value, opts)
}

func (b backend) Resign(ctx context.Context, name string, token uint64) (uint64, error) {
	return b.n.Resign(ctx, name, token)
}

func (b backend) ElectionLeader(ctx context.Context, name string) (kv.Hold, error) {
	return b.n.ElectionLeader(ctx, name)
}

func (b backend) ObserveElection(ctx context.Context, name string) iter.Seq2[kv.Hold, error] {
	return b.n.ObserveElection(ctx, name)
}
