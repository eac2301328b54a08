package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// opExamples holds, for every op, a command that succeeds on the state
// opFixture builds and shows what the op does. A new op needs one:
// TestEveryOp fails for an op of opTable without it.
var opExamples = map[Op]Command{
	OpNoop:         {Op: OpNoop},
	OpPut:          {Op: OpPut, Key: []byte("a"), Value: []byte("new"), Cond: kv.Condition{IfModIndex: 1}},
	OpDelete:       {Op: OpDelete, Key: []byte("b"), Cond: kv.Condition{IfModIndex: 2}},
	OpDeletePrefix: {Op: OpDeletePrefix, Key: []byte("p/")},
	OpSetNode:      {Op: OpSetNode, Key: []byte("n2"), Value: []byte("127.0.0.1:8002")},
	OpTxn: {Op: OpTxn, Txn: &kv.Txn{
		Compare: []kv.Compare{{Key: []byte("a"), Target: kv.TargetVersion, Op: kv.OpEqual, Number: 1}},
		Success: []kv.TxnOp{
			{Type: kv.TxnPut, Key: []byte("a"), Value: []byte("t")},
			{Type: kv.TxnPut, Key: []byte("c"), Value: []byte("t")},
			{Type: kv.TxnDelete, Key: []byte("b")},
			{Type: kv.TxnGet, Key: []byte("p/1")},
		},
		Failure: []kv.TxnOp{{Type: kv.TxnDeletePrefix, Key: []byte("p/")}},
	}},
	OpLeaseGrant:      {Op: OpLeaseGrant, TTL: 10_000},
	OpLeaseKeepalive:  {Op: OpLeaseKeepalive, Lease: 1},
	OpLeaseRevoke:     {Op: OpLeaseRevoke, Lease: 1, IfKeepalive: 4},
	OpLeaseCheckpoint: {Op: OpLeaseCheckpoint, Checkpoints: []LeaseCheckpoint{{Lease: 1, Remaining: 4_000}, {Lease: 9, Remaining: 1}}},
	OpSetCluster:      {Op: OpSetCluster, Value: []byte("3f9c2a6e0b7d41c8")},
	// The fixture is bootstrapped with root token 1: a second bootstrap
	// is a no-op, a reset adds a root token.
	OpACLBootstrap:   {Op: OpACLBootstrap, Key: hashOf("new-root"), Value: bytes.Repeat([]byte{7}, MemberSecretSize)},
	OpACLTokenCreate: {Op: OpACLTokenCreate, Key: hashOf("app"), Value: EncodeACLToken("app", kv.ACLRules{Read: []string{"app/"}, Write: []string{"app/config/"}})},
	OpACLTokenDelete: {Op: OpACLTokenDelete, Token: 1},
}

func hashOf(secret string) []byte {
	h := kv.SecretHash(secret)
	return h[:]
}

// opFixture is the state the examples run on: keys a, b, p/1, p/2 (at
// indexes 1-4; p/2 with a TTL, which grants it lease 1), and node n1 and
// the ACL bootstrap (root token 1) at 5.
func opFixture(t *testing.T) *Store {
	t.Helper()
	s := openTemp(t)
	for i, k := range []string{"a", "b", "p/1", "p/2"} {
		c := putCmd(k, "v", kv.Condition{})
		if k == "p/2" {
			c.TTL = 10_000
		}
		applyOne(t, s, uint64(i+1), c)
	}
	entry := EncodeEntry(nil, []*Command{
		{Op: OpSetNode, Key: []byte("n1"), Value: []byte("127.0.0.1:8001")},
		{Op: OpACLBootstrap, Key: hashOf("root"), Value: bytes.Repeat([]byte{1}, MemberSecretSize)},
	})
	for _, r := range s.Apply(&raft.Log{Index: 5, Term: 1, Type: raft.LogCommand, Data: entry}).([]*Result) {
		if r.Err != nil {
			t.Fatalf("fixture: %v", r.Err)
		}
	}
	return s
}

// dataLines is the content of the kv and nodes buckets, one line each
// ("<bucket> <key hex>=<value hex>").
func dataLines(t *testing.T, s *Store) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range stateLines(t, s) {
		name, kvs, _ := strings.Cut(l, " ")
		if name != "kv" && name != "nodes" {
			continue
		}
		k, v, _ := strings.Cut(kvs, "=")
		m[name+" "+k] = v
	}
	return m
}

// changed lists the "<bucket> <key hex>" whose value differs between a and b.
func changed(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestEveryOp walks every op of opTable, from the first to opEnd, through
// encode, decode and apply, with and without an idempotency key, and checks
// its flags against what applying it changes: an op that does not touch
// many keys changes at most its Key; one that does earns the flag; a
// forwardable op changes only user data (the kv bucket).
func TestEveryOp(t *testing.T) {
	names := map[string]Op{}
	for op := OpNoop; op < opEnd; op++ {
		if !op.Valid() {
			continue // a retired number
		}
		t.Run(op.String(), func(t *testing.T) {
			if other, dup := names[op.String()]; dup || strings.HasPrefix(op.String(), "op(") {
				t.Fatalf("op %d is named %q (also op %d)", uint8(op), op, other)
			}
			names[op.String()] = op
			ex, ok := opExamples[op]
			if !ok {
				t.Fatalf("op %v has no example in opExamples: add one (see opTable)", op)
			}
			if ex.Op != op {
				t.Fatalf("the example of %v is a %v", op, ex.Op)
			}
			for _, idem := range []bool{false, true} {
				c := ex
				if idem {
					c.IdemKey = []byte("idem-1")
				}
				cmds, err := DecodeEntry(c.Encode(nil))
				if err != nil {
					t.Fatalf("idem=%v: the example does not decode: %v", idem, err)
				}
				if len(cmds) != 1 || !reflect.DeepEqual(cmds[0], c) {
					t.Fatalf("idem=%v: round trip: got %+v, want %+v", idem, cmds, c)
				}
				checkOpApply(t, c)
			}
		})
	}
	for _, op := range []Op{0, opEnd, 255} {
		if op.Valid() || op.Forwardable() || !op.TouchesMany() || op.String() != fmt.Sprintf("op(%d)", uint8(op)) {
			t.Errorf("invalid op %d: Valid %v, Forwardable %v, TouchesMany %v, String %q", uint8(op), op.Valid(), op.Forwardable(), op.TouchesMany(), op)
		}
		if _, err := DecodeEntry([]byte{entryVersion, 1, byte(op), 0}); !errors.Is(err, ErrBadCommand) {
			t.Errorf("an entry with op %d decodes: %v", uint8(op), err)
		}
	}
}

// checkOpApply applies c at index 6 on the fixture and checks its result
// and what it changed against its op's flags; with an idempotency key,
// also that a retry at 7 is replayed, changing nothing.
func checkOpApply(t *testing.T, c Command) {
	t.Helper()
	s := opFixture(t)
	before := dataLines(t, s)
	res := first(s.Apply(&raft.Log{Index: 6, Term: 1, Type: raft.LogCommand, Data: c.Encode(nil)}))
	if res == nil || res.Err != nil || res.Index != 6 {
		t.Fatalf("apply %v: %+v", c.Op, res)
	}
	after := dataLines(t, s)
	diff := changed(before, after)
	keyLines := map[string]bool{}
	for _, b := range []string{"kv", "nodes"} {
		keyLines[b+" "+hex.EncodeToString(c.Key)] = true
	}
	var others []string
	for _, k := range diff {
		if !keyLines[k] {
			others = append(others, k)
		}
		if c.Op.Forwardable() && !strings.HasPrefix(k, "kv ") {
			t.Errorf("%v is forwardable (a user write) but changed %s", c.Op, k)
		}
	}
	switch {
	case !c.Op.TouchesMany() && len(others) > 0:
		t.Errorf("%v is not TouchesMany, yet changed %v besides its key %q: group commit could give two changes of one key the same mod_index", c.Op, others, c.Key)
	case c.Op.TouchesMany() && len(others) == 0:
		t.Errorf("%v is TouchesMany, but its example changed only %v: make it show why, or clear the flag", c.Op, diff)
	}
	for _, k := range diff {
		key, err := hex.DecodeString(strings.TrimPrefix(k, "kv "))
		if !strings.HasPrefix(k, "kv ") || err != nil {
			continue
		}
		if rec, err := s.Get(key); err == nil && rec.ModIndex != 6 {
			t.Errorf("%v changed %s, whose mod_index is %d, not the entry's 6", c.Op, k, rec.ModIndex)
		}
	}
	if len(c.IdemKey) == 0 {
		return
	}
	again := first(s.Apply(&raft.Log{Index: 7, Term: 1, Type: raft.LogCommand, Data: c.Encode(nil)}))
	if again == nil || !again.Replayed || again.Err != nil || !bytes.Equal(AppendResult(nil, again), AppendResult(nil, res)) {
		t.Errorf("retry of %v: %+v, want the first result %+v replayed", c.Op, again, res)
	}
	if d := changed(after, dataLines(t, s)); len(d) > 0 {
		t.Errorf("a replayed %v changed %v", c.Op, d)
	}
}

// The flags of the ops that exist today: which writes a follower forwards
// and which travel alone are decisions, not accidents.
func TestOpFlags(t *testing.T) {
	tests := []struct {
		op                              Op
		name                            string
		touchesMany, forwardable, alone bool
	}{
		{OpNoop, "noop", false, false, false},
		{OpPut, "put", false, true, false},
		{OpDelete, "delete", false, true, false},
		{OpDeletePrefix, "delete_prefix", true, true, true},
		{OpSetNode, "set_node", false, false, false},
		{OpTxn, "txn", true, true, true},
		{OpLeaseGrant, "lease_grant", false, true, false},
		{OpLeaseKeepalive, "lease_keepalive", false, true, false},
		{OpLeaseRevoke, "lease_revoke", true, true, true},
		{OpLeaseCheckpoint, "lease_checkpoint", false, false, false},
		// Protocol version 2: members of version 1 cannot decode it.
		{OpSetCluster, "set_cluster", false, false, true},
		{OpACLBootstrap, "acl_bootstrap", false, false, true},
		{OpACLTokenCreate, "acl_token_create", false, true, true},
		{OpACLTokenDelete, "acl_token_delete", false, true, true},
	}
	for _, tt := range tests {
		if !tt.op.Valid() || tt.op.String() != tt.name || tt.op.TouchesMany() != tt.touchesMany || tt.op.Forwardable() != tt.forwardable || tt.op.Alone() != tt.alone {
			t.Errorf("op %d: Valid %v, String %q, TouchesMany %v, Forwardable %v, Alone %v; want true, %q, %v, %v, %v",
				uint8(tt.op), tt.op.Valid(), tt.op, tt.op.TouchesMany(), tt.op.Forwardable(), tt.op.Alone(), tt.name, tt.touchesMany, tt.forwardable, tt.alone)
		}
	}
}
