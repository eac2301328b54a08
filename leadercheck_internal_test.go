package raftkv

import (
	"context"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// The leadership check's parts, for the tests in package raftkv_test
// (leadercheck_test.go): they run on a testkit cluster, and testkit
// imports this package.

// CheckFollows runs n's check of one voter (checkFollows) in n's current
// term: nil means n counts id's answer toward its quorum.
func CheckFollows(ctx context.Context, n *Node, id string) error {
	return n.checkFollows(ctx, id, n.raft.Status().Term)
}

// ConfirmLeadership runs n's whole leadership check in its current term.
func ConfirmLeadership(n *Node) error {
	return n.confirmLeadership(n.raft.Status().Term)
}

// SetNodeAPIAddr records addr as member id's API address in the
// replicated nodes table, through raft (n must lead), as a join does.
func SetNodeAPIAddr(ctx context.Context, n *Node, id, addr string) error {
	_, err := n.apply(ctx, &store.Command{Op: store.OpSetNode, Key: []byte(id), Value: []byte(addr)}, kv.WriteOptions{})
	return err
}
