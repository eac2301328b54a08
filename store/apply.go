package store

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

// Result is the outcome of one Command. Apply and ApplyBatch return a
// []*Result for each LogCommand entry, one per command it holds (a single
// Result carrying the error when the entry does not decode).
type Result struct {
	// Put describes a successful OpPut. Its Key shares memory with the
	// log entry's data.
	Put kv.PutResult
	// Delete describes an OpDelete or OpDeletePrefix; its Index is the
	// entry's log index.
	Delete kv.DeleteResult
	// Txn describes an OpTxn.
	Txn kv.TxnResult
	// Index is the raft log index of the entry.
	Index uint64
	// Err is nil, or wraps a *kv.PreconditionError (errors.Is
	// kv.ErrPreconditionFailed; nothing was written), or
	// kv.ErrIdempotencyKeyReused, or ErrBadCommand, or the error that
	// stopped the store (see Store.Err).
	Err error
	// Lease is the lease a grant created or a keepalive renewed (ID and
	// TTL), or the one a revoke removed (ID); Delete counts a revoke's
	// keys.
	Lease kv.Lease
	// CurrentModIndex is the key's ModIndex when a condition failed
	// (0: the key is absent), so the caller can report the current ETag.
	CurrentModIndex uint64
	// Token is the id of the token an OpACLTokenCreate created, or of the
	// root token an OpACLBootstrap created (0: none).
	Token uint64
	// Replayed reports that the command's idempotency key was seen before:
	// this is the first command's result, and nothing was applied now.
	Replayed bool
}

// Apply applies one committed raft log entry. See ApplyBatch.
func (s *Store) Apply(l *raft.Log) interface{} {
	return s.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed raft log entries in a bbolt read-write
// transaction, which also records the applied index and term. The
// transaction may stay open for the next batches to share its commit
// (commit.go): every read commits it first, so what a read sees is what
// was applied. It returns a *Result for each LogCommand entry and nil for
// any other entry (a LogConfiguration only advances the applied index) and
// for entries at or below the applied index, which raft re-delivers after a
// restart and which are skipped.
func (s *Store) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	s.mu.RLock()
	defer s.mu.RUnlock()

	// Fast path: every entry was applied before (replay after restart).
	// applied cannot move backwards while we hold the read lock.
	if len(logs) == 0 || logs[len(logs)-1].Index <= s.applied.Load() {
		return out
	}
	if s.db == nil {
		return s.failAll(logs, out, s.unavailable())
	}
	if err := s.Err(); err != nil {
		return s.failAll(logs, out, err)
	}

	start := time.Now() // for ObserveBatch and the commit interval; state never depends on it
	s.txMu.Lock()
	a, err := s.applyLocked(logs, out, start)
	s.txMu.Unlock()
	if err != nil {
		clear(out)
		return s.failAll(logs, out, err)
	}
	if a.n == 0 {
		return out
	}
	if a.clusterID != "" {
		s.clusterID.Store(&a.clusterID)
	}
	s.history.advance(a.floor, a.rec.added(), a.compacted)
	if a.acl != nil {
		s.acl.Store(a.acl)
	}
	if a.nodes != nil {
		s.nodes.Store(&a.nodes)
	}
	s.hub.publish(a.rec.out, a.index)
	if len(a.rec.leases) > 0 && s.opts.OnLeases != nil {
		s.opts.OnLeases(a.rec.leases, false)
	}
	s.setApplied(a.index)
	if s.opts.ObserveBatch != nil {
		s.opts.ObserveBatch(a.n, time.Since(start))
	}
	return out
}

// applyLocked applies the batch in the open transaction (or a new one),
// then commits it or leaves it open (commit.go). On error it stops the
// store, and no transaction is left open. The caller holds mu's read side
// and txMu.
func (s *Store) applyLocked(logs []*raft.Log, out []interface{}, start time.Time) (*applied, error) {
	tx := s.tx
	var err error
	if tx == nil {
		if tx, err = s.db.Begin(true); err != nil {
			return nil, s.stop(logs, err)
		}
	}
	a, err := s.applyTx(tx, logs, out)
	switch {
	case err == nil && a.n > 0:
		s.tx = tx
		if s.txEntries == 0 {
			s.txBegan = start
		}
		s.txEntries += a.n
		s.txBytes += a.bytes
		if !s.commitDue(start) {
			s.holdLocked()
			return a, nil
		}
		if err = s.commitLocked(); err == nil {
			return a, nil
		}
		// commitLocked stopped the store; the transaction is gone.
		return nil, s.stop(logs, err)
	case err == nil:
		if s.tx == nil {
			// No new entry: the transaction begun for this batch holds nothing.
			_ = tx.Rollback()
		}
		return a, nil
	}
	err = s.stop(logs, err) // first: a read that finds stale reports Err
	if s.tx == nil {
		_ = tx.Rollback() // begun for this batch
	} else {
		// Open since an earlier batch: the entries applied (and answered)
		// since go with it. Reads fail until a restore, or a restart that
		// replays them.
		s.stale.Store(true)
		s.dropLocked()
	}
	return nil, err
}

// stop records err, which stopped the store while applying logs.
func (s *Store) stop(logs []*raft.Log, err error) error {
	err = fmt.Errorf("apply entries %d-%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
	s.log.Error("state machine stopped applying", "err", err)
	s.setErr(err)
	return err
}

// applied is what one batch applied: its new entries (n), the applied
// index and term after it, and what is published once it is applied.
type applied struct {
	n           int
	bytes       int // the new entries' log data
	index, term uint64
	floor       uint64
	compacted   int
	rec         recorder
	clusterID   string
	acl         *ACLState
	nodes       map[string]string
}

// applyTx applies the batch's new entries in tx, filling out, and records
// the applied index and term.
func (s *Store) applyTx(tx *bbolt.Tx, logs []*raft.Log, out []interface{}) (*applied, error) {
	a := &applied{}
	var err error
	if a.index, a.term, err = readMeta(tx); err != nil {
		return a, err
	}
	if a.rec.hist, err = s.historyBucket(tx, a.index); err != nil {
		return a, err
	}
	b := &buckets{kv: tx.Bucket(bucketKV), nodes: tx.Bucket(bucketNodes), idem: tx.Bucket(bucketIdem), idemExp: tx.Bucket(bucketIdemExp), tx: tx, rec: &a.rec}
	if err := leaseBuckets(tx, b); err != nil {
		return a, err
	}
	for i, l := range logs {
		if l.Index <= a.index {
			continue
		}
		a.index, a.term = l.Index, l.Term
		a.n++
		a.bytes += len(l.Data)
		if l.Type == raft.LogCommand {
			a.rec.begin(l.Index)
			out[i] = s.applyEntry(b, l)
			if err := a.rec.end(); err != nil {
				return a, err
			}
		}
	}
	if a.n == 0 {
		return a, nil
	}
	a.clusterID = b.clusterID
	if err := expireIdem(b, a.index, s.idemWindow); err != nil {
		return a, err
	}
	if a.floor, a.compacted, err = compactHistory(tx, a.index, s.historyKeep); err != nil {
		return a, err
	}
	if a.rec.acl {
		if a.acl, err = loadACL(tx); err != nil {
			return a, err
		}
	}
	if a.rec.nodes {
		a.nodes = readNodes(tx)
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keyAppliedIndex, u64(a.index)); err != nil {
		return a, err
	}
	return a, meta.Put(keyAppliedTerm, u64(a.term))
}

// failAll answers every new LogCommand entry with err.
func (s *Store) failAll(logs []*raft.Log, out []interface{}, err error) []interface{} {
	applied := s.applied.Load()
	for i, l := range logs {
		if l.Index > applied && l.Type == raft.LogCommand {
			out[i] = []*Result{{Index: l.Index, Err: err}}
		}
	}
	return out
}

type buckets struct {
	kv, nodes, idem, idemExp *bbolt.Bucket
	// The lease buckets (lease.go), and meta for the lease sequence.
	leases, leaseKeys, keyLease, meta *bbolt.Bucket
	// anyLeased: key_lease may hold a key (else a write skips its lookup).
	anyLeased bool
	// The ACL buckets (acl.go), opened by the first ACL op of a batch.
	aclTokens, aclHashes *bbolt.Bucket
	tx                   *bbolt.Tx
	// rec records the events of the entry being applied.
	rec *recorder
	// clusterID is the identity an OpSetCluster of the batch recorded,
	// published once the batch commits.
	clusterID string
}

// applyEntry applies the commands of one entry in order. Their failures
// (bad command, failed condition, reused idempotency key) are
// deterministic and reported in their Results; they never abort the batch.
func (s *Store) applyEntry(b *buckets, l *raft.Log) []*Result {
	cmds, err := DecodeEntry(l.Data)
	if err != nil {
		s.log.Warn("skipping bad entry", "index", l.Index, "err", err)
		return []*Result{{Index: l.Index, Err: err}}
	}
	out := make([]*Result, len(cmds))
	for i := range cmds {
		out[i] = s.applyIdempotent(b, l.Index, &cmds[i])
	}
	return out
}

// applyIdempotent applies cmd, or replays the result of an earlier command
// with the same idempotency key used at most s.idemWindow indexes before.
// A record older than that is expired whether or not expireIdem has
// deleted it yet: the command applies anew and replaces it.
func (s *Store) applyIdempotent(b *buckets, index uint64, cmd *Command) *Result {
	if len(cmd.IdemKey) == 0 {
		return s.applyCommand(b, index, cmd)
	}
	fp := fingerprint(cmd)
	if stored := b.idem.Get(cmd.IdemKey); stored != nil {
		used, ok := idemUsedAt(stored)
		if ok && idemExpired(used, index, s.idemWindow) {
			// Forget it now, as expiry after every entry would have: its
			// idem_exp entry must not outlive it, or it would delete the
			// record written below once its own index expires.
			if err := forgetIdem(b, used, cmd.IdemKey); err != nil {
				return &Result{Index: index, Err: err}
			}
		} else {
			res, storedFP, err := decodeIdem(stored)
			switch {
			case err != nil:
				return &Result{Index: index, Err: fmt.Errorf("idempotency record %q: %w", cmd.IdemKey, err)}
			case !bytes.Equal(storedFP, fp[:]):
				return &Result{Index: index, Err: fmt.Errorf("%w: key %q was used at index %d by another request", kv.ErrIdempotencyKeyReused, cmd.IdemKey, res.Index)}
			}
			res.Replayed = true
			return res
		}
	}
	res := s.applyCommand(b, index, cmd)
	if res.Err != nil && !errors.Is(res.Err, kv.ErrPreconditionFailed) {
		return res // not remembered: a retry fails the same way
	}
	if err := b.idem.Put(cmd.IdemKey, encodeIdem(fp, res)); err != nil {
		res.Err = err
		return res
	}
	if err := b.idemExp.Put(append(u64(index), cmd.IdemKey...), nil); err != nil {
		res.Err = err
	}
	return res
}

// applyCommand applies one command.
func (s *Store) applyCommand(b *buckets, index uint64, cmd *Command) *Result {
	res := &Result{Index: index}
	switch cmd.Op {
	case OpNoop:
	case OpPut:
		res.Put, res.CurrentModIndex, res.Err = put(b, *cmd, index)
	case OpDelete:
		res.Delete.Index = index
		res.Delete.Deleted, res.CurrentModIndex, res.Err = del(b, *cmd)
	case OpDeletePrefix:
		res.Delete.Index = index
		res.Delete.Deleted, res.Err = deletePrefix(b, cmd.Key)
	case OpSetNode:
		b.rec.nodes = true
		if len(cmd.Value) == 0 {
			res.Err = b.nodes.Delete(cmd.Key)
		} else {
			res.Err = b.nodes.Put(cmd.Key, cmd.Value)
		}
	case OpSetCluster:
		// The first identity stays: every node keeps the same one,
		// whatever a later leader proposes.
		if b.meta.Get(keyClusterID) == nil {
			if res.Err = b.meta.Put(keyClusterID, cmd.Value); res.Err == nil {
				b.clusterID = string(cmd.Value)
			}
		}
	case OpTxn:
		res.Txn, res.Err = applyTxn(b, cmd.Txn, index)
	case OpLeaseGrant:
		var id uint64
		id, res.Err = b.grant(cmd.TTL, index)
		res.Lease = kv.Lease{ID: kv.LeaseID(id), TTL: ms(cmd.TTL)}
	case OpLeaseKeepalive:
		var l LeaseState
		l, res.Err = b.keepalive(cmd.Lease, index)
		res.Lease = kv.Lease{ID: kv.LeaseID(cmd.Lease), TTL: l.TTL}
	case OpLeaseRevoke:
		var l LeaseState
		res.Delete.Index = index
		l, res.Delete.Deleted, res.Err = b.revoke(cmd.Lease, cmd.IfKeepalive, index)
		res.Lease = kv.Lease{ID: kv.LeaseID(cmd.Lease), TTL: l.TTL}
	case OpLeaseCheckpoint:
		res.Err = b.checkpoint(cmd.Checkpoints, index)
	case OpACLBootstrap:
		res.Token, res.Err = b.aclBootstrap(cmd.Key, cmd.Value, index)
	case OpACLTokenCreate:
		res.Token, res.Err = b.createToken(cmd.Key, cmd.Value, index)
	case OpACLTokenDelete:
		res.Err = b.deleteToken(cmd.Token)
	default: // an op in opTable without an effect here; DecodeEntry refuses it
		res.Err = fmt.Errorf("%w: %v has no apply", ErrBadCommand, cmd.Op)
	}
	switch {
	case res.Err == nil:
	case cmd.Op >= OpLeaseGrant:
		res.Err = fmt.Errorf("%v at index %d: %w", cmd.Op, index, res.Err)
	default:
		res.Err = fmt.Errorf("%v %q at index %d: %w", cmd.Op, cmd.Key, index, res.Err)
	}
	return res
}

// currentWithValue returns the stored record of key with its value (a
// copy), if it exists: the previous record an event carries.
func currentWithValue(b *bbolt.Bucket, key []byte) (kv.Record, bool, error) {
	v := b.Get(key)
	if v == nil {
		return kv.Record{}, false, nil
	}
	rec, err := decodeRecord(key, v, true)
	return rec, true, err
}

// checkCond reports whether cond holds for the key's current state; when
// it does not, the error is a *kv.PreconditionError.
func checkCond(cond kv.Condition, cur kv.Record, exists bool) error {
	ok := (!cond.IfAbsent || !exists) &&
		(cond.IfModIndex == 0 || exists && cur.ModIndex == cond.IfModIndex)
	if !ok {
		return &kv.PreconditionError{CurrentModIndex: cur.ModIndex}
	}
	return nil
}

// put writes cmd.Value under cmd.Key if cmd.Cond holds, and records the
// event.
func put(bs *buckets, cmd Command, index uint64) (kv.PutResult, uint64, error) {
	b, rec := bs.kv, bs.rec
	cur, exists, err := currentWithValue(b, cmd.Key)
	if err != nil {
		return kv.PutResult{}, 0, err
	}
	if err := checkCond(cmd.Cond, cur, exists); err != nil {
		return kv.PutResult{}, cur.ModIndex, err
	}
	lease := cmd.Lease
	switch {
	case cmd.TTL != 0:
		if lease, err = bs.grant(cmd.TTL, index); err != nil {
			return kv.PutResult{}, 0, err
		}
	case lease != 0:
		if _, ok, err := bs.lease(lease); err != nil || !ok {
			return kv.PutResult{}, 0, leaseErr(err, lease)
		}
	}
	if err := bs.attach(cmd.Key, lease); err != nil {
		return kv.PutResult{}, 0, err
	}
	res := kv.PutResult{Key: cmd.Key, CreateIndex: index, ModIndex: index, Version: 1, Lease: kv.LeaseID(lease)}
	var prev *kv.Record
	if exists {
		res.CreateIndex, res.Version = cur.CreateIndex, cur.Version+1
		prev = &cur
	}
	stored := appendRecord(make([]byte, 0, 30+len(cmd.Value)), res.CreateIndex, res.ModIndex, res.Version, cmd.Value)
	if err := b.Put(cmd.Key, stored); err != nil {
		return kv.PutResult{}, 0, err
	}
	rec.put(cmd.Key, cmd.Value, res.CreateIndex, res.ModIndex, res.Version, prev)
	return res, 0, nil
}

// del removes cmd.Key if cmd.Cond holds, and records the event.
func del(bs *buckets, cmd Command) (deleted int64, curMod uint64, err error) {
	b, rec := bs.kv, bs.rec
	cur, exists, err := currentWithValue(b, cmd.Key)
	if err != nil {
		return 0, 0, err
	}
	if err := checkCond(cmd.Cond, cur, exists); err != nil {
		return 0, cur.ModIndex, err
	}
	if !exists {
		return 0, 0, nil
	}
	if err := b.Delete(cmd.Key); err != nil {
		return 0, 0, err
	}
	if err := bs.detach(cmd.Key); err != nil {
		return 0, 0, err
	}
	rec.del(cmd.Key, &cur)
	return 1, 0, nil
}

// deletePrefix removes every key with the prefix, recording one event
// per key in key order.
func deletePrefix(bs *buckets, prefix []byte) (int64, error) {
	b, rec := bs.kv, bs.rec
	var n int64
	c := b.Cursor()
	// Seek again after each delete: a bbolt cursor may skip the key that
	// follows a deleted one.
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Seek(prefix) {
		prev, err := decodeRecord(k, v, true)
		if err != nil {
			return n, err
		}
		if err := c.Delete(); err != nil {
			return n, err
		}
		if err := bs.detach(prev.Key); err != nil {
			return n, err
		}
		rec.del(prev.Key, &prev)
		n++
	}
	return n, nil
}
