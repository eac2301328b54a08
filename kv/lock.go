package kv

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Locks and elections are queues of keys in the store's own key space,
// under LockPrefix and ElectionPrefix: a waiter puts a key attached to
// its lease under the name's prefix, and the key created first (the
// lowest create_index) holds the lock or leads the election. Its
// create_index is the fencing token: every later holder's key was
// created later, so tokens increase with every acquisition of a name.
// The keys are ordinary keys (a watch or a list under the prefix shows
// the queue), and a holder's lease expiring deletes its key, which hands
// the lock to the next waiter.
const (
	LockPrefix     = "_raftkv/lock/"
	ElectionPrefix = "_raftkv/election/"
)

// MaxLockNameSize is the longest lock or election name, in bytes.
const MaxLockNameSize = 256

// ErrNoElectionLeader: the election has no leader now.
var ErrNoElectionLeader = errors.New("no election leader")

// ValidateLockName checks a lock or election name: 1 to MaxLockNameSize
// bytes of valid UTF-8 with no '/' and no control characters. The error
// wraps ErrBadRequest.
func ValidateLockName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrBadRequest)
	case len(name) > MaxLockNameSize:
		return fmt.Errorf("%w: the name is %d bytes, the limit is %d", ErrBadRequest, len(name), MaxLockNameSize)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: the name is not valid UTF-8", ErrBadRequest)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("%w: the name %q holds a '/'", ErrBadRequest, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: the name %q holds a control character", ErrBadRequest, name)
		}
	}
	return nil
}

// LockQueue is the prefix of the keys that queue for lock name.
func LockQueue(name string) []byte { return []byte(LockPrefix + name + "/") }

// ElectionQueue is the prefix of the keys that campaign in election name.
func ElectionQueue(name string) []byte { return []byte(ElectionPrefix + name + "/") }

// LockOptions say which lease a lock (or a candidacy) hangs on: an
// existing Lease, or, with TTL, a lease granted for it (released with
// it). Exactly one must be set. Wait, when positive, bounds how long to
// wait for the lock; without it the wait lasts as long as the context.
type LockOptions struct {
	Lease LeaseID
	TTL   time.Duration
	Wait  time.Duration
}

// Validate checks that exactly one of Lease and TTL is set and Wait is
// not negative (the TTL's bounds are the node's to check).
func (o LockOptions) Validate() error {
	switch {
	case o.Lease == 0 && o.TTL == 0:
		return fmt.Errorf("%w: a lock needs a lease or a ttl", ErrBadRequest)
	case o.Lease != 0 && o.TTL != 0:
		return fmt.Errorf("%w: a lock takes a lease or a ttl, not both", ErrBadRequest)
	case o.Wait < 0:
		return fmt.Errorf("%w: wait must not be negative", ErrBadRequest)
	}
	return nil
}

// Hold is a held lock, or a won election: the queue key that holds it and
// its fencing token.
type Hold struct {
	// Name is the lock's or the election's name.
	Name string
	// Key is the queue key (LockQueue(name) or ElectionQueue(name), then
	// the lease id).
	Key []byte
	// Token is the key's create_index: it increases with every
	// acquisition of the name. Writes can require it (WithFence).
	Token uint64
	// Lease is the lease the key is attached to.
	Lease LeaseID
	// OwnLease reports that the lease was granted for this hold (LockOptions.TTL):
	// releasing the hold revokes it.
	OwnLease bool
	// Value is the candidate's value (elections; empty for a lock).
	Value []byte
	// Index is the applied index at which the hold was established.
	Index uint64
}

// Fence makes a write conditional on a lock: it applies only if the lock
// named Lock is held with Token (the holder's key is the oldest in the
// lock's queue and its create_index is Token), checked by the state
// machine in the same entry as the write; else it fails with a
// *PreconditionError and writes nothing.
type Fence struct {
	Lock  string
	Token uint64
}

// IsZero reports whether f is no fence.
func (f Fence) IsZero() bool { return f.Lock == "" && f.Token == 0 }

// Validate checks the lock name and that the token is positive.
func (f Fence) Validate() error {
	if err := ValidateLockName(f.Lock); err != nil {
		return err
	}
	if f.Token == 0 {
		return fmt.Errorf("%w: a fencing token is positive", ErrBadRequest)
	}
	return nil
}

// Compare is the transaction compare that holds when f's lock is held
// with f's token.
func (f Fence) Compare() Compare {
	return Compare{Key: []byte(f.Lock), Target: TargetLock, Op: OpEqual, Number: f.Token}
}

// HoldJSON is the wire form of a Hold (POST /v1/lock, the election
// routes).
type HoldJSON struct {
	Name        string  `json:"name"`
	Key         string  `json:"key,omitempty"`
	KeyBase64   string  `json:"key_base64,omitempty"`
	Token       uint64  `json:"token"`
	Lease       LeaseID `json:"lease"`
	OwnLease    bool    `json:"own_lease,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	Index       uint64  `json:"index,omitempty"`
}

// EncodeHold converts h to its wire form; withValue includes the value
// (elections).
func EncodeHold(h Hold, withValue bool) HoldJSON {
	out := HoldJSON{Name: h.Name, Token: h.Token, Lease: h.Lease, OwnLease: h.OwnLease, Index: h.Index}
	out.Key, out.KeyBase64 = EncodeBytes(h.Key)
	if withValue {
		s, b := EncodeBytes(h.Value)
		if b != "" {
			out.ValueBase64 = &b
		} else {
			out.Value = &s
		}
	}
	return out
}

// Hold converts the wire form back to a Hold.
func (h HoldJSON) Hold() (Hold, error) {
	key, err := DecodeBytes(h.Key, h.KeyBase64)
	if err != nil {
		return Hold{}, fmt.Errorf("key: %w", err)
	}
	out := Hold{Name: h.Name, Key: key, Token: h.Token, Lease: h.Lease, OwnLease: h.OwnLease, Index: h.Index}
	switch {
	case h.ValueBase64 != nil:
		if out.Value, err = DecodeBytes("", *h.ValueBase64); err != nil {
			return Hold{}, fmt.Errorf("value_base64: %w", err)
		}
	case h.Value != nil:
		out.Value = []byte(*h.Value)
	}
	return out, nil
}

// ElectionLineJSON is one line of an election's observe stream (GET
// /v1/election/{name}?observe=true): the leader from Index on, nil when
// the election has none.
type ElectionLineJSON struct {
	Leader *HoldJSON `json:"leader"`
	Index  uint64    `json:"index"`
}
