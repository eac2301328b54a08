package concurrency

import (
	"context"
	"iter"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// API is what the package needs of a cluster: the lease, lock and
// election calls (and Delete) that both *raftkv.Node and *client.Client
// offer, with the semantics their docs state.
type API interface {
	Grant(ctx context.Context, ttl time.Duration) (kv.Lease, error)
	KeepAliveOnce(ctx context.Context, id kv.LeaseID) (kv.Lease, error)
	Revoke(ctx context.Context, id kv.LeaseID) (kv.RevokeResult, error)
	Lock(ctx context.Context, name string, opts kv.LockOptions) (kv.Hold, error)
	Unlock(ctx context.Context, name string, token uint64) (uint64, error)
	Campaign(ctx context.Context, name string, value []byte, opts kv.LockOptions) (kv.Hold, error)
	Resign(ctx context.Context, name string, token uint64) (uint64, error)
	ElectionLeader(ctx context.Context, name string) (kv.Hold, error)
	ObserveElection(ctx context.Context, name string) iter.Seq2[kv.Hold, error]
	// Delete removes a key: a session's own queue key after a wait that
	// failed.
	Delete(ctx context.Context, key []byte, opts ...kv.WriteOption) (kv.DeleteResult, error)
}
