package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// IdempotencyWindow is how many log indexes an idempotency key is
// remembered for: a command at index r whose key was used by the entry at
// index u is answered from the record when r-u <= IdempotencyWindow, and
// applies anew (replacing the record) when r-u > IdempotencyWindow. It is
// counted in log indexes, not time, so every node expires the same keys at
// the same entry.
const IdempotencyWindow = 100_000

// fingerprint identifies what a command does, without its idempotency key.
func fingerprint(c *Command) [sha256.Size]byte {
	return sha256.Sum256(c.appendBody([]byte{byte(c.Op), boolByte(c.Cond.IfAbsent)}))
}

// idemUsedAt returns the log index of the entry that used the key of the
// stored idempotency record v (the Index of its result, the first field
// after the fingerprint).
func idemUsedAt(v []byte) (uint64, bool) {
	if len(v) < sha256.Size {
		return 0, false
	}
	u, n := binary.Uvarint(v[sha256.Size:])
	return u, n > 0
}

// idemExpired reports whether a record used at index used is past the
// window for a command at index: the one rule deciding whether a record
// still answers. It does not depend on whether expireIdem has deleted the
// record yet, so the answer never depends on where batches end.
func idemExpired(used, index, window uint64) bool {
	return index > used && index-used > window
}

// expireIdem deletes the idempotency records that are expired for every
// entry after index: those used at or before index-window, in idem_exp
// order. It only reclaims space (applyIdempotent ignores expired records
// on its own), so running it once per batch, with the batch's last index,
// leaves the same records as running it after every entry.
//
// An idem_exp entry deletes its key's record only if that record is the
// one it was written for (used at or before the limit): a record replaced
// after its expiry is never deleted by the old record's entry (which
// applyIdempotent removes anyway when it replaces the record).
func expireIdem(b *buckets, index, window uint64) error {
	if index <= window {
		return nil
	}
	last := index - window // expire records used at or before last
	limit := u64(last + 1)
	c := b.idemExp.Cursor()
	for k, _ := c.First(); k != nil && (len(k) < 8 || string(k[:8]) < string(limit)); k, _ = c.First() {
		if len(k) >= 8 {
			key := k[8:]
			if used, ok := idemUsedAt(b.idem.Get(key)); !ok || used <= last {
				if err := b.idem.Delete(key); err != nil {
					return err
				}
			}
		} // else: not ours; never written, but never loop on it
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// forgetIdem deletes the record of key, used at index used, and its
// idem_exp entry.
func forgetIdem(b *buckets, used uint64, key []byte) error {
	if err := b.idem.Delete(key); err != nil {
		return err
	}
	return b.idemExp.Delete(append(u64(used), key...))
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
	// The lease fields came later: a record that ends before them (an
	// idempotency record written before leases) has none.
	b = binary.AppendUvarint(b, uint64(r.Put.Lease))
	b = binary.AppendUvarint(b, uint64(r.Lease.ID))
	b = binary.AppendUvarint(b, uint64(r.Lease.TTL/time.Millisecond))
	// The token came later still: a record that ends before it has none.
	return binary.AppendUvarint(b, r.Token)
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
	if d.err == nil && len(d.b) > 0 {
		r.Put.Lease = kv.LeaseID(d.uvarint("put lease"))
		r.Lease.ID = kv.LeaseID(d.uvarint("lease"))
		r.Lease.TTL = time.Duration(d.uvarint("lease ttl")) * time.Millisecond
	}
	if d.err == nil && len(d.b) > 0 {
		r.Token = d.uvarint("token")
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
