package store

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

func txnCmd(t kv.Txn) Command { return Command{Op: OpTxn, Txn: &t} }

func TestTxn(t *testing.T) {
	s := openTemp(t)
	applyOne(t, s, 1, putCmd("a", "1", kv.Condition{}))
	applyOne(t, s, 2, putCmd("b", "2", kv.Condition{}))
	cmp := func(key string, target kv.CompareTarget, op kv.CompareOp, value string, n uint64, exists bool) kv.Compare {
		return kv.Compare{Key: []byte(key), Target: target, Op: op, Value: []byte(value), Number: n, Exists: exists}
	}
	tests := []struct {
		name string
		cmp  kv.Compare
		want bool
	}{
		{"value =", cmp("a", kv.TargetValue, kv.OpEqual, "1", 0, false), true},
		{"value !=", cmp("a", kv.TargetValue, kv.OpNotEqual, "1", 0, false), false},
		{"value <", cmp("a", kv.TargetValue, kv.OpLess, "2", 0, false), true},
		{"value >", cmp("a", kv.TargetValue, kv.OpGreater, "2", 0, false), false},
		{"value of absent key", cmp("zz", kv.TargetValue, kv.OpNotEqual, "1", 0, false), false},
		{"mod_index =", cmp("b", kv.TargetModIndex, kv.OpEqual, "", 2, false), true},
		{"mod_index >", cmp("b", kv.TargetModIndex, kv.OpGreater, "", 2, false), false},
		{"create_index <", cmp("a", kv.TargetCreateIndex, kv.OpLess, "", 2, false), true},
		{"version =", cmp("a", kv.TargetVersion, kv.OpEqual, "", 1, false), true},
		{"absent version = 0", cmp("zz", kv.TargetVersion, kv.OpEqual, "", 0, false), true},
		{"exists = true", cmp("a", kv.TargetExists, kv.OpEqual, "", 0, true), true},
		{"exists = false on absent", cmp("zz", kv.TargetExists, kv.OpEqual, "", 0, false), true},
		{"exists != true", cmp("a", kv.TargetExists, kv.OpNotEqual, "", 0, true), false},
	}
	index := uint64(3)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := applyOne(t, s, index, txnCmd(kv.Txn{
				Compare: []kv.Compare{tt.cmp},
				Failure: []kv.TxnOp{{Type: kv.TxnGet, Key: []byte("a")}},
			}))
			index++
			if res.Err != nil || res.Txn.Succeeded != tt.want {
				t.Fatalf("succeeded %v (err %v), want %v", res.Txn.Succeeded, res.Err, tt.want)
			}
			if !tt.want && (len(res.Txn.Results) != 1 || string(res.Txn.Results[0].Record.Value) != "1") {
				t.Fatalf("failure branch results %+v", res.Txn.Results)
			}
		})
	}

	// The success branch runs in order and atomically, each op seeing the last.
	res := applyOne(t, s, 100, txnCmd(kv.Txn{
		Compare: []kv.Compare{cmp("a", kv.TargetValue, kv.OpEqual, "1", 0, false), cmp("b", kv.TargetExists, kv.OpEqual, "", 0, true)},
		Success: []kv.TxnOp{
			{Type: kv.TxnPut, Key: []byte("a"), Value: []byte("new")},
			{Type: kv.TxnGet, Key: []byte("a")},
			{Type: kv.TxnDelete, Key: []byte("b")},
			{Type: kv.TxnGet, Key: []byte("b")},
			{Type: kv.TxnPut, Key: []byte("p/1"), Value: []byte("x")},
			{Type: kv.TxnDeletePrefix, Key: []byte("p/")},
		},
	}))
	if res.Err != nil || !res.Txn.Succeeded || res.Txn.Index != 100 || len(res.Txn.Results) != 6 {
		t.Fatalf("txn: %+v", res)
	}
	r := res.Txn.Results
	if r[0].Put.ModIndex != 100 || r[0].Put.Version != 2 || string(r[1].Record.Value) != "new" ||
		r[2].Deleted != 1 || r[3].Record != nil || r[5].Deleted != 1 {
		t.Fatalf("results %+v", r)
	}
	if _, err := s.Get([]byte("b")); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("b after txn: %v", err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	s := openTemp(t)
	put := putCmd("k", "v1", kv.Condition{})
	put.IdemKey = []byte("req-1")
	first := applyOne(t, s, 1, put)
	if first.Err != nil || first.Replayed || first.Put.ModIndex != 1 {
		t.Fatalf("first: %+v", first)
	}
	// The retry returns the first result and applies nothing.
	again := applyOne(t, s, 2, put)
	if again.Err != nil || !again.Replayed || again.Put.ModIndex != 1 || again.Put.Version != 1 || string(again.Put.Key) != "k" {
		t.Fatalf("retry: %+v", again)
	}
	if rec, _ := s.Get([]byte("k")); rec.Version != 1 {
		t.Fatalf("retry applied again: version %d", rec.Version)
	}
	// The same key with another request is refused.
	other := putCmd("k", "v2", kv.Condition{})
	other.IdemKey = []byte("req-1")
	if res := applyOne(t, s, 3, other); !errors.Is(res.Err, kv.ErrIdempotencyKeyReused) {
		t.Fatalf("reuse: %+v", res)
	}
	// A failed condition is remembered as such.
	cas := putCmd("k", "v3", kv.Condition{IfModIndex: 99})
	cas.IdemKey = []byte("req-2")
	if res := applyOne(t, s, 4, cas); !errors.Is(res.Err, kv.ErrPreconditionFailed) {
		t.Fatalf("cas: %+v", res)
	}
	applyOne(t, s, 5, putCmd("k", "v4", kv.Condition{}))
	if res := applyOne(t, s, 6, cas); !res.Replayed || !errors.Is(res.Err, kv.ErrPreconditionFailed) || res.CurrentModIndex != 1 {
		t.Fatalf("cas retry: %+v", res)
	}
	// A transaction's results, gets included, are replayed exactly.
	txn := txnCmd(kv.Txn{Success: []kv.TxnOp{{Type: kv.TxnGet, Key: []byte("k")}, {Type: kv.TxnPut, Key: []byte("t"), Value: []byte("1")}, {Type: kv.TxnGet, Key: []byte("none")}}})
	txn.IdemKey = []byte("req-3")
	t1 := applyOne(t, s, 7, txn)
	applyOne(t, s, 8, putCmd("k", "v5", kv.Condition{}))
	t2 := applyOne(t, s, 9, txn)
	if !t2.Replayed || t2.Txn.Index != 7 || string(t2.Txn.Results[0].Record.Value) != "v4" ||
		t2.Txn.Results[1].Put.ModIndex != t1.Txn.Results[1].Put.ModIndex || t2.Txn.Results[2].Record != nil {
		t.Fatalf("txn replay %+v, first %+v", t2.Txn, t1.Txn)
	}
}

func TestIdempotencyKeysExpireByLogIndex(t *testing.T) {
	s := openTemp(t)
	put := putCmd("k", "v", kv.Condition{})
	put.IdemKey = []byte("old")
	applyOne(t, s, 1, put)
	// Still remembered just inside the window...
	if res := applyOne(t, s, IdempotencyWindow, put); !res.Replayed {
		t.Fatalf("key forgotten inside the window: %+v", res)
	}
	// ...and forgotten once the window has passed: the same request applies anew.
	applyOne(t, s, IdempotencyWindow+1, Command{Op: OpNoop})
	res := applyOne(t, s, IdempotencyWindow+2, put)
	if res.Replayed || res.Err != nil || res.Put.Version != 2 {
		t.Fatalf("after the window: %+v", res)
	}
}

func TestEntryWithManyCommands(t *testing.T) {
	s := openTemp(t)
	a, b, c := putCmd("a", "1", kv.Condition{}), putCmd("b", "2", kv.Condition{IfAbsent: true}), delCmd("zz", kv.Condition{IfModIndex: 5})
	out := s.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: EncodeEntry(nil, []*Command{&a, &b, &c})})
	rs, ok := out.([]*Result)
	if !ok || len(rs) != 3 {
		t.Fatalf("results %#v", out)
	}
	// Commands of one entry share its index and get their own results.
	if rs[0].Put.ModIndex != 1 || rs[1].Err != nil || rs[1].Put.ModIndex != 1 || !errors.Is(rs[2].Err, kv.ErrPreconditionFailed) {
		t.Fatalf("results %+v %+v %+v", rs[0], rs[1], rs[2])
	}
}
