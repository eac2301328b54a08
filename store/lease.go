package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

// Leases in the state machine. A lease is a record in the leases bucket;
// the keys attached to it are listed twice, by lease (lease_keys: 8-byte
// id, then the key) for a revoke, and by key (key_lease: key → 8-byte id)
// for a put or delete of the key, which detaches it. A key's kv record
// does not change: a store without leases reads and writes exactly as
// before (one empty-bucket lookup per write).
//
// The state machine never reads a clock. A lease's record holds its TTL,
// the remaining time last recorded through the log (its TTL at a grant or
// keepalive, the leader's reckoning at a checkpoint), and the index of its
// last keepalive. Time passes only on the nodes: each node's timers start
// from the remaining time of the entry that recorded it, when that entry
// is applied there (Options.OnLeases), and only the leader acts on them,
// by appending a revoke that names the keepalive index its timer started
// from (OpLeaseRevoke).
var (
	bucketLeases    = []byte("leases")
	bucketLeaseKeys = []byte("lease_keys")
	bucketKeyLease  = []byte("key_lease")

	// keyLeaseNext (meta) is the id the next grant takes.
	keyLeaseNext = []byte("lease_next")
)

// maxTTLMillis is the longest TTL a command may carry.
const maxTTLMillis = uint64(kv.MaxLeaseTTL / time.Millisecond)

// LeaseState is a lease as the state machine holds it.
type LeaseState struct {
	ID  kv.LeaseID
	TTL time.Duration
	// Remaining is the remaining time the last keepalive (its TTL) or
	// checkpoint recorded.
	Remaining time.Duration
	// KeepaliveIndex is the index of the lease's last keepalive, or of
	// its grant.
	KeepaliveIndex uint64
}

// LeaseChange is what one applied entry recorded of a lease: a node's
// timer for it starts again from Remaining when the entry is applied, or
// stops (Gone).
type LeaseChange struct {
	LeaseState
	// Index is the entry's index.
	Index uint64
	Gone  bool
}

func leaseKey(id uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), id) }

func encodeLease(ttl, remaining, keepalive uint64) []byte {
	b := make([]byte, 0, 3*binary.MaxVarintLen64)
	b = binary.AppendUvarint(b, ttl)
	b = binary.AppendUvarint(b, remaining)
	return binary.AppendUvarint(b, keepalive)
}

func decodeLease(id, v []byte) (LeaseState, error) {
	d := decoder{b: v}
	ttl, rem, ka := d.uvarint("ttl"), d.uvarint("remaining"), d.uvarint("keepalive index")
	if d.err != nil || len(id) != 8 {
		return LeaseState{}, fmt.Errorf("corrupt lease record %x: %v", id, d.err)
	}
	return LeaseState{
		ID:             kv.LeaseID(binary.BigEndian.Uint64(id)),
		TTL:            time.Duration(ttl) * time.Millisecond,
		Remaining:      time.Duration(rem) * time.Millisecond,
		KeepaliveIndex: ka,
	}, nil
}

// leaseBuckets opens the lease buckets of tx, creating them in a file
// written before leases existed (or restored from such a snapshot).
func leaseBuckets(tx *bbolt.Tx, b *buckets) error {
	var err error
	if b.leases, err = tx.CreateBucketIfNotExists(bucketLeases); err != nil {
		return err
	}
	if b.leaseKeys, err = tx.CreateBucketIfNotExists(bucketLeaseKeys); err != nil {
		return err
	}
	if b.keyLease, err = tx.CreateBucketIfNotExists(bucketKeyLease); err != nil {
		return err
	}
	b.meta = tx.Bucket(bucketMeta)
	k, _ := b.keyLease.Cursor().First()
	b.anyLeased = k != nil
	return nil
}

// grant creates a lease of ttl milliseconds, as of index.
func (b *buckets) grant(ttl, index uint64) (uint64, error) {
	id, _ := getU64(b.meta, keyLeaseNext)
	id = max(id, 1)
	if err := b.meta.Put(keyLeaseNext, u64(id+1)); err != nil {
		return 0, err
	}
	if err := b.leases.Put(leaseKey(id), encodeLease(ttl, ttl, index)); err != nil {
		return 0, err
	}
	b.leaseChange(LeaseChange{LeaseState: LeaseState{ID: kv.LeaseID(id), TTL: ms(ttl), Remaining: ms(ttl), KeepaliveIndex: index}, Index: index})
	return id, nil
}

func ms(v uint64) time.Duration { return time.Duration(v) * time.Millisecond }

// lease reads lease id.
func (b *buckets) lease(id uint64) (LeaseState, bool, error) {
	k := leaseKey(id)
	v := b.leases.Get(k)
	if v == nil {
		return LeaseState{}, false, nil
	}
	l, err := decodeLease(k, v)
	return l, err == nil, err
}

func (b *buckets) leaseChange(c LeaseChange) {
	b.rec.leases = append(b.rec.leases, c)
}

// keepalive restarts lease id's TTL as of index.
func (b *buckets) keepalive(id, index uint64) (LeaseState, error) {
	l, ok, err := b.lease(id)
	if err != nil || !ok {
		return l, leaseErr(err, id)
	}
	ttl := uint64(l.TTL / time.Millisecond)
	if err := b.leases.Put(leaseKey(id), encodeLease(ttl, ttl, index)); err != nil {
		return l, err
	}
	l.Remaining, l.KeepaliveIndex = l.TTL, index
	b.leaseChange(LeaseChange{LeaseState: l, Index: index})
	return l, nil
}

func leaseErr(err error, id uint64) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: lease %d", kv.ErrLeaseNotFound, id)
}

// revoke removes lease id and deletes its keys, recording their events.
// With ifKeepalive set, a lease kept alive since is left alone: the
// result is a *kv.PreconditionError.
func (b *buckets) revoke(id, ifKeepalive, index uint64) (LeaseState, int64, error) {
	l, ok, err := b.lease(id)
	if err != nil || !ok {
		return l, 0, leaseErr(err, id)
	}
	if ifKeepalive != 0 && l.KeepaliveIndex != ifKeepalive {
		return l, 0, &kv.PreconditionError{}
	}
	prefix := leaseKey(id)
	c := b.leaseKeys.Cursor()
	var n int64
	// Seek again after each delete, as deletePrefix does.
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		key := bytes.Clone(k[8:])
		if err := c.Delete(); err != nil {
			return l, n, err
		}
		if err := b.keyLease.Delete(key); err != nil {
			return l, n, err
		}
		d, _, err := del(b, Command{Op: OpDelete, Key: key})
		if err != nil {
			return l, n, err
		}
		n += d
	}
	if err := b.leases.Delete(prefix); err != nil {
		return l, n, err
	}
	b.leaseChange(LeaseChange{LeaseState: l, Index: index, Gone: true})
	return l, n, nil
}

// checkpoint records the remaining times of the leases that still exist.
func (b *buckets) checkpoint(cps []LeaseCheckpoint, index uint64) error {
	for _, cp := range cps {
		l, ok, err := b.lease(cp.Lease)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		rem := min(cp.Remaining, uint64(l.TTL/time.Millisecond))
		if err := b.leases.Put(leaseKey(cp.Lease), encodeLease(uint64(l.TTL/time.Millisecond), rem, l.KeepaliveIndex)); err != nil {
			return err
		}
		l.Remaining = ms(rem)
		b.leaseChange(LeaseChange{LeaseState: l, Index: index})
	}
	return nil
}

// attach makes lease id (0: none) the lease of key, detaching it from the
// one it had.
func (b *buckets) attach(key []byte, id uint64) error {
	var old uint64
	if b.anyLeased {
		if v := b.keyLease.Get(key); len(v) == 8 {
			old = binary.BigEndian.Uint64(v)
		}
	}
	if old == id {
		return nil
	}
	if old != 0 {
		if err := b.leaseKeys.Delete(append(leaseKey(old), key...)); err != nil {
			return err
		}
		if id == 0 {
			return b.keyLease.Delete(key)
		}
	}
	if err := b.keyLease.Put(key, leaseKey(id)); err != nil {
		return err
	}
	b.anyLeased = true
	return b.leaseKeys.Put(append(leaseKey(id), key...), nil)
}

// detach forgets the lease of a deleted key.
func (b *buckets) detach(key []byte) error { return b.attach(key, 0) }

// leaseOf is the lease key is attached to in tx, 0 for none.
func leaseOf(tx *bbolt.Tx, key []byte) kv.LeaseID {
	kl := tx.Bucket(bucketKeyLease)
	if kl == nil {
		return 0
	}
	if v := kl.Get(key); len(v) == 8 {
		return kv.LeaseID(binary.BigEndian.Uint64(v))
	}
	return 0
}

// lockToken is the fencing token of lock name: the create_index of the
// oldest key in its queue, 0 when the queue is empty, and 0 too when two
// keys share the oldest create_index (keys written into the queue by
// hand in one entry): a token must name one holder, and no fenced write
// applies until the tie is gone. The node never makes such a tie: it
// queues each waiter's key in an entry of its own.
func lockToken(b *bbolt.Bucket, name []byte) (uint64, error) {
	prefix := kv.LockQueue(string(name))
	c := b.Cursor()
	var token uint64
	tied := false
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		rec, err := decodeRecord(k, v, false)
		if err != nil {
			return 0, err
		}
		switch {
		case token == 0 || rec.CreateIndex < token:
			token, tied = rec.CreateIndex, false
		case rec.CreateIndex == token:
			tied = true
		}
	}
	if tied {
		return 0, nil
	}
	return token, nil
}

// Lease returns lease id and the keys attached to it, as of the applied
// index (the second result). A lease that does not exist is an error
// wrapping kv.ErrLeaseNotFound.
func (s *Store) Lease(id kv.LeaseID) (LeaseState, [][]byte, uint64, error) {
	var l LeaseState
	var keys [][]byte
	var index uint64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		if index, _, err = readMeta(tx); err != nil {
			return err
		}
		lb := tx.Bucket(bucketLeases)
		var v []byte
		k := leaseKey(uint64(id))
		if lb != nil {
			v = lb.Get(k)
		}
		if v == nil {
			return leaseErr(nil, uint64(id))
		}
		if l, err = decodeLease(k, v); err != nil {
			return err
		}
		c := tx.Bucket(bucketLeaseKeys).Cursor()
		for key, _ := c.Seek(k); key != nil && bytes.HasPrefix(key, k); key, _ = c.Next() {
			keys = append(keys, bytes.Clone(key[8:]))
		}
		return nil
	})
	return l, keys, index, err
}

// Leases returns every lease, in id order, and the applied index the list
// reflects.
func (s *Store) Leases() ([]LeaseState, uint64, error) {
	var out []LeaseState
	var index uint64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		if index, _, err = readMeta(tx); err != nil {
			return err
		}
		lb := tx.Bucket(bucketLeases)
		if lb == nil {
			return nil
		}
		return lb.ForEach(func(k, v []byte) error {
			l, err := decodeLease(k, v)
			out = append(out, l)
			return err
		})
	})
	return out, index, err
}

// leaseChanges lists every lease of tx as a change at index (a restore).
func leaseChanges(tx *bbolt.Tx, index uint64) []LeaseChange {
	lb := tx.Bucket(bucketLeases)
	if lb == nil {
		return nil
	}
	var out []LeaseChange
	_ = lb.ForEach(func(k, v []byte) error {
		if l, err := decodeLease(k, v); err == nil {
			out = append(out, LeaseChange{LeaseState: l, Index: index})
		}
		return nil
	})
	return out
}

// Queue returns every record under prefix (a lock's or an election's
// queue) with its value and lease, ordered by create_index (oldest
// first; ties in key order), and the applied index it reflects, read in one transaction.
func (s *Store) Queue(prefix []byte) ([]kv.Record, uint64, error) {
	var out []kv.Record
	var index uint64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		if index, _, err = readMeta(tx); err != nil {
			return err
		}
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			rec, err := decodeRecord(k, v, true)
			if err != nil {
				return err
			}
			rec.Lease = leaseOf(tx, k)
			out = append(out, rec)
		}
		return nil
	})
	// Ties (keys created in one entry) in key order: every read of one
	// state orders the queue the same way.
	slices.SortStableFunc(out, func(a, b kv.Record) int { return cmp.Compare(a.CreateIndex, b.CreateIndex) })
	return out, index, err
}
