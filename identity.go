package raftkv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// ClusterID returns the cluster's identity as this node's applied state
// records it: "" until the cluster's first ready leader has committed one
// (claimIdentity), or, on a node that joins, until it has caught up. A
// restored cluster has its new identity from the start (Restore).
func (n *Node) ClusterID() string {
	if n.store == nil {
		return ""
	}
	return n.store.ClusterID()
}

// protocolVersion is the member protocol this node speaks.
func (n *Node) protocolVersion() int {
	if n.cfg.protocolVersion != 0 {
		return n.cfg.protocolVersion
	}
	return kv.ProtocolVersion
}

// identityTick is how often claimIdentity looks.
const identityTick = 100 * time.Millisecond

// claimIdentity runs for the life of the node. Whenever this node is the
// ready leader (it has applied an entry of its term, so it sees every
// entry earlier leaders committed) and the state has no cluster identity,
// it commits a random one: the founding members bootstrap independently
// and cannot pick one each, but the first leader's is in the log they all
// apply. The command sets the identity only if there is none, so two
// leaders that both proposed one (the first lost its leadership before
// its entry was known committed) leave every node with the same, the one
// first in the log. A failure is retried on a later tick, with a new id.
func (n *Node) claimIdentity(ctx context.Context) {
	tick := time.NewTicker(identityTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n.store.ClusterID() != "" || !n.raft.LeaderReady() || n.protocolVersion() < 2 {
			continue
		}
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		id := hex.EncodeToString(b[:])
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.raft.Apply(actx, &store.Command{Op: store.OpSetCluster, Value: []byte(id)})
		cancel()
		if err != nil {
			n.log.Warn("committing the cluster identity failed; trying again", "err", err)
			continue
		}
		n.log.Info("cluster identity committed", "cluster_id", n.store.ClusterID())
	}
}
