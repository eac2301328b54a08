package store

import (
	"bytes"
	"cmp"

	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

// applyTxn evaluates t's compares against the current state and runs the
// success or the failure ops in order, each seeing the ones before it.
func applyTxn(bs *buckets, t *kv.Txn, index uint64) (kv.TxnResult, error) {
	b := bs.kv
	res := kv.TxnResult{Succeeded: true, Index: index}
	for _, c := range t.Compare {
		ok, err := holds(b, c)
		if err != nil {
			return kv.TxnResult{}, err
		}
		if !ok {
			res.Succeeded = false
			break
		}
	}
	ops := t.Success
	if !res.Succeeded {
		ops = t.Failure
	}
	// Every lease the branch attaches keys to must exist, checked before
	// any op runs: no op of a transaction grants or revokes one, and a
	// failure half-way would leave the ops before it applied.
	for _, op := range ops {
		if op.Lease != 0 {
			if _, ok, err := bs.lease(uint64(op.Lease)); err != nil || !ok {
				return kv.TxnResult{}, leaseErr(err, uint64(op.Lease))
			}
		}
	}
	res.Results = make([]kv.TxnOpResult, 0, len(ops))
	for _, op := range ops {
		r := kv.TxnOpResult{Type: op.Type}
		var err error
		switch op.Type {
		case kv.TxnPut:
			r.Put, _, err = put(bs, Command{Op: OpPut, Key: op.Key, Value: op.Value, Lease: uint64(op.Lease)}, index)
		case kv.TxnDelete:
			r.Deleted, _, err = del(bs, Command{Op: OpDelete, Key: op.Key})
		case kv.TxnDeletePrefix:
			r.Deleted, err = deletePrefix(bs, op.Key)
		case kv.TxnGet:
			if v := b.Get(op.Key); v != nil {
				var rec kv.Record
				rec, err = decodeRecord(op.Key, v, true)
				r.Record = &rec
			}
		}
		if err != nil {
			return kv.TxnResult{}, err
		}
		res.Results = append(res.Results, r)
	}
	return res, nil
}

// holds evaluates one compare. An absent key has indexes and version 0,
// does not exist, and fails every value comparison.
func holds(b *bbolt.Bucket, c kv.Compare) (bool, error) {
	if c.Target == kv.TargetLock {
		token, err := lockToken(b, c.Key)
		if err != nil {
			return false, err
		}
		return compareOrder(cmp.Compare(token, c.Number), c.Op), nil
	}
	v := b.Get(c.Key)
	exists := v != nil
	var rec kv.Record
	if exists {
		var err error
		if rec, err = decodeRecord(nil, v, c.Target == kv.TargetValue); err != nil {
			return false, err
		}
	}
	var order int
	switch c.Target {
	case kv.TargetExists:
		return (exists == c.Exists) == (c.Op == kv.OpEqual), nil
	case kv.TargetValue:
		if !exists {
			return false, nil
		}
		order = bytes.Compare(rec.Value, c.Value)
	case kv.TargetModIndex:
		order = cmp.Compare(rec.ModIndex, c.Number)
	case kv.TargetCreateIndex:
		order = cmp.Compare(rec.CreateIndex, c.Number)
	case kv.TargetVersion:
		order = cmp.Compare(rec.Version, c.Number)
	}
	return compareOrder(order, c.Op), nil
}

// compareOrder reports whether order (of the stored value against the
// operand) satisfies op.
func compareOrder(order int, op kv.CompareOp) bool {
	switch op {
	case kv.OpEqual:
		return order == 0
	case kv.OpNotEqual:
		return order != 0
	case kv.OpLess:
		return order < 0
	case kv.OpGreater:
		return order > 0
	}
	return false
}
