package kv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// MaxKeySize is the largest key, in bytes, that raftkv accepts.
const MaxKeySize = 4096

// DefaultMaxValueSize is the default limit on a value, in bytes.
const DefaultMaxValueSize = 1 << 20

// DefaultListLimit is the number of records a list returns when no limit is given.
const DefaultListLimit = 1000

// MaxListLimit is the largest page a list may ask for.
const MaxListLimit = 10000

// Record is what a key maps to.
//
// CreateIndex and ModIndex are raft log indexes: the entry that created the
// key and the entry that last changed it. They are the same on every node,
// so they can be compared across nodes and used as compare-and-swap tokens.
// Version counts the writes since the key was created (1 after the first).
type Record struct {
	Key         []byte
	Value       []byte
	CreateIndex uint64
	ModIndex    uint64
	Version     uint64
	// Lease is the lease the key is attached to, 0 for none.
	Lease LeaseID
}

// Condition guards a write. The zero Condition always holds.
type Condition struct {
	// IfModIndex, when non-zero, requires the key to exist with this ModIndex.
	IfModIndex uint64
	// IfAbsent requires the key not to exist (create-only).
	IfAbsent bool
}

// IsZero reports whether the condition always holds.
func (c Condition) IsZero() bool { return c.IfModIndex == 0 && !c.IfAbsent }

// PutResult describes a successful put.
type PutResult struct {
	Key         []byte
	CreateIndex uint64
	ModIndex    uint64
	Version     uint64
	// Lease is the lease the key is now attached to (for a put with a
	// TTL, the lease granted for it), 0 for none.
	Lease LeaseID
}

// DeleteResult describes a delete: how many keys it removed and the raft
// index of the entry that removed them.
type DeleteResult struct {
	Deleted int64
	Index   uint64
}

// Consistency is the guarantee a read asks for.
type Consistency string

const (
	// Linearizable reads observe every write acknowledged before the read
	// began. It is the default.
	Linearizable Consistency = "linearizable"
	// Stale reads are served from the local state machine at once and may
	// miss recent writes.
	Stale Consistency = "stale"
)

// ParseConsistency turns a query parameter into a Consistency; the empty
// string is the default, Linearizable.
func ParseConsistency(s string) (Consistency, error) {
	switch Consistency(s) {
	case "", Linearizable:
		return Linearizable, nil
	case Stale:
		return Stale, nil
	}
	return "", fmt.Errorf("%w: consistency must be %q or %q, not %q", ErrBadRequest, Linearizable, Stale, s)
}

// ReadOptions tune a read.
type ReadOptions struct {
	// Consistency defaults to Linearizable.
	Consistency Consistency
	// MaxStale, for stale reads, refuses the read when the leader was last
	// heard from longer ago than this. Zero means no bound.
	MaxStale time.Duration
	// MinIndex, at any consistency, waits until the serving node has
	// applied this index (read-your-writes on any node: pass the index a
	// write returned). The wait is bounded by the context; past it the read
	// fails with a *WaitError.
	MinIndex uint64
	// WaitIndex, when non-zero, makes the read a blocking read (Consul's
	// ?index=): it first waits until the key (a listing: any key under its
	// prefix) changes at an index above WaitIndex, or WaitTime passes,
	// then reads as it would without it. Pass the index the previous read
	// returned (ListResult.Index, the X-Raft-Index of a read).
	WaitIndex uint64
	// WaitTime bounds a blocking read's wait for a change; zero means
	// DefaultBlockingWait. The context bounds the whole read.
	WaitTime time.Duration
}

// DefaultBlockingWait bounds a blocking read's wait for a change when
// ReadOptions.WaitTime is zero.
const DefaultBlockingWait = 5 * time.Minute

// WaitError is the error of a read whose MinIndex was not reached in time.
// It wraps ErrTimeout.
type WaitError struct {
	MinIndex, AppliedIndex uint64
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("timeout: waited for index %d, applied index is %d", e.MinIndex, e.AppliedIndex)
}

// Unwrap returns ErrTimeout.
func (e *WaitError) Unwrap() error { return ErrTimeout }

type idemKey struct{}

// WithIdempotencyKey returns a context that makes the write it is passed
// to idempotent: the store remembers key with the write's result, and a
// retry with the same key (after an ErrOutcomeUnknown, say) returns that
// result instead of applying twice. Keys are at most 256 bytes; use one
// key per logical write, such as a random UUID. A key given as a write
// option (Idempotent) takes precedence.
//
// Deprecated: pass Idempotent(key) to the write instead; the context is no
// place for a write's own options.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey{}, key)
}

// IdempotencyKey returns the key set by WithIdempotencyKey, or "".
func IdempotencyKey(ctx context.Context) string {
	k, _ := ctx.Value(idemKey{}).(string)
	return k
}

// MaxIdempotencyKeySize is the longest idempotency key accepted.
const MaxIdempotencyKeySize = 256

// ValidateIdempotencyKey checks a key set by WithIdempotencyKey.
func ValidateIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKeySize {
		return fmt.Errorf("%w: idempotency key is %d bytes, the limit is %d", ErrBadRequest, len(key), MaxIdempotencyKeySize)
	}
	return nil
}

// ListOptions select a page of keys.
type ListOptions struct {
	ReadOptions
	// Prefix selects the keys that start with it; empty selects every key.
	Prefix []byte
	// After starts the page after this key (exclusive).
	After []byte
	// Limit is the page size; zero means DefaultListLimit.
	Limit int
	// KeysOnly leaves values out.
	KeysOnly bool
}

// ListResult is one page of a listing.
type ListResult struct {
	Items []Record
	// More reports whether keys remain after Next.
	More bool
	// Next is the last key of this page: pass it as After for the next page.
	Next []byte
	// Index is the applied index the page reflects.
	Index uint64
}

// ValidateKey checks a key against the limits every layer enforces.
func ValidateKey(key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: key is empty", ErrInvalidKey)
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: key is %d bytes, the limit is %d", ErrInvalidKey, len(key), MaxKeySize)
	}
	return nil
}

// The sentinel errors. Callers branch on them with errors.Is; each has a
// stable wire code (Code) that survives the trip through HTTP.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidKey: the key is empty or longer than MaxKeySize.
	ErrInvalidKey = errors.New("invalid key")
	// ErrBadRequest: a parameter or body is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrTooLarge: a body or value is over its limit.
	ErrTooLarge = errors.New("too large")
	// ErrPreconditionFailed: a write's Condition did not hold; nothing was written.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrNoLeader: no leader is known or reachable. A write that fails with
	// it was certainly not applied.
	ErrNoLeader = errors.New("no leader")
	// ErrNotLeader: this node is not the leader and will not forward.
	ErrNotLeader = errors.New("not the leader")
	// ErrOutcomeUnknown: the write was handed to raft but its outcome could
	// not be learned (leadership lost, deadline passed). It may or may not
	// have been applied; the server never retries it on its own.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrIdempotencyKeyReused: a write carried an idempotency key already
	// used, within the retention window, by a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused")
	// ErrTooStale: a stale read refused because the leader was last heard
	// from longer ago than the read's MaxStale.
	ErrTooStale = errors.New("too stale")
	// ErrTimeout: a read could not be served before its deadline.
	ErrTimeout = errors.New("timeout")
	// ErrClosed: the node is shutting down.
	ErrClosed = errors.New("node closed")
	// ErrMethodNotAllowed: the HTTP method is not served on this path.
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrWrongNode: a request meant for one member, by server id, reached
	// another (the address it was sent to now belongs to someone else).
	ErrWrongNode = errors.New("wrong node")
	// ErrPermissionDenied: the request is not allowed to the caller: its
	// token lacks a right (*DeniedError), or an internal endpoint was asked
	// by a non-member.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrWouldLoseQuorum: a membership change refused because the voters
	// left would be fewer live ones than a quorum of the new
	// configuration; nothing was changed. Forcing it is the operator's
	// call (RemoveOptions.Force).
	ErrWouldLoseQuorum = errors.New("would lose quorum")
)

var codes = []struct {
	err  error
	code string
}{
	{ErrNotFound, "not_found"},
	{ErrInvalidKey, "invalid_key"},
	{ErrBadRequest, "bad_request"},
	{ErrTooLarge, "too_large"},
	{ErrPreconditionFailed, "precondition_failed"},
	{ErrNoLeader, "no_leader"},
	{ErrNotLeader, "not_leader"},
	{ErrOutcomeUnknown, "outcome_unknown"},
	{ErrIdempotencyKeyReused, "idempotency_key_reused"},
	{ErrTooStale, "too_stale"},
	{ErrTimeout, "timeout"},
	{ErrClosed, "shutting_down"},
	{ErrMethodNotAllowed, "method_not_allowed"},
	{ErrWrongNode, "wrong_node"},
	{ErrPermissionDenied, "permission_denied"},
	{ErrUnauthenticated, "unauthenticated"},
	{ErrWouldLoseQuorum, "would_lose_quorum"},
	{ErrCompacted, "compacted"},
	{ErrTooManyWatchers, "too_many_watchers"},
	{ErrLeaseNotFound, "lease_not_found"},
	{ErrNoElectionLeader, "no_election_leader"},
	{ErrWrongCluster, "wrong_cluster"},
	{ErrIncompatibleVersion, "incompatible_version"},
}

// CodeInternal is the wire code of an error that matches no sentinel.
const CodeInternal = "internal"

// Code returns the stable wire code of err: the code of the first sentinel
// err wraps, or CodeInternal.
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeInternal
}

// FromCode rebuilds an error received over the wire: it wraps the sentinel
// with that code (so errors.Is works) and keeps the server's message.
func FromCode(code, message string) error {
	for _, c := range codes {
		if c.code == code {
			return &WireError{Code: code, Message: message, sentinel: c.err}
		}
	}
	return &WireError{Code: code, Message: message}
}

// WireError is an error decoded from a server's JSON error body.
type WireError struct {
	Code    string
	Message string
	// ETag is the current ETag of the key, when the server sent one (412).
	ETag     string
	sentinel error
}

func (e *WireError) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Message
}

// Unwrap returns the sentinel the code stands for, if any.
func (e *WireError) Unwrap() error { return e.sentinel }

// PreconditionError is the error of a write whose Condition did not hold.
// It wraps ErrPreconditionFailed and says what the key looks like now.
type PreconditionError struct {
	// CurrentModIndex is the key's ModIndex now; 0 means the key is absent.
	CurrentModIndex uint64
}

func (e *PreconditionError) Error() string {
	if e.CurrentModIndex == 0 {
		return "precondition failed: key does not exist"
	}
	return fmt.Sprintf("precondition failed: key is at mod_index %d", e.CurrentModIndex)
}

// Unwrap returns ErrPreconditionFailed.
func (e *PreconditionError) Unwrap() error { return ErrPreconditionFailed }
