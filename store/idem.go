package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/kv"
)

// IdempotencyWindow is how many log entries an idempotency key is
// remembered for. It is counted in log indexes, not time, so every node
// expires the same keys at the same entry.
const IdempotencyWindow = 100_000

// fingerprint identifies what a command does, without its idempotency key.
func fingerprint(c *Command) [sha256.Size]byte {
	return sha256.Sum256(c.appendBody([]byte{byte(c.Op), boolByte(c.Cond.IfAbsent)}))
}

// expireIdem forgets the idempotency keys used at or before
// index-IdempotencyWindow.
func expireIdem(b buckets, index uint64) error {
	if index <= IdempotencyWindow {
		return nil
	}
	limit := u64(index - IdempotencyWindow + 1)
	c := b.idemExp.Cursor()
	for k, _ := c.First(); k != nil && (len(k) < 8 || string(k[:8]) < string(limit)); k, _ = c.First() {
		if len(k) < 8 { // not ours; never written, but never loop on it
			if err := c.Delete(); err != nil {
				return err
			}
			continue
		}
		if err := b.idem.Delete(k[8:]); err != nil {
			return err
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// encodeIdem stores a command's fingerprint with its result:
//
//	fingerprint [32] | result (AppendResult)
func encodeIdem(fp [sha256.Size]byte, r *Result) []byte {
	return AppendResult(append([]byte{}, fp[:]...), r)
}

// decodeIdem is the inverse of encodeIdem. The slices it returns are copies.
func decodeIdem(v []byte) (*Result, []byte, error) {
	if len(v) < sha256.Size {
		return nil, nil, errors.New("truncated")
	}
	r, rest, err := DecodeResult(v[sha256.Size:])
	if err == nil && len(rest) > 0 {
		err = errors.New("trailing bytes")
	}
	if err != nil {
		return nil, nil, err
	}
	return r, v[:sha256.Size], nil
}

// AppendResult appends the encoding of r to dst: what the command did, and
// whether its condition failed (Err wrapping a *kv.PreconditionError).
// Other errors and Replayed are not encoded; callers that need them carry
// them beside. The encoding is part of kv.db (the idempotency table):
//
//	uvarint index | byte failed | uvarint current mod
//	bytes put key | uvarint create | uvarint mod | uvarint version
//	uvarint deleted | uvarint delete index
//	byte succeeded | uvarint txn index | uvarint n | n op results
//	op result: byte type | bytes key | uvarint create | uvarint mod |
//	           uvarint version | uvarint deleted | byte found | bytes value
func AppendResult(b []byte, r *Result) []byte {
	b = binary.AppendUvarint(b, r.Index)
	b = append(b, boolByte(r.Err != nil))
	b = binary.AppendUvarint(b, r.CurrentModIndex)
	b = appendBytes(b, r.Put.Key)
	b = binary.AppendUvarint(b, r.Put.CreateIndex)
	b = binary.AppendUvarint(b, r.Put.ModIndex)
	b = binary.AppendUvarint(b, r.Put.Version)
	b = binary.AppendUvarint(b, uint64(r.Delete.Deleted))
	b = binary.AppendUvarint(b, r.Delete.Index)
	b = append(b, boolByte(r.Txn.Succeeded))
	b = binary.AppendUvarint(b, r.Txn.Index)
	b = binary.AppendUvarint(b, uint64(len(r.Txn.Results)))
	for _, o := range r.Txn.Results {
		var rec kv.Record
		switch {
		case o.Type == kv.TxnPut:
			rec = kv.Record{Key: o.Put.Key, CreateIndex: o.Put.CreateIndex, ModIndex: o.Put.ModIndex, Version: o.Put.Version}
		case o.Record != nil:
			rec = *o.Record
		}
		b = append(b, txnOpCode[o.Type])
		b = appendBytes(b, rec.Key)
		b = binary.AppendUvarint(b, rec.CreateIndex)
		b = binary.AppendUvarint(b, rec.ModIndex)
		b = binary.AppendUvarint(b, rec.Version)
		b = binary.AppendUvarint(b, uint64(o.Deleted))
		b = append(b, boolByte(o.Record != nil))
		b = appendBytes(b, rec.Value)
	}
	return b
}

// DecodeResult decodes a result that AppendResult encoded at the start of
// b and returns the bytes after it. The slices of the Result are copies.
func DecodeResult(b []byte) (*Result, []byte, error) {
	d := decoder{b: b}
	r := &Result{Index: d.uvarint("index")}
	failed := d.byte("failed")
	r.CurrentModIndex = d.uvarint("current mod index")
	r.Put.Key = clone(d.bytes("put key"))
	r.Put.CreateIndex = d.uvarint("create")
	r.Put.ModIndex = d.uvarint("mod")
	r.Put.Version = d.uvarint("version")
	r.Delete.Deleted = int64(d.uvarint("deleted"))
	r.Delete.Index = d.uvarint("delete index")
	r.Txn.Succeeded = d.byte("succeeded") == 1
	r.Txn.Index = d.uvarint("txn index")
	n := d.count("txn results", kv.MaxTxnOps)
	for range n {
		typ, _ := decodeCode(txnOpCode, d.byte("type"))
		rec := kv.Record{Key: clone(d.bytes("key")), CreateIndex: d.uvarint("create"), ModIndex: d.uvarint("mod"), Version: d.uvarint("version")}
		o := kv.TxnOpResult{Type: typ, Deleted: int64(d.uvarint("deleted"))}
		found := d.byte("found") == 1
		rec.Value = clone(d.bytes("value"))
		switch {
		case typ == kv.TxnPut:
			o.Put = kv.PutResult{Key: rec.Key, CreateIndex: rec.CreateIndex, ModIndex: rec.ModIndex, Version: rec.Version}
		case found:
			if rec.Value == nil {
				rec.Value = []byte{}
			}
			o.Record = &rec
		}
		r.Txn.Results = append(r.Txn.Results, o)
	}
	if d.err != nil {
		return nil, nil, fmt.Errorf("decode result: %w", d.err)
	}
	if failed == 1 {
		r.Err = &kv.PreconditionError{CurrentModIndex: r.CurrentModIndex}
	}
	return r, d.b, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
