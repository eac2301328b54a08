package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// leaseLog records what OnLeases reported.
type leaseLog struct {
	changes []LeaseChange
	resets  int
}

func openLeases(t *testing.T) (*Store, *leaseLog) {
	t.Helper()
	ll := &leaseLog{}
	s, err := Open(filepath.Join(t.TempDir(), "kv.db"), Options{
		WatchHistory: 1000,
		OnLeases: func(cs []LeaseChange, reset bool) {
			if reset {
				ll.resets++
				ll.changes = nil
			}
			ll.changes = append(ll.changes, cs...)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, ll
}

func mustApply(t *testing.T, s *Store, index uint64, c Command) *Result {
	t.Helper()
	res := applyOne(t, s, index, c)
	if res.Err != nil {
		t.Fatalf("apply %v at %d: %v", c.Op, index, res.Err)
	}
	return res
}

// A lease's life in the state machine: grant, attach, detach by a put
// without a lease, keepalive, a revoke guarded by a stale keepalive index
// (refused), and a revoke that deletes the attached keys with one event
// each, in the same entry.
func TestLeaseLifecycle(t *testing.T) {
	s, ll := openLeases(t)
	g := mustApply(t, s, 1, Command{Op: OpLeaseGrant, TTL: 5000})
	if g.Lease.ID != 1 || g.Lease.TTL != 5*time.Second {
		t.Fatalf("grant: %+v", g.Lease)
	}
	p := mustApply(t, s, 2, Command{Op: OpPut, Key: []byte("svc/a"), Value: []byte("1"), Lease: 1})
	if p.Put.Lease != 1 {
		t.Fatalf("put lease: %+v", p.Put)
	}
	mustApply(t, s, 3, Command{Op: OpPut, Key: []byte("svc/b"), Value: []byte("2"), Lease: 1})
	mustApply(t, s, 4, Command{Op: OpPut, Key: []byte("svc/c"), Value: []byte("3"), Lease: 1})
	// A put without a lease detaches svc/c.
	mustApply(t, s, 5, putCmd("svc/c", "4", kv.Condition{}))
	if rec, err := s.Get([]byte("svc/a")); err != nil || rec.Lease != 1 {
		t.Fatalf("svc/a: %+v %v", rec, err)
	}
	if rec, err := s.Get([]byte("svc/c")); err != nil || rec.Lease != 0 {
		t.Fatalf("svc/c after a put without lease: %+v %v", rec, err)
	}
	l, keys, _, err := s.Lease(1)
	if err != nil || !slices.EqualFunc(keys, [][]byte{[]byte("svc/a"), []byte("svc/b")}, bytes.Equal) || l.KeepaliveIndex != 1 {
		t.Fatalf("lease 1: %+v keys %q err %v", l, keys, err)
	}
	ka := mustApply(t, s, 6, Command{Op: OpLeaseKeepalive, Lease: 1})
	if ka.Lease.TTL != 5*time.Second {
		t.Fatalf("keepalive: %+v", ka.Lease)
	}
	// The leader's expiry names the keepalive its timer started from (1);
	// the keepalive at 6 came first, so the lease stays.
	stale := applyOne(t, s, 7, Command{Op: OpLeaseRevoke, Lease: 1, IfKeepalive: 1})
	if !errors.Is(stale.Err, kv.ErrPreconditionFailed) {
		t.Fatalf("stale expiry: %v", stale.Err)
	}
	w, err := s.Watch(kv.WatchOptions{Prefix: true, Key: []byte("svc/"), FromIndex: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rv := mustApply(t, s, 8, Command{Op: OpLeaseRevoke, Lease: 1, IfKeepalive: 6})
	if rv.Delete.Deleted != 2 {
		t.Fatalf("revoke deleted %d keys, want 2", rv.Delete.Deleted)
	}
	for _, k := range []string{"svc/a", "svc/b"} {
		if _, err := s.Get([]byte(k)); !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("%s after revoke: %v", k, err)
		}
	}
	if _, err := s.Get([]byte("svc/c")); err != nil {
		t.Fatalf("detached svc/c was deleted: %v", err)
	}
	if _, _, _, err := s.Lease(1); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("lease after revoke: %v", err)
	}
	resps, err := w.Next(t.Context())
	if err != nil || len(resps) != 1 || resps[0].Index != 8 || len(resps[0].Events) != 2 {
		t.Fatalf("revoke events: %+v %v", resps, err)
	}
	for _, e := range resps[0].Events {
		if e.Type != kv.EventDelete {
			t.Fatalf("revoke event %+v", e)
		}
	}
	// Gone for good: keepalive, revoke and attach all fail.
	for i, c := range []Command{
		{Op: OpLeaseKeepalive, Lease: 1},
		{Op: OpLeaseRevoke, Lease: 1},
		{Op: OpPut, Key: []byte("x"), Value: []byte("v"), Lease: 1},
	} {
		if res := applyOne(t, s, uint64(9+i), c); !errors.Is(res.Err, kv.ErrLeaseNotFound) {
			t.Fatalf("%v of a revoked lease: %v", c.Op, res.Err)
		}
	}
	if _, err := s.Get([]byte("x")); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a put to a missing lease wrote: %v", err)
	}
	// What the node's timers were told, in log order.
	want := []LeaseChange{{Index: 1}, {Index: 6}, {Index: 8, Gone: true}}
	if len(ll.changes) != len(want) {
		t.Fatalf("lease changes %+v", ll.changes)
	}
	for i, w := range want {
		if c := ll.changes[i]; c.Index != w.Index || c.Gone != w.Gone || c.ID != 1 {
			t.Fatalf("lease change %d: %+v, want %+v", i, c, w)
		}
	}
}

// A put with a TTL grants a lease holding just its key, in its own entry;
// a failed condition grants nothing.
func TestPutWithTTL(t *testing.T) {
	s, _ := openLeases(t)
	mustApply(t, s, 1, putCmd("k", "v", kv.Condition{}))
	failed := applyOne(t, s, 2, Command{Op: OpPut, Key: []byte("k"), Value: []byte("w"), Cond: kv.Condition{IfAbsent: true}, TTL: 3000})
	if !errors.Is(failed.Err, kv.ErrPreconditionFailed) {
		t.Fatalf("conditional put: %v", failed.Err)
	}
	if ls, _, _ := s.Leases(); len(ls) != 0 {
		t.Fatalf("a failed put granted %+v", ls)
	}
	res := mustApply(t, s, 3, Command{Op: OpPut, Key: []byte("k"), Value: []byte("w"), TTL: 3000})
	if res.Put.Lease != 1 {
		t.Fatalf("put with ttl: %+v", res.Put)
	}
	ls, index, err := s.Leases()
	if err != nil || index != 3 || len(ls) != 1 || ls[0].TTL != 3*time.Second || ls[0].KeepaliveIndex != 3 {
		t.Fatalf("leases: %+v at %d, %v", ls, index, err)
	}
	// A checkpoint lowers the remaining time; it never raises it above the TTL.
	mustApply(t, s, 4, Command{Op: OpLeaseCheckpoint, Checkpoints: []LeaseCheckpoint{{Lease: 1, Remaining: 1200}, {Lease: 7, Remaining: 5}}})
	l, keys, _, err := s.Lease(1)
	if err != nil || l.Remaining != 1200*time.Millisecond || l.KeepaliveIndex != 3 || len(keys) != 1 {
		t.Fatalf("after checkpoint: %+v %q %v", l, keys, err)
	}
	mustApply(t, s, 5, Command{Op: OpLeaseCheckpoint, Checkpoints: []LeaseCheckpoint{{Lease: 1, Remaining: 99_000}}})
	if l, _, _, _ := s.Lease(1); l.Remaining != 3*time.Second {
		t.Fatalf("checkpoint above the ttl: %+v", l)
	}
	// Deleting the key detaches it; the lease lives on, empty.
	mustApply(t, s, 6, delCmd("k", kv.Condition{}))
	if _, keys, _, err := s.Lease(1); err != nil || len(keys) != 0 {
		t.Fatalf("after delete: %q %v", keys, err)
	}
}

// The lock compare: the token of a lock is the create_index of the
// oldest key in its queue; a transaction guarded by it applies only while
// that key exists.
func TestLockCompare(t *testing.T) {
	s, _ := openLeases(t)
	q := string(kv.LockQueue("job"))
	mustApply(t, s, 1, Command{Op: OpLeaseGrant, TTL: 5000})
	mustApply(t, s, 2, Command{Op: OpLeaseGrant, TTL: 5000})
	mustApply(t, s, 3, Command{Op: OpPut, Key: []byte(q + "2"), Lease: 2})
	mustApply(t, s, 4, Command{Op: OpPut, Key: []byte(q + "1"), Lease: 1})
	// A lock whose name extends this one's is another queue.
	mustApply(t, s, 5, putCmd(string(kv.LockQueue("jobs"))+"9", "", kv.Condition{}))
	guarded := func(index, token uint64) bool {
		t.Helper()
		res := mustApply(t, s, index, Command{Op: OpTxn, Txn: &kv.Txn{
			Compare: []kv.Compare{kv.Fence{Lock: "job", Token: token}.Compare()},
			Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("data"), Value: []byte("x")}},
		}})
		return res.Txn.Succeeded
	}
	if !guarded(6, 3) || guarded(7, 4) || guarded(8, 5) {
		t.Fatal("the holder is the key created at 3")
	}
	// The holder's lease is revoked: the lock passes to the key created at 4.
	mustApply(t, s, 9, Command{Op: OpLeaseRevoke, Lease: 2})
	if guarded(10, 3) || !guarded(11, 4) {
		t.Fatal("after the revoke the holder is the key created at 4")
	}
	mustApply(t, s, 12, Command{Op: OpLeaseRevoke, Lease: 1})
	if guarded(13, 4) {
		t.Fatal("an empty queue holds no token")
	}
	// Two keys created in one entry tie for the oldest: no token holds.
	tie := Command{Op: OpTxn, Txn: &kv.Txn{Success: []kv.TxnOp{
		{Type: kv.TxnPut, Key: []byte(q + "a")}, {Type: kv.TxnPut, Key: []byte(q + "b")},
	}}}
	mustApply(t, s, 14, tie)
	if guarded(15, 14) {
		t.Fatal("a token held by two keys fenced a write")
	}
	recs, _, err := s.Queue([]byte(q))
	if err != nil || len(recs) != 2 || string(recs[0].Key) != q+"a" {
		t.Fatalf("queue with a tie: %+v %v", recs, err)
	}
	mustApply(t, s, 16, delCmd(q+"a", kv.Condition{}))
	if !guarded(17, 14) {
		t.Fatal("the tie is gone: the token of the one key left holds")
	}
	// A txn that attaches a key to a missing lease applies nothing.
	res := applyOne(t, s, 18, Command{Op: OpTxn, Txn: &kv.Txn{Success: []kv.TxnOp{
		{Type: kv.TxnPut, Key: []byte("t1"), Value: []byte("a")},
		{Type: kv.TxnPut, Key: []byte("t2"), Value: []byte("b"), Lease: 99},
	}}})
	if !errors.Is(res.Err, kv.ErrLeaseNotFound) {
		t.Fatalf("txn with a missing lease: %v", res.Err)
	}
	if _, err := s.Get([]byte("t1")); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("half a txn applied: %v", err)
	}
}

// A restore hands the node's timers every lease of the restored state.
func TestLeaseRestoreResets(t *testing.T) {
	src, _ := openLeases(t)
	mustApply(t, src, 1, Command{Op: OpLeaseGrant, TTL: 5000})
	mustApply(t, src, 2, Command{Op: OpLeaseGrant, TTL: 7000})
	b := snapshotBytes(t, src)
	dst, ll := openLeases(t)
	mustApply(t, dst, 1, Command{Op: OpLeaseGrant, TTL: 1000})
	if err := restoreBytes(dst, b); err != nil {
		t.Fatal(err)
	}
	if ll.resets != 1 || len(ll.changes) != 2 || ll.changes[1].TTL != 7*time.Second || ll.changes[1].Index != 2 {
		t.Fatalf("after restore: %d resets, %+v", ll.resets, ll.changes)
	}
	res := mustApply(t, dst, 3, Command{Op: OpLeaseGrant, TTL: 1000})
	if res.Lease.ID != 3 {
		t.Fatalf("the sequence after restore gave %d, want 3", res.Lease.ID)
	}
}
