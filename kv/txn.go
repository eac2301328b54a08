package kv

import (
	"fmt"
)

// MaxTxnOps is the most compares, or ops in one branch, a transaction may hold.
const MaxTxnOps = 128

// CompareTarget is what a Compare looks at.
type CompareTarget string

// The compare targets.
const (
	TargetValue       CompareTarget = "value"
	TargetModIndex    CompareTarget = "mod_index"
	TargetCreateIndex CompareTarget = "create_index"
	TargetVersion     CompareTarget = "version"
	TargetExists      CompareTarget = "exists"
	// TargetLock compares the fencing token of the lock named Key (not
	// a key: a lock name): the create_index of the oldest key in the
	// lock's queue (LockQueue), 0 when no one holds it. Fence.Compare
	// builds the usual one: held with this token.
	TargetLock CompareTarget = "lock"
)

// CompareOp is how a Compare compares.
type CompareOp string

// The compare operators. Values compare as bytes; exists takes only = and !=.
const (
	OpEqual    CompareOp = "="
	OpNotEqual CompareOp = "!="
	OpLess     CompareOp = "<"
	OpGreater  CompareOp = ">"
)

// Compare is one condition of a transaction. An absent key has mod_index,
// create_index and version 0, does not exist, and has no value: every
// comparison of its value is false.
type Compare struct {
	Key    []byte
	Target CompareTarget
	Op     CompareOp
	// Value is the operand for TargetValue, Number for the index and
	// version targets, Exists for TargetExists.
	Value  []byte
	Number uint64
	Exists bool
}

// TxnOpType is the kind of a transaction op.
type TxnOpType string

// The transaction ops.
const (
	TxnPut          TxnOpType = "put"
	TxnDelete       TxnOpType = "delete"
	TxnDeletePrefix TxnOpType = "delete_prefix"
	TxnGet          TxnOpType = "get"
)

// TxnOp is one op of a transaction branch.
type TxnOp struct {
	Type  TxnOpType
	Key   []byte
	Value []byte
	// Lease attaches the key of a TxnPut to this lease (0: none, and the
	// put detaches the key from any lease it had).
	Lease LeaseID
}

// Txn is an atomic compare/then/else over many keys: if every Compare
// holds, Success runs, else Failure; either way as one raft entry.
type Txn struct {
	Compare []Compare
	Success []TxnOp
	Failure []TxnOp
}

// TxnOpResult is the outcome of one op of the branch taken.
type TxnOpResult struct {
	Type TxnOpType
	// Put is set for TxnPut.
	Put PutResult
	// Deleted counts the keys a TxnDelete or TxnDeletePrefix removed.
	Deleted int64
	// Record is the key read by TxnGet, nil when the key is absent.
	Record *Record
}

// TxnResult is the outcome of a transaction.
type TxnResult struct {
	// Succeeded reports whether every compare held (Success ran).
	Succeeded bool
	// Index is the raft index of the entry that applied the transaction.
	Index   uint64
	Results []TxnOpResult
}

// Validate checks a transaction against the limits every layer enforces:
// at most MaxTxnOps compares and ops per branch, valid keys and operators,
// and keys plus values of at most maxBytes in all (ErrTooLarge beyond).
func (t *Txn) Validate(maxBytes int64) error {
	if len(t.Compare) > MaxTxnOps || len(t.Success) > MaxTxnOps || len(t.Failure) > MaxTxnOps {
		return fmt.Errorf("%w: a transaction takes at most %d compares and %d ops per branch", ErrBadRequest, MaxTxnOps, MaxTxnOps)
	}
	var size int64
	for i, c := range t.Compare {
		if c.Target == TargetLock {
			if err := ValidateLockName(string(c.Key)); err != nil {
				return fmt.Errorf("compare %d: %w", i, err)
			}
		} else if err := ValidateKey(c.Key); err != nil {
			return fmt.Errorf("compare %d: %w", i, err)
		}
		size += int64(len(c.Key) + len(c.Value))
		switch c.Target {
		case TargetValue, TargetModIndex, TargetCreateIndex, TargetVersion, TargetLock:
			switch c.Op {
			case OpEqual, OpNotEqual, OpLess, OpGreater:
			default:
				return fmt.Errorf("%w: compare %d: unknown op %q", ErrBadRequest, i, c.Op)
			}
		case TargetExists:
			if c.Op != OpEqual && c.Op != OpNotEqual {
				return fmt.Errorf("%w: compare %d: exists takes = or !=, not %q", ErrBadRequest, i, c.Op)
			}
		default:
			return fmt.Errorf("%w: compare %d: unknown target %q", ErrBadRequest, i, c.Target)
		}
		if c.Target != TargetValue && len(c.Value) > 0 {
			return fmt.Errorf("%w: compare %d: target %s takes no value bytes", ErrBadRequest, i, c.Target)
		}
	}
	for _, branch := range []struct {
		name string
		ops  []TxnOp
	}{{"success", t.Success}, {"failure", t.Failure}} {
		for i, op := range branch.ops {
			size += int64(len(op.Key) + len(op.Value))
			switch op.Type {
			case TxnPut, TxnDelete, TxnGet:
				if err := ValidateKey(op.Key); err != nil {
					return fmt.Errorf("%s op %d: %w", branch.name, i, err)
				}
			case TxnDeletePrefix:
				if len(op.Key) > MaxKeySize {
					return fmt.Errorf("%s op %d: %w", branch.name, i, ValidateKey(op.Key))
				}
			default:
				return fmt.Errorf("%w: %s op %d: unknown op %q", ErrBadRequest, branch.name, i, op.Type)
			}
			if op.Type != TxnPut && len(op.Value) > 0 {
				return fmt.Errorf("%w: %s op %d: %s takes no value", ErrBadRequest, branch.name, i, op.Type)
			}
			if op.Type != TxnPut && op.Lease != 0 {
				return fmt.Errorf("%w: %s op %d: %s takes no lease", ErrBadRequest, branch.name, i, op.Type)
			}
		}
	}
	if size > maxBytes {
		return fmt.Errorf("%w: transaction keys and values are %d bytes, the limit is %d", ErrTooLarge, size, maxBytes)
	}
	return nil
}
