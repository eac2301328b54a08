package raftkv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/raftkv/raftkv/internal/forward"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Put writes value under key and returns once the write is applied on a
// quorum. On a follower the write is sent to the leader. opts may make it
// conditional (kv.IfModIndex, kv.IfAbsent: a failed condition is a
// *kv.PreconditionError, errors.Is kv.ErrPreconditionFailed) or idempotent
// (kv.Idempotent).
func (n *Node) Put(ctx context.Context, key, value []byte, opts ...kv.WriteOption) (kv.PutResult, error) {
	return n.put(ctx, key, value, kv.NewWriteOptions(opts...))
}

// PutIf writes value under key if cond holds.
//
// Deprecated: use Put with kv.WithCondition(cond) (or kv.IfModIndex,
// kv.IfAbsent).
func (n *Node) PutIf(ctx context.Context, key, value []byte, cond kv.Condition) (kv.PutResult, error) {
	return n.Put(ctx, key, value, kv.WithCondition(cond))
}

// Delete removes key; deleting an absent key succeeds with Deleted 0. opts
// may make it conditional or idempotent, as for Put.
func (n *Node) Delete(ctx context.Context, key []byte, opts ...kv.WriteOption) (kv.DeleteResult, error) {
	return n.delete(ctx, key, kv.NewWriteOptions(opts...))
}

// DeleteIf removes key if cond holds.
//
// Deprecated: use Delete with kv.WithCondition(cond).
func (n *Node) DeleteIf(ctx context.Context, key []byte, cond kv.Condition) (kv.DeleteResult, error) {
	return n.Delete(ctx, key, kv.WithCondition(cond))
}

// DeletePrefix removes every key that starts with prefix, in one raft
// entry. opts may make it idempotent; a condition is refused
// (kv.ErrBadRequest: conditions guard one key).
func (n *Node) DeletePrefix(ctx context.Context, prefix []byte, opts ...kv.WriteOption) (kv.DeleteResult, error) {
	return n.deletePrefix(ctx, prefix, kv.NewWriteOptions(opts...))
}

// Get reads key from this node's state machine, after the consistency
// check opts asks for (kv.Linearizable by default: on a follower that costs
// one read-index round trip to the leader, shared with concurrent reads).
// With opts.WaitIndex it is a blocking read: it first waits for the key
// to change at an index above WaitIndex (or WaitTime to pass).
func (n *Node) Get(ctx context.Context, key []byte, opts kv.ReadOptions) (kv.Record, error) {
	rec, _, err := n.get(ctx, key, opts)
	return rec, err
}

// List returns a page of the keys that start with opts.Prefix, read like Get.
func (n *Node) List(ctx context.Context, opts kv.ListOptions) (kv.ListResult, error) {
	return n.list(ctx, opts)
}

func (n *Node) validateWrite(key, value []byte) error {
	if err := kv.ValidateKey(key); err != nil {
		return err
	}
	if int64(len(value)) > n.cfg.MaxValueSize {
		return fmt.Errorf("%w: value is %d bytes, the limit is %d", kv.ErrTooLarge, len(value), n.cfg.MaxValueSize)
	}
	return nil
}

// apply runs cmd through raft: here when this node leads, else in the
// next batch of writes this follower sends the leader (kv.ErrNotLeader
// means nothing was applied here, so sending it on is safe), waiting out
// an election when no leader took it (failover.go). The write's
// idempotency key (opts, else the deprecated one in ctx), if any, goes
// with it.
func (n *Node) apply(ctx context.Context, cmd *store.Command, opts kv.WriteOptions) (*store.Result, error) {
	key := opts.IdempotencyKey
	if key == "" {
		key = kv.IdempotencyKey(ctx)
	}
	if key != "" {
		if err := kv.ValidateIdempotencyKey(key); err != nil {
			return nil, err
		}
		cmd.IdemKey = []byte(key)
	}
	res, err := n.submit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	switch {
	case errors.Is(res.Err, kv.ErrPreconditionFailed):
		return nil, &kv.PreconditionError{CurrentModIndex: res.CurrentModIndex}
	case res.Err != nil:
		return nil, res.Err
	}
	return res, nil
}

// Txn applies a transaction atomically, as one raft entry: if every
// compare holds the success ops run, else the failure ops. On a follower it
// is sent to the leader. opts may make it idempotent; a condition is
// refused (the transaction's compares are its conditions).
func (n *Node) Txn(ctx context.Context, t kv.Txn, opts ...kv.WriteOption) (kv.TxnResult, error) {
	return n.txn(ctx, t, kv.NewWriteOptions(opts...))
}

// noCondition refuses a condition on a write that does not guard one key.
func noCondition(opts kv.WriteOptions, what string) error {
	if !opts.Condition.IsZero() {
		return fmt.Errorf("%w: conditions guard one key; %s takes none", kv.ErrBadRequest, what)
	}
	return nil
}

func (n *Node) txn(ctx context.Context, t kv.Txn, opts kv.WriteOptions) (kv.TxnResult, error) {
	if err := noCondition(opts, "a transaction"); err != nil {
		return kv.TxnResult{}, err
	}
	if err := noLease(opts, "a transaction (its put ops take one each)"); err != nil {
		return kv.TxnResult{}, err
	}
	if !opts.Fence.IsZero() {
		if err := opts.Fence.Validate(); err != nil {
			return kv.TxnResult{}, err
		}
		// The fence is one more compare: a fenced transaction whose lock
		// is lost runs its failure ops, as for any compare that fails.
		t.Compare = append(slices.Clip(t.Compare), opts.Fence.Compare())
	}
	if err := t.Validate(n.cfg.MaxValueSize); err != nil {
		return kv.TxnResult{}, err
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpTxn, Txn: &t}, opts)
	if err != nil {
		return kv.TxnResult{}, err
	}
	return res.Txn, nil
}

func (n *Node) put(ctx context.Context, key, value []byte, opts kv.WriteOptions) (kv.PutResult, error) {
	if err := n.validateWrite(key, value); err != nil {
		return kv.PutResult{}, err
	}
	if err := n.validateLease(opts); err != nil {
		return kv.PutResult{}, err
	}
	if !opts.Fence.IsZero() {
		if opts.TTL != 0 {
			return kv.PutResult{}, fmt.Errorf("%w: a fenced put takes a lease, not a ttl", kv.ErrBadRequest)
		}
		res, err := n.fenced(ctx, key, kv.TxnOp{Type: kv.TxnPut, Key: key, Value: value, Lease: opts.Lease}, opts)
		if err != nil {
			return kv.PutResult{}, err
		}
		put := res.Results[0].Put
		put.Lease = opts.Lease
		return put, nil
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpPut, Key: key, Value: value, Cond: opts.Condition, Lease: uint64(opts.Lease), TTL: ttlMillis(opts.TTL)}, opts)
	if err != nil {
		return kv.PutResult{}, err
	}
	return res.Put, nil
}

// validateLease checks a put's lease options: a lease or a TTL, not both,
// and a TTL within this node's bounds.
func (n *Node) validateLease(opts kv.WriteOptions) error {
	switch {
	case opts.Lease != 0 && opts.TTL != 0:
		return fmt.Errorf("%w: a put takes a lease or a ttl, not both", kv.ErrBadRequest)
	case opts.TTL != 0:
		return kv.ValidateTTL(opts.TTL, n.minLeaseTTL())
	}
	return nil
}

// noLease refuses lease options on a write that attaches no key.
func noLease(opts kv.WriteOptions, what string) error {
	if opts.Lease != 0 || opts.TTL != 0 {
		return fmt.Errorf("%w: %s takes no lease or ttl", kv.ErrBadRequest, what)
	}
	return nil
}

// fenced applies op as a transaction guarded by opts.Fence and by the
// key's condition, if any; when they do not all hold it fails with a
// *kv.PreconditionError that names the key's current mod_index.
func (n *Node) fenced(ctx context.Context, key []byte, op kv.TxnOp, opts kv.WriteOptions) (kv.TxnResult, error) {
	if err := opts.Fence.Validate(); err != nil {
		return kv.TxnResult{}, err
	}
	t := kv.Txn{
		Compare: []kv.Compare{opts.Fence.Compare()},
		Success: []kv.TxnOp{op},
		Failure: []kv.TxnOp{{Type: kv.TxnGet, Key: key}},
	}
	if c := opts.Condition; c.IfAbsent {
		t.Compare = append(t.Compare, kv.Compare{Key: key, Target: kv.TargetExists, Op: kv.OpEqual, Exists: false})
	}
	if c := opts.Condition; c.IfModIndex != 0 {
		t.Compare = append(t.Compare, kv.Compare{Key: key, Target: kv.TargetModIndex, Op: kv.OpEqual, Number: c.IfModIndex})
	}
	if err := t.Validate(n.cfg.MaxValueSize); err != nil {
		return kv.TxnResult{}, err
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpTxn, Txn: &t}, opts)
	if err != nil {
		return kv.TxnResult{}, err
	}
	if !res.Txn.Succeeded {
		pe := &kv.PreconditionError{}
		if rs := res.Txn.Results; len(rs) == 1 && rs[0].Record != nil {
			pe.CurrentModIndex = rs[0].Record.ModIndex
		}
		if opts.Condition.IsZero() {
			return kv.TxnResult{}, fmt.Errorf("lock %q is not held with token %d: %w", opts.Fence.Lock, opts.Fence.Token, pe)
		}
		return kv.TxnResult{}, fmt.Errorf("lock %q is not held with token %d, or the key's condition failed: %w", opts.Fence.Lock, opts.Fence.Token, pe)
	}
	return res.Txn, nil
}

func (n *Node) delete(ctx context.Context, key []byte, opts kv.WriteOptions) (kv.DeleteResult, error) {
	if err := kv.ValidateKey(key); err != nil {
		return kv.DeleteResult{}, err
	}
	if err := noLease(opts, "a delete"); err != nil {
		return kv.DeleteResult{}, err
	}
	if !opts.Fence.IsZero() {
		res, err := n.fenced(ctx, key, kv.TxnOp{Type: kv.TxnDelete, Key: key}, opts)
		if err != nil {
			return kv.DeleteResult{}, err
		}
		return kv.DeleteResult{Deleted: res.Results[0].Deleted, Index: res.Index}, nil
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpDelete, Key: key, Cond: opts.Condition}, opts)
	if err != nil {
		return kv.DeleteResult{}, err
	}
	return res.Delete, nil
}

func (n *Node) deletePrefix(ctx context.Context, prefix []byte, opts kv.WriteOptions) (kv.DeleteResult, error) {
	if err := noCondition(opts, "a prefix delete"); err != nil {
		return kv.DeleteResult{}, err
	}
	if err := noLease(opts, "a prefix delete"); err != nil {
		return kv.DeleteResult{}, err
	}
	if !opts.Fence.IsZero() {
		return kv.DeleteResult{}, fmt.Errorf("%w: a prefix delete takes no fence (use a transaction)", kv.ErrBadRequest)
	}
	if len(prefix) > kv.MaxKeySize {
		return kv.DeleteResult{}, kv.ValidateKey(prefix)
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpDeletePrefix, Key: prefix}, opts)
	if err != nil {
		return kv.DeleteResult{}, err
	}
	return res.Delete, nil
}

// readBarrier makes a local read meet opts. A linearizable read waits
// until this node has applied a read index: its own on the leader, the
// leader's on a follower (ReadIndex: followers serve linearizable reads
// from their own state). A stale read checks MaxStale, and, while the node
// rebuilds a discarded kv.db (rebuildHold), waits until its state is no
// older than what it served before the stop. Any read waits for MinIndex.
func (n *Node) readBarrier(ctx context.Context, opts kv.ReadOptions) error {
	c, err := kv.ParseConsistency(string(opts.Consistency))
	if err != nil {
		return err
	}
	wait := opts.MinIndex
	readIndex := false // wait includes a read index obtained now
	if c == kv.Linearizable {
		index, err := n.linearizableIndex(ctx)
		if err != nil {
			return err
		}
		wait, readIndex = max(wait, index), true
	} else {
		if opts.MaxStale > 0 && !n.raft.IsLeader() {
			last := n.raft.Status().LastContact
			if age := time.Since(last); last.IsZero() || age > opts.MaxStale {
				return fmt.Errorf("%w: leader last heard from %s ago, max_stale is %s", kv.ErrTooStale, age.Round(time.Millisecond), opts.MaxStale)
			}
		}
		if floor := n.rebuild.until(n.store.AppliedIndex()); floor > 0 {
			hold := floor
			if index, err := n.readIndexOnce(ctx); err == nil && index < floor {
				hold, readIndex = index, true
			}
			wait = max(wait, hold)
		}
	}
	if wait == 0 {
		return nil
	}
	if err := n.store.WaitApplied(ctx, wait); err != nil {
		if errors.Is(err, kv.ErrClosed) {
			return err
		}
		return &kv.WaitError{MinIndex: wait, AppliedIndex: n.store.AppliedIndex()}
	}
	if readIndex {
		n.rebuild.release()
	}
	return nil
}

func (n *Node) get(ctx context.Context, key []byte, opts kv.ReadOptions) (kv.Record, uint64, error) {
	if err := kv.ValidateKey(key); err != nil {
		return kv.Record{}, 0, err
	}
	if err := n.blockUntilChanged(ctx, key, false, opts); err != nil {
		return kv.Record{}, n.store.AppliedIndex(), err
	}
	if err := n.readBarrier(ctx, opts); err != nil {
		return kv.Record{}, n.store.AppliedIndex(), err
	}
	index := n.store.AppliedIndex()
	rec, err := n.store.Get(key)
	return rec, index, err
}

func (n *Node) list(ctx context.Context, opts kv.ListOptions) (kv.ListResult, error) {
	if len(opts.Prefix) > kv.MaxKeySize {
		return kv.ListResult{}, kv.ValidateKey(opts.Prefix)
	}
	if opts.Limit < 0 || opts.Limit > kv.MaxListLimit {
		return kv.ListResult{}, fmt.Errorf("%w: limit must be from 1 to %d", kv.ErrBadRequest, kv.MaxListLimit)
	}
	if err := n.blockUntilChanged(ctx, opts.Prefix, true, opts.ReadOptions); err != nil {
		return kv.ListResult{}, err
	}
	if err := n.readBarrier(ctx, opts.ReadOptions); err != nil {
		return kv.ListResult{}, err
	}
	return n.store.List(opts)
}

// applyForwarded is the leader's side of a follower's batch of writes
// (httpapi.ApplyPath): every command is checked as the follower checked
// it, then all are handed to raft together, each bounded by its own
// timeout, and the answer carries one outcome per command.
func (n *Node) applyForwarded(ctx context.Context, body []byte) ([]byte, error) {
	if !n.raft.IsLeader() {
		return nil, fmt.Errorf("forwarded writes: %w", kv.ErrNotLeader)
	}
	cmds, timeouts, err := forward.DecodeRequest(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", kv.ErrBadRequest, err)
	}
	outs := make([]forward.Outcome, len(cmds))
	var ctxs []context.Context
	var todo []*store.Command
	var at []int
	for i := range cmds {
		if err := n.validateForwarded(&cmds[i]); err != nil {
			outs[i].Err = err
			continue
		}
		cctx := ctx
		if timeouts[i] > 0 {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(ctx, timeouts[i])
			defer cancel()
		}
		ctxs, todo, at = append(ctxs, cctx), append(todo, &cmds[i]), append(at, i)
	}
	res, errs := n.raft.ApplyMany(ctxs, todo)
	for j, i := range at {
		outs[i] = forward.Outcome{Res: res[j], Err: errs[j]}
	}
	return forward.AppendResponse(nil, outs), nil
}

// validateForwarded checks a forwarded command as the API checks a write
// before it builds one; only the commands of the public API are accepted.
func (n *Node) validateForwarded(cmd *store.Command) error {
	if len(cmd.IdemKey) > 0 {
		if err := kv.ValidateIdempotencyKey(string(cmd.IdemKey)); err != nil {
			return err
		}
	}
	if !cmd.Op.Forwardable() {
		return fmt.Errorf("%w: a %s command cannot be forwarded", kv.ErrBadRequest, cmd.Op)
	}
	// Each forwardable op is checked as the API checks it; a new one
	// without a case here is refused rather than let through unchecked.
	switch cmd.Op {
	case store.OpPut:
		if err := n.validateWrite(cmd.Key, cmd.Value); err != nil {
			return err
		}
		return n.validateLease(kv.WriteOptions{Lease: kv.LeaseID(cmd.Lease), TTL: time.Duration(cmd.TTL) * time.Millisecond})
	case store.OpLeaseGrant:
		return kv.ValidateTTL(time.Duration(cmd.TTL)*time.Millisecond, n.minLeaseTTL())
	case store.OpLeaseKeepalive, store.OpLeaseRevoke:
		return nil // the decoder checked the id; the state machine finds it or not
	case store.OpDelete:
		return kv.ValidateKey(cmd.Key)
	case store.OpDeletePrefix:
		if len(cmd.Key) > kv.MaxKeySize {
			return kv.ValidateKey(cmd.Key)
		}
		return nil
	case store.OpTxn:
		return cmd.Txn.Validate(n.cfg.MaxValueSize)
	case store.OpACLTokenCreate, store.OpACLTokenDelete:
		return nil // the decoder checked the rules' shape and the id
	default:
		return fmt.Errorf("%w: a %s command has no forwarding check", kv.ErrBadRequest, cmd.Op)
	}
}
