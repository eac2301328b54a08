package raftkv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftnode"
	"github.com/raftkv/raftkv/store"
)

// Membership (docs/architecture.md, "Membership"): a node that joins a
// running cluster is added as a non-voter, so that it never counts toward a
// quorum while it catches up; the leader promotes it to voter once it has
// stayed within Config.PromoteLag entries for PromoteRounds checks in a row.
// Removals are checked against the quorum of the configuration they leave.

// DefaultPromoteLag is Config.PromoteLag's default: how many entries a
// non-voter's applied index may be behind the leader's last index and still
// count as caught up.
const DefaultPromoteLag = 256

// PromoteRounds is how many checks in a row, one every half election
// timeout, must find a non-voter caught up before the leader promotes it.
const PromoteRounds = 3

// AddMember adds a member through the leader (from any node): a non-voter,
// promoted once it has caught up, unless req.Suffrage is kv.Voter; a
// member already in the configuration is re-addressed and keeps its
// suffrage. The member's API address, when given, is recorded.
func (n *Node) AddMember(ctx context.Context, req kv.JoinRequest) error {
	if n.raft.IsLeader() {
		err := n.join(ctx, req)
		if !errors.Is(err, kv.ErrNotLeader) {
			return err
		}
	}
	c, err := n.leaderClient()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Join(ctx, req)
}

// RemoveMember removes member id through the leader (from any node). When
// id is the leader, it hands leadership over first and the next leader
// removes it. Refused with kv.ErrWouldLoseQuorum, nothing changed, when the
// voters left would be fewer live ones (answering the leader now) than a
// quorum of the configuration left, unless opts.Force. The answer warns
// when the voters left are an even number.
func (n *Node) RemoveMember(ctx context.Context, id string, opts kv.RemoveOptions) (kv.MemberChange, error) {
	if n.raft.IsLeader() {
		res, err := n.removeMember(ctx, id, opts)
		if !errors.Is(err, kv.ErrNotLeader) {
			return res, err
		}
	}
	c, err := n.leaderClient()
	if err != nil {
		return kv.MemberChange{}, err
	}
	defer c.Close()
	return c.RemoveMember(ctx, id, opts)
}

// PromoteMember makes the non-voter id a voter now, through the leader
// (from any node), without waiting for the leader to find it caught up. A
// voter is left as it is; kv.ErrNotFound when id is not a member.
func (n *Node) PromoteMember(ctx context.Context, id string) (kv.MemberChange, error) {
	if n.raft.IsLeader() {
		res, err := n.promoteMember(ctx, id)
		if !errors.Is(err, kv.ErrNotLeader) {
			return res, err
		}
	}
	c, err := n.leaderClient()
	if err != nil {
		return kv.MemberChange{}, err
	}
	defer c.Close()
	return c.PromoteMember(ctx, id)
}

// join adds a member or re-addresses one, and records its API address.
// Leader only. A new member is a non-voter unless req asks for a voter;
// an existing one keeps its suffrage (raft's AddNonvoter only re-addresses
// a voter), so a voter that re-registers after a move is never demoted.
func (n *Node) join(ctx context.Context, req kv.JoinRequest) error {
	var err error
	if req.Suffrage == kv.Voter {
		err = n.raft.AddVoter(ctx, req.ID, req.RaftAddr)
	} else {
		err = n.raft.AddNonvoter(ctx, req.ID, req.RaftAddr)
	}
	if err != nil {
		return err
	}
	if req.APIAddr == "" {
		return nil
	}
	if cur, ok := n.store.NodeAPIAddr(req.ID); ok && cur == req.APIAddr {
		return nil
	}
	_, err = n.apply(ctx, &store.Command{Op: store.OpSetNode, Key: []byte(req.ID), Value: []byte(req.APIAddr)}, kv.WriteOptions{})
	return err
}

// configChangeAttempts bounds how often a change is checked and tried
// again when another change came first (raftnode.ErrConfigurationChanged).
const configChangeAttempts = 5

// removeMember is the leader's side of RemoveMember.
func (n *Node) removeMember(ctx context.Context, id string, opts kv.RemoveOptions) (kv.MemberChange, error) {
	for attempt := 1; ; attempt++ {
		servers, index, err := n.raft.Configuration()
		if err != nil {
			return kv.MemberChange{}, err
		}
		i := slices.IndexFunc(servers, func(s raftnode.Server) bool { return s.ID == id })
		if i < 0 {
			return kv.MemberChange{}, fmt.Errorf("%w: %s is not a member", kv.ErrNotFound, id)
		}
		left := voters(servers, id)
		res := kv.MemberChange{Status: "ok", Voters: len(left)}
		if servers[i].Voter {
			res.Warning = evenWarning(len(left))
			if !opts.Force {
				if live, quorum := n.liveVoters(ctx, left), len(left)/2+1; live < quorum {
					return kv.MemberChange{}, fmt.Errorf("%w: removing %s leaves %d voters, of which %d answer the leader now; a quorum is %d (force to remove it anyway)",
						kv.ErrWouldLoseQuorum, id, len(left), live, quorum)
				}
			}
		}
		if id == n.cfg.ID {
			return n.removeSelf(ctx, id, opts)
		}
		err = n.raft.RemoveServer(ctx, id, index)
		if errors.Is(err, raftnode.ErrConfigurationChanged) && attempt < configChangeAttempts {
			continue
		}
		if err != nil {
			return kv.MemberChange{}, err
		}
		n.log.Info("removed member", "id", id, "voter", servers[i].Voter, "voters", len(left), "forced", opts.Force)
		if res.Warning != "" {
			n.log.Warn(res.Warning)
		}
		return res, nil
	}
}

// removeSelf hands leadership over and has the next leader remove this
// node: raft lets a leader remove itself, but it would then lead a
// configuration it is not in until it steps down, and writes would wait
// for the next election.
func (n *Node) removeSelf(ctx context.Context, id string, opts kv.RemoveOptions) (kv.MemberChange, error) {
	n.log.Info("removing this node, the leader: handing leadership over first", "id", id)
	if err := n.raft.TransferLeadership(ctx, ""); err != nil {
		return kv.MemberChange{}, err
	}
	// Wait until the next leader is known here, then ask it.
	wait := 10 * time.Millisecond
	for {
		if lid, _ := n.raft.Leader(); lid != "" && lid != n.cfg.ID && n.apiAddrOf(lid) != "" {
			break
		}
		select {
		case <-ctx.Done():
			return kv.MemberChange{}, fmt.Errorf("%w: leadership handed over, but no next leader known: %w", kv.ErrTimeout, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
	c, err := n.leaderClient()
	if err != nil {
		return kv.MemberChange{}, err
	}
	defer c.Close()
	return c.RemoveMember(ctx, id, opts)
}

// promoteMember is the leader's side of PromoteMember.
func (n *Node) promoteMember(ctx context.Context, id string) (kv.MemberChange, error) {
	for attempt := 1; ; attempt++ {
		servers, index, err := n.raft.Configuration()
		if err != nil {
			return kv.MemberChange{}, err
		}
		i := slices.IndexFunc(servers, func(s raftnode.Server) bool { return s.ID == id })
		if i < 0 {
			return kv.MemberChange{}, fmt.Errorf("%w: %s is not a member", kv.ErrNotFound, id)
		}
		after := len(voters(servers, ""))
		if !servers[i].Voter {
			after++
		}
		res := kv.MemberChange{Status: "ok", Voters: after, Warning: evenWarning(after)}
		if servers[i].Voter {
			return res, nil
		}
		err = n.raft.Promote(ctx, id, index)
		if errors.Is(err, raftnode.ErrConfigurationChanged) && attempt < configChangeAttempts {
			continue
		}
		if err != nil {
			return kv.MemberChange{}, err
		}
		n.log.Info("promoted non-voter to voter by request", "id", id, "voters", after)
		return res, nil
	}
}

// voters returns the voters of servers, without the one named except.
func voters(servers []raftnode.Server, except string) []raftnode.Server {
	var out []raftnode.Server
	for _, s := range servers {
		if s.Voter && s.ID != except {
			out = append(out, s)
		}
	}
	return out
}

// evenWarning is the warning for a configuration of n voters, "" when n is
// odd or zero.
func evenWarning(n int) string {
	if n == 0 || n%2 == 1 {
		return ""
	}
	return fmt.Sprintf("%d voters: an even number tolerates no more failures than %d (quorum %d); add or remove one", n, n-1, n/2+1)
}

// liveVoters counts the voters among servers that follow this leader in
// its current term now (this node counts itself), asking the others
// concurrently with the leader check, each bounded by liveCheckTimeout.
func (n *Node) liveVoters(ctx context.Context, servers []raftnode.Server) int {
	term := n.raft.Status().Term
	ctx, cancel := context.WithTimeout(ctx, liveCheckTimeout)
	defer cancel()
	live := 0
	answers := make(chan error, len(servers))
	asked := 0
	for _, s := range servers {
		if s.ID == n.cfg.ID {
			live++
			continue
		}
		asked++
		go func() {
			lc, err := n.leaderCheck(ctx, s.ID)
			if err == nil && (lc.Term != term || lc.LeaderID != n.cfg.ID) {
				err = fmt.Errorf("%s follows %q in term %d", s.ID, lc.LeaderID, lc.Term)
			}
			answers <- err
		}()
	}
	for range asked {
		if err := <-answers; err == nil {
			live++
		} else {
			n.log.Debug("voter not live", "error", err)
		}
	}
	return live
}

// liveCheckTimeout bounds the leader's check of the voters before a removal.
const liveCheckTimeout = 2 * time.Second

// leaderCheck asks member id, at the API address this node uses for it,
// whom it follows in which term and how far it has applied
// (httpapi.LeaderCheckPath). The request names id, and an answer from
// another member is an error wrapping kv.ErrWrongNode.
func (n *Node) leaderCheck(ctx context.Context, id string) (httpapi.LeaderCheckResponse, error) {
	var lc httpapi.LeaderCheckResponse
	addr, ok := n.peerAPIAddr(id)
	if !ok {
		return lc, fmt.Errorf("%s has no registered API address", id)
	}
	u := n.Scheme() + "://" + addr + httpapi.LeaderCheckPath + "?" + url.Values{httpapi.LeaderCheckIDParam: {id}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return lc, err
	}
	resp, err := n.peers.Do(req)
	if err != nil {
		return lc, fmt.Errorf("%s: %w", id, err)
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		return lc, fmt.Errorf("%s at %s: %w", id, addr, client.DecodeError(resp))
	}
	if err := json.NewDecoder(resp.Body).Decode(&lc); err != nil {
		return lc, fmt.Errorf("%s at %s: %w", id, addr, err)
	}
	if lc.ID != id {
		return lc, fmt.Errorf("%w: leader check for %s at %s answered by %q", kv.ErrWrongNode, id, addr, lc.ID)
	}
	return lc, nil
}

// promoter is the leader's record of how its non-voters keep up. It lives
// for the node's life; its progress is kept for one term of leadership
// only (a new leader measures afresh).
type promoter struct {
	mu       sync.Mutex
	term     uint64
	progress map[string]nonvoterProgress
}

// nonvoterProgress is the last check of one non-voter.
type nonvoterProgress struct {
	lag      uint64
	caughtUp int // checks in a row within the lag
}

// snapshot returns a copy of the progress recorded in term.
func (p *promoter) snapshot(term uint64) map[string]nonvoterProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.term != term {
		return nil
	}
	out := make(map[string]nonvoterProgress, len(p.progress))
	for id, pr := range p.progress {
		out[id] = pr
	}
	return out
}

// promoteNonvoters runs for the life of the node: on the leader, every
// half election timeout, it asks each non-voter how far it has applied
// (the leader check, which also says whom it follows) and promotes one
// that has been within Config.PromoteLag of the leader's last index for
// PromoteRounds checks in a row.
//
// Why the non-voter's own applied index: raft v1.7.3 keeps each follower's
// match index to itself (no API, no observation carries it). A follower
// applies only entries that are committed and in its log, so its applied
// index is at most its match index: a lag measured with it is never
// smaller than the real one, and a non-voter found caught up is caught up.
// The leader's last index is read before the question is sent, so the
// entries appended while it travels do not count against the non-voter.
func (n *Node) promoteNonvoters(ctx context.Context) {
	every := n.raft.ElectionTimeout() / 2
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.promoteRound(ctx, every)
	}
}

// promoteRound is one round of promoteNonvoters.
func (n *Node) promoteRound(ctx context.Context, timeout time.Duration) {
	st := n.raft.Status()
	p := &n.promoter
	if !n.raft.IsLeader() {
		p.mu.Lock()
		p.term, p.progress = 0, nil
		p.mu.Unlock()
		return
	}
	servers, index, err := n.raft.Configuration()
	if err != nil {
		return
	}
	var nonvoters []string
	for _, s := range servers {
		if !s.Voter {
			nonvoters = append(nonvoters, s.ID)
		}
	}
	type answer struct {
		id      string
		lag     uint64
		follows bool // this leader, in this term
		err     error
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answers := make(chan answer, len(nonvoters))
	for _, id := range nonvoters {
		go func() {
			lc, err := n.leaderCheck(rctx, id)
			answers <- answer{
				id:      id,
				lag:     st.LastIndex - min(st.LastIndex, lc.AppliedIndex),
				follows: lc.Term == st.Term && lc.LeaderID == n.cfg.ID,
				err:     err,
			}
		}()
	}
	progress := make(map[string]nonvoterProgress, len(nonvoters))
	p.mu.Lock()
	old := p.progress
	if p.term != st.Term {
		old = nil
	}
	p.mu.Unlock()
	var ready []string
	for range nonvoters {
		a := <-answers
		if a.err != nil {
			n.log.Debug("non-voter not checked", "id", a.id, "error", a.err)
			continue // no entry: lag unknown
		}
		// A non-voter that does not follow this leader yet (its first
		// contact has not come) shows its lag but is not caught up.
		pr := nonvoterProgress{lag: a.lag}
		if a.follows && a.lag <= n.cfg.PromoteLag {
			pr.caughtUp = old[a.id].caughtUp + 1
		}
		progress[a.id] = pr
		if pr.caughtUp >= PromoteRounds {
			ready = append(ready, a.id)
		}
	}
	p.mu.Lock()
	p.term, p.progress = st.Term, progress
	p.mu.Unlock()
	slices.Sort(ready)
	for _, id := range ready {
		pctx, cancel := context.WithTimeout(ctx, n.raft.ElectionTimeout()*5)
		err := n.raft.Promote(pctx, id, index)
		cancel()
		if errors.Is(err, raftnode.ErrConfigurationChanged) {
			n.log.Info("configuration changed before the promotion; will check again", "id", id)
			return
		}
		if err != nil {
			n.log.Warn("promoting non-voter failed; will check again", "id", id, "error", err)
			return
		}
		n.log.Info("promoted non-voter to voter: caught up", "id", id, "lag", progress[id].lag, "checks", PromoteRounds, "max_lag", n.cfg.PromoteLag)
		if _, index, err = n.raft.Configuration(); err != nil {
			return
		}
	}
}
