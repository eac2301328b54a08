package kv

import (
	"errors"
	"net"
	"time"
)

// WriteOptions are what a write may carry besides its key and value: the
// condition that guards it and its idempotency key (and, as the store
// grows, the lease it attaches the key to). The embedded node
// (raftkv.Node) and the remote client (client.Client) take them as
// WriteOption arguments, in the style of etcd's clientv3.WithLease:
//
//	node.Put(ctx, key, value, kv.IfModIndex(42), kv.Idempotent("order-42-paid"))
//
// The zero value is an unconditional write without an idempotency key.
type WriteOptions struct {
	// Condition guards the write (Put, Delete); a transaction ignores it.
	Condition Condition
	// IdempotencyKey, when set, makes the write safe to retry: the state
	// machine remembers it with the write's result, and a write with the
	// same key returns that result instead of applying again. 1 to
	// MaxIdempotencyKeySize bytes.
	IdempotencyKey string
	// NoIdempotencyKey asks the remote client not to give the write an
	// idempotency key of its own. Without one it cannot retry the write
	// after an unknown outcome. The embedded node never generates keys
	// and ignores it.
	NoIdempotencyKey bool
	// Lease attaches the key of a Put to this existing lease (a put
	// without one detaches the key from any lease, as in etcd). A lease
	// that does not exist fails the put with ErrLeaseNotFound.
	Lease LeaseID
	// TTL, for a Put, grants a new lease of this TTL holding just the
	// key, in the same raft entry; PutResult.Lease names it.
	TTL time.Duration
	// Fence makes a Put, Delete or Txn apply only while Fence.Lock is
	// held with Fence.Token (see Fence).
	Fence Fence
}

// WriteOption sets one field of WriteOptions.
type WriteOption func(*WriteOptions)

// NewWriteOptions applies opts in order to the zero WriteOptions.
func NewWriteOptions(opts ...WriteOption) WriteOptions {
	var o WriteOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// WithCondition guards the write with c (it replaces any condition set by
// an earlier option).
func WithCondition(c Condition) WriteOption {
	return func(o *WriteOptions) { o.Condition = c }
}

// IfModIndex makes the write a compare-and-swap: it applies only if the key
// exists with this mod_index (HTTP If-Match: "<n>").
func IfModIndex(n uint64) WriteOption {
	return func(o *WriteOptions) { o.Condition.IfModIndex = n }
}

// IfAbsent makes the write apply only if the key does not exist (HTTP
// If-None-Match: *).
func IfAbsent() WriteOption {
	return func(o *WriteOptions) { o.Condition.IfAbsent = true }
}

// Idempotent gives the write an idempotency key: one key per logical
// write, the same on every retry.
func Idempotent(key string) WriteOption {
	return func(o *WriteOptions) { o.IdempotencyKey = key }
}

// WithoutIdempotencyKey stops the remote client from generating an
// idempotency key for the write; such a write is never retried after an
// unknown outcome.
func WithoutIdempotencyKey() WriteOption {
	return func(o *WriteOptions) { o.NoIdempotencyKey = true }
}

// NotSent reports whether err, returned by an HTTP round trip, means the
// request certainly reached no server: the connection was never made (a
// dial failed: refused, unreachable, no such host, dial timeout). A write
// that fails so was certainly not applied; any other transport error
// after a connection was made leaves the outcome unknown.
func NotSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// WithLease attaches the key of a Put to an existing lease (HTTP
// ?lease=ID): the key is deleted when the lease expires or is revoked.
func WithLease(id LeaseID) WriteOption {
	return func(o *WriteOptions) { o.Lease = id }
}

// WithTTL grants a new lease of ttl for the key of a Put, in the same
// raft entry (HTTP ?ttl=30s); PutResult.Lease names it.
func WithTTL(ttl time.Duration) WriteOption {
	return func(o *WriteOptions) { o.TTL = ttl }
}

// WithFence makes the write apply only while lock is held with token
// (HTTP ?lock=NAME&token=T): a holder whose lock was lost (its lease
// expired while it was paused) cannot write. A failed fence is a
// *PreconditionError.
func WithFence(lock string, token uint64) WriteOption {
	return func(o *WriteOptions) { o.Fence = Fence{Lock: lock, Token: token} }
}
