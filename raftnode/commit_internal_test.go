package raftnode

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/writeq"
	"github.com/raftkv/raftkv/store"
)

// Where group commit puts each write: two changes of one key never share
// an entry; ops that touch many keys travel alone; commands without a key
// (lease grants, keepalives, checkpoints) share entries freely, so many
// keepalives cost one entry.
func TestSplitEntry(t *testing.T) {
	put := func(k string) *store.Command {
		return &store.Command{Op: store.OpPut, Key: []byte(k), Value: []byte("v")}
	}
	ka := func(id uint64) *store.Command { return &store.Command{Op: store.OpLeaseKeepalive, Lease: id} }
	tests := []struct {
		name  string
		entry []*store.Command
		next  *store.Command
		want  writeq.Fit
	}{
		{"another key", []*store.Command{put("a")}, put("b"), writeq.Join},
		{"the same key", []*store.Command{put("a"), put("b")}, put("a"), writeq.Next},
		{"a transaction", []*store.Command{put("a")}, &store.Command{Op: store.OpTxn}, writeq.Alone},
		{"a revoke", []*store.Command{ka(1)}, &store.Command{Op: store.OpLeaseRevoke, Lease: 1}, writeq.Alone},
		{"a keepalive after keepalives", []*store.Command{ka(1), ka(2)}, ka(3), writeq.Join},
		{"a keepalive after a put", []*store.Command{put("a")}, ka(1), writeq.Join},
		{"a put after keepalives", []*store.Command{ka(1), ka(2)}, put("a"), writeq.Join},
		{"a grant after a grant", []*store.Command{{Op: store.OpLeaseGrant, TTL: 5000}}, &store.Command{Op: store.OpLeaseGrant, TTL: 5000}, writeq.Join},
		{"a checkpoint after a keepalive", []*store.Command{ka(1)}, &store.Command{Op: store.OpLeaseCheckpoint, Checkpoints: []store.LeaseCheckpoint{{Lease: 1, Remaining: 5}}}, writeq.Join},
	}
	for _, tt := range tests {
		if got := splitEntry(tt.entry, tt.next); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The transport never pipelines AppendEntries: raft v1.7.3's pipeline can
// wedge a follower's replication for good (docs/architecture.md,
// "Pipelined replication that wedges"), so replication sends one at a
// time. This holds whatever transport Open builds (plain TCP here).
func TestNoPipelinedReplication(t *testing.T) {
	nodes := openNodes(t, 2)
	peer := nodes[1]
	_, err := nodes[0].trans.AppendEntriesPipeline(raft.ServerID("n2"), raft.ServerAddress(peer.RaftAddr()))
	if !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline = %v, want raft.ErrPipelineReplicationNotSupported", err)
	}
}
