package httpapi

import (
	"context"
	"io"
	"iter"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Backend is the node the API fronts: the handler parses and checks a
// request, calls the Backend, and turns its answer into HTTP.
//
// Writes (Put, Delete, DeletePrefix, Txn) reach the leader on their own:
// a follower's Backend sends them to the leader in binary batches
// (ApplyPath) and returns the leader's outcome, so the handler answers
// every write itself and never relays one. A write that fails with
// kv.ErrNotLeader applied nothing; it is answered 503 no_leader like any
// other "not applied" failure. Reads are always served locally (a
// follower's linearizable read waits for the leader's read index). Only
// the membership calls are leader-only at the handler: on a follower it
// relays them to the leader (Join, RemoveNode, PromoteNode,
// TransferLeadership).
// Watches, like reads, are served by the node that receives them, from its
// own applied state.
type Backend interface {
	// ID is the node's raft server id.
	ID() string
	// ClusterID is the cluster's identity as the node knows it ("" while
	// it knows none). Requests from members of another cluster are
	// refused (409 wrong_cluster).
	ClusterID() string
	// IsLeader reports whether the node believes it leads.
	IsLeader() bool
	// LeaderAPIAddr is the leader's HTTP host:port, or "" when unknown.
	LeaderAPIAddr() string
	// AppliedIndex is the state machine's applied index.
	AppliedIndex() uint64

	// Put, Delete and DeletePrefix apply a write with its options
	// (condition, idempotency key) through raft, on any node; they return
	// once it is applied, with the index of the entry that holds it.
	Put(ctx context.Context, key, value []byte, opts kv.WriteOptions) (kv.PutResult, error)
	Delete(ctx context.Context, key []byte, opts kv.WriteOptions) (kv.DeleteResult, error)
	DeletePrefix(ctx context.Context, prefix []byte, opts kv.WriteOptions) (kv.DeleteResult, error)
	// Txn applies a transaction like Put; opts carries its idempotency key.
	Txn(ctx context.Context, t kv.Txn, opts kv.WriteOptions) (kv.TxnResult, error)
	// Get returns the record and the applied index the read reflects (on
	// an error, this node's applied index).
	Get(ctx context.Context, key []byte, opts kv.ReadOptions) (kv.Record, uint64, error)
	// List returns a page of keys, read like Get.
	List(ctx context.Context, opts kv.ListOptions) (kv.ListResult, error)
	// Watch opens a watch on this node's own applied state (any node serves
	// them). It fails at once, having opened nothing, with a
	// *kv.CompactedError (FromIndex older than the history kept),
	// kv.ErrTooManyWatchers, kv.ErrClosed, or an error wrapping
	// kv.ErrBadRequest / kv.ErrInvalidKey for bad options. The caller must
	// Close the Watcher.
	Watch(ctx context.Context, opts kv.WatchOptions) (Watcher, error)

	// Cluster describes the cluster as this node sees it.
	Cluster(ctx context.Context) (kv.ClusterInfo, error)
	// Join adds a member (a non-voter unless req.Suffrage asks for a
	// voter) or re-addresses one, and records its API address (leader
	// only).
	Join(ctx context.Context, req kv.JoinRequest) error
	// RemoveNode removes a member from the raft configuration (leader
	// only), after the safety checks opts may override
	// (kv.ErrWouldLoseQuorum); the leader itself hands leadership over
	// first and has the next leader remove it.
	RemoveNode(ctx context.Context, id string, opts kv.RemoveOptions) (kv.MemberChange, error)
	// PromoteNode makes the non-voter id a voter now (leader only); a
	// voter is left as it is.
	PromoteNode(ctx context.Context, id string) (kv.MemberChange, error)
	// TransferLeadership hands leadership to id, or to the most caught-up
	// voter when id is empty (leader only).
	TransferLeadership(ctx context.Context, id string) error
	// Ready returns nil when the node can serve linearizable reads.
	Ready(ctx context.Context) error
	// ReadIndex is the leader's side of a follower's linearizable read: an
	// index whose application makes a read linearizable (leader only).
	// voter and voterTerm are the asker's word (ReadIndexPath): its id and
	// its current term when it sent the request; empty and 0 when it gave
	// none.
	ReadIndex(ctx context.Context, voter string, voterTerm uint64) (uint64, error)
	// LastContact is how long ago the leader was last heard from; zero on
	// the leader and on a node that never heard from one.
	LastContact() time.Duration
	// LeaderCheck is this member's term and the leader it follows, as it
	// sees them now (LeaderCheckPath).
	LeaderCheck() (term uint64, leaderID string)
	// Digest hashes the local state machine (GET /v1/debug/hash).
	Digest(ctx context.Context) (kv.DigestInfo, error)
	// Snapshot pins a consistent copy of the local state machine (GET
	// /v1/snapshot), after the read barrier of opts (a linearizable one
	// waits for a read index, like a read). ctx bounds the barrier only.
	// The caller must Close the Snapshot.
	Snapshot(ctx context.Context, opts kv.ReadOptions) (Snapshot, error)
	// ApplyForwarded is the leader's side of a follower's batch of writes
	// (ApplyPath): it applies the batch body and returns the response body.
	// It fails as a whole, having applied nothing, with kv.ErrNotLeader on
	// a follower or kv.ErrBadRequest for a malformed batch.
	ApplyForwarded(ctx context.Context, body []byte) ([]byte, error)

	// Leases (lease.go). The writes among them (Grant, KeepAliveOnce,
	// Revoke) reach the leader like Put; LeaseInfo and Leases answer as
	// the leader sees the lease (its remaining time). An unknown, revoked
	// or expired id is kv.ErrLeaseNotFound; a TTL out of its bounds is
	// kv.ErrBadRequest, stating the bound.

	// Grant creates a lease of ttl: {ID, TTL, Index}.
	Grant(ctx context.Context, ttl time.Duration) (kv.Lease, error)
	// KeepAliveOnce restarts the lease's TTL: {ID, TTL, Index}.
	KeepAliveOnce(ctx context.Context, id kv.LeaseID) (kv.Lease, error)
	// Revoke ends the lease and deletes every key attached to it, in one
	// raft entry.
	Revoke(ctx context.Context, id kv.LeaseID) (kv.RevokeResult, error)
	// LeaseInfo describes a lease: TTL, Remaining, Keys, Index.
	LeaseInfo(ctx context.Context, id kv.LeaseID) (kv.Lease, error)
	// Leases lists the leases: ID, TTL, Remaining, Index each.
	Leases(ctx context.Context) ([]kv.Lease, error)

	// Locks and elections (lock.go). Lock and Campaign block until the
	// name is held, as long as ctx lasts and at most opts.Wait when it is
	// positive (then kv.ErrTimeout, the waiter's key removed). Unlock and
	// Resign delete the holder's key if token holds the name (returning
	// the index of the entry), else fail with a *kv.PreconditionError.

	// Lock acquires the lock name on the lease opts name (or on one of
	// opts.TTL it grants).
	Lock(ctx context.Context, name string, opts kv.LockOptions) (kv.Hold, error)
	// Unlock releases the lock name held with token.
	Unlock(ctx context.Context, name string, token uint64) (uint64, error)
	// Campaign makes this caller the leader of election name with value.
	Campaign(ctx context.Context, name string, value []byte, opts kv.LockOptions) (kv.Hold, error)
	// Resign gives up the leadership of election name held with token.
	Resign(ctx context.Context, name string, token uint64) (uint64, error)
	// ElectionLeader is the election's leader now, or
	// kv.ErrNoElectionLeader.
	ElectionLeader(ctx context.Context, name string) (kv.Hold, error)
	// ObserveElection yields the election's leader at once (a zero Hold,
	// Token 0, when there is none), then each change of leader, until ctx
	// ends (it then stops, with or without ctx's error) or it fails with an
	// error it yields last.
	ObserveElection(ctx context.Context, name string) iter.Seq2[kv.Hold, error]

	// ACL tokens (acl.go). CreateToken and RevokeToken reach the leader
	// like Put; Tokens reads this node's applied state.

	// CreateToken creates a token and returns it with its secret.
	CreateToken(ctx context.Context, req kv.ACLTokenRequest) (kv.ACLToken, error)
	// Tokens lists the tokens, without secrets.
	Tokens() []kv.ACLToken
	// RevokeToken deletes token id (kv.ErrNotFound if unknown) and returns
	// the index of the entry.
	RevokeToken(ctx context.Context, id uint64) (uint64, error)
}

// Snapshot is a pinned copy of the state machine (Backend.Snapshot).
type Snapshot interface {
	// Info is the copy's applied index and term and the length of the
	// stream WriteTo writes.
	Info() kv.SnapshotInfo
	// WriteTo writes the snapshot stream (store's format: header, state
	// file, checksum).
	io.WriterTo
	// Close releases the copy.
	Close() error
}

// Watcher is an open watch (Backend.Watch).
type Watcher interface {
	// Next blocks until the watch has something to deliver and returns it:
	// the responses of one or more indexes, in index order, each with the
	// events the watch selects; or, after the watch's progress interval
	// without events, one progress notification (no events). It fails with
	// a *kv.CompactedError when the watcher fell behind the history kept,
	// an error wrapping kv.ErrClosed when the node shuts down, or ctx's
	// error. After an error the watch is over.
	Next(ctx context.Context) ([]kv.WatchResponse, error)
	// Start is the first index the watch looks at: opts.FromIndex, or,
	// for a watch from now, the applied index when it opened + 1.
	Start() uint64
	// Close ends the watch and releases its slot; it is idempotent.
	Close()
}
