package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// openAt opens a store at path and closes it when the test ends.
func openAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openTemp(t testing.TB) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "kv.db"))
}

func entry(index uint64, c Command) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: c.Encode(nil)}
}

func putCmd(key, value string, cond kv.Condition) Command {
	return Command{Op: OpPut, Key: []byte(key), Value: []byte(value), Cond: cond}
}

func delCmd(key string, cond kv.Condition) Command {
	return Command{Op: OpDelete, Key: []byte(key), Cond: cond}
}

// first returns the first Result of an entry's response, nil if none.
func first(r interface{}) *Result {
	rs, ok := r.([]*Result)
	if !ok || len(rs) == 0 {
		return nil
	}
	return rs[0]
}

// applyOne applies c at index and returns its *Result.
func applyOne(t testing.TB, s *Store, index uint64, c Command) *Result {
	t.Helper()
	res := first(s.Apply(entry(index, c)))
	if res == nil {
		t.Fatalf("Apply at %d did not return a *Result", index)
	}
	return res
}

// state is everything a store holds, for comparisons.
type state struct {
	Records []kv.Record
	Nodes   map[string]string
	Applied uint64
}

func dump(t testing.TB, s *Store) state {
	t.Helper()
	list, err := s.List(kv.ListOptions{Limit: kv.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := s.NodeAPIAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if list.Index != s.AppliedIndex() {
		t.Fatalf("List index %d, AppliedIndex %d", list.Index, s.AppliedIndex())
	}
	return state{Records: list.Items, Nodes: nodes, Applied: list.Index}
}

func TestApplySemantics(t *testing.T) {
	s := openTemp(t)
	ifMod := func(i uint64) kv.Condition { return kv.Condition{IfModIndex: i} }
	absent := kv.Condition{IfAbsent: true}
	pr := func(key string, create, mod, version uint64) kv.PutResult {
		return kv.PutResult{Key: []byte(key), CreateIndex: create, ModIndex: mod, Version: version}
	}
	// Step i is applied at raft index i+1.
	steps := []struct {
		name    string
		cmd     Command
		want    Result // Index and Err are filled in / checked separately
		wantErr error
	}{
		{"create", putCmd("a", "1", kv.Condition{}), Result{Put: pr("a", 1, 1, 1)}, nil},
		{"update", putCmd("a", "2", kv.Condition{}), Result{Put: pr("a", 1, 2, 2)}, nil},
		{"if_mod_index match", putCmd("a", "3", ifMod(2)), Result{Put: pr("a", 1, 3, 3)}, nil},
		{"if_mod_index mismatch", putCmd("a", "x", ifMod(2)), Result{CurrentModIndex: 3}, kv.ErrPreconditionFailed},
		{"if_mod_index absent", putCmd("b", "x", ifMod(1)), Result{}, kv.ErrPreconditionFailed},
		{"if_absent absent", putCmd("b", "1", absent), Result{Put: pr("b", 6, 6, 1)}, nil},
		{"if_absent present", putCmd("b", "2", absent), Result{CurrentModIndex: 6}, kv.ErrPreconditionFailed},
		{"delete mismatch", delCmd("a", ifMod(1)), Result{Delete: kv.DeleteResult{Index: 8}, CurrentModIndex: 3}, kv.ErrPreconditionFailed},
		{"delete if_absent present", delCmd("a", absent), Result{Delete: kv.DeleteResult{Index: 9}, CurrentModIndex: 3}, kv.ErrPreconditionFailed},
		{"delete match", delCmd("a", ifMod(3)), Result{Delete: kv.DeleteResult{Deleted: 1, Index: 10}}, nil},
		{"delete absent", delCmd("a", kv.Condition{}), Result{Delete: kv.DeleteResult{Index: 11}}, nil},
		{"delete absent if_mod_index", delCmd("a", ifMod(3)), Result{Delete: kv.DeleteResult{Index: 12}}, kv.ErrPreconditionFailed},
		{"put after delete", putCmd("a", "new", kv.Condition{}), Result{Put: pr("a", 13, 13, 1)}, nil},
		{"noop", Command{Op: OpNoop}, Result{}, nil},
		{"put p/1", putCmd("p/1", "", kv.Condition{}), Result{Put: pr("p/1", 15, 15, 1)}, nil},
		{"put p/2", putCmd("p/2", "", kv.Condition{}), Result{Put: pr("p/2", 16, 16, 1)}, nil},
		{"put p/3", putCmd("p/3", "", kv.Condition{}), Result{Put: pr("p/3", 17, 17, 1)}, nil},
		{"put p", putCmd("p", "", kv.Condition{}), Result{Put: pr("p", 18, 18, 1)}, nil},
		{"delete prefix", Command{Op: OpDeletePrefix, Key: []byte("p/")}, Result{Delete: kv.DeleteResult{Deleted: 3, Index: 19}}, nil},
		{"delete prefix none", Command{Op: OpDeletePrefix, Key: []byte("p/")}, Result{Delete: kv.DeleteResult{Index: 20}}, nil},
		{"set node", Command{Op: OpSetNode, Key: []byte("n1"), Value: []byte("127.0.0.1:8001")}, Result{}, nil},
		{"set node again", Command{Op: OpSetNode, Key: []byte("n2"), Value: []byte("127.0.0.1:8002")}, Result{}, nil},
		{"unset node", Command{Op: OpSetNode, Key: []byte("n2")}, Result{}, nil},
	}
	for i, st := range steps {
		index := uint64(i + 1)
		got := applyOne(t, s, index, st.cmd)
		if !errors.Is(got.Err, st.wantErr) || (got.Err == nil) != (st.wantErr == nil) {
			t.Errorf("%s: Err = %v, want %v", st.name, got.Err, st.wantErr)
		}
		var pe *kv.PreconditionError
		if errors.As(got.Err, &pe) && pe.CurrentModIndex != got.CurrentModIndex {
			t.Errorf("%s: PreconditionError.CurrentModIndex = %d, Result has %d", st.name, pe.CurrentModIndex, got.CurrentModIndex)
		}
		got.Err = nil
		want := st.want
		want.Index = index
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%s: got %+v, want %+v", st.name, *got, want)
		}
		if s.AppliedIndex() != index {
			t.Errorf("%s: AppliedIndex = %d, want %d", st.name, s.AppliedIndex(), index)
		}
	}

	want := state{
		Records: []kv.Record{
			{Key: []byte("a"), Value: []byte("new"), CreateIndex: 13, ModIndex: 13, Version: 1},
			{Key: []byte("b"), Value: []byte("1"), CreateIndex: 6, ModIndex: 6, Version: 1},
			{Key: []byte("p"), Value: []byte{}, CreateIndex: 18, ModIndex: 18, Version: 1},
		},
		Nodes:   map[string]string{"n1": "127.0.0.1:8001"},
		Applied: uint64(len(steps)),
	}
	if got := dump(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("final state:\n got %+v\nwant %+v", got, want)
	}
	if addr, ok := s.NodeAPIAddr("n1"); !ok || addr != "127.0.0.1:8001" {
		t.Errorf("NodeAPIAddr(n1) = %q, %v", addr, ok)
	}
	if _, ok := s.NodeAPIAddr("n2"); ok {
		t.Error("NodeAPIAddr(n2) found a removed node")
	}
	if _, err := s.Get([]byte("p/1")); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get(p/1) after delete prefix: %v, want ErrNotFound", err)
	}
	all := applyOne(t, s, 100, Command{Op: OpDeletePrefix})
	if all.Err != nil || all.Delete.Deleted != 3 {
		t.Errorf("delete all: %+v", all)
	}
}

func TestApplyNonCommandEntries(t *testing.T) {
	s := openTemp(t)
	if got := s.Apply(&raft.Log{Index: 1, Term: 2, Type: raft.LogConfiguration, Data: []byte("opaque")}); got != nil {
		t.Errorf("configuration entry returned %v, want nil", got)
	}
	if s.AppliedIndex() != 1 {
		t.Errorf("AppliedIndex = %d after a configuration entry, want 1", s.AppliedIndex())
	}

	for i, data := range [][]byte{nil, {7}, {2, 1, 99, 0, 0, 0}, {2, 1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		index := uint64(i + 2)
		res := first(s.Apply(&raft.Log{Index: index, Term: 2, Type: raft.LogCommand, Data: data}))
		if res == nil || !errors.Is(res.Err, ErrBadCommand) || res.Index != index {
			t.Errorf("bad command %x: got %+v, want ErrBadCommand at %d", data, res, index)
		}
		if s.AppliedIndex() != index {
			t.Errorf("bad command did not advance the applied index: %d, want %d", s.AppliedIndex(), index)
		}
	}
	if st := dump(t, s); len(st.Records) != 0 {
		t.Errorf("bad commands wrote records: %+v", st.Records)
	}
}

// randomEntries builds a deterministic mix of commands over a few keys.
func randomEntries(n int, seed uint64) []*raft.Log {
	r := rand.New(rand.NewPCG(seed, 0))
	logs := make([]*raft.Log, n)
	for i := range logs {
		index := uint64(i + 1)
		key := fmt.Sprintf("k/%d", r.IntN(8))
		var c Command
		switch r.IntN(10) {
		case 0:
			c = Command{Op: OpNoop}
		case 1:
			c = delCmd(key, kv.Condition{})
		case 2:
			c = Command{Op: OpDeletePrefix, Key: []byte(key[:3])}
		case 3:
			c = putCmd(key, "cas", kv.Condition{IfModIndex: uint64(r.IntN(int(index)) + 1)})
		case 4:
			c = putCmd(key, "new", kv.Condition{IfAbsent: true})
		case 5:
			logs[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogConfiguration}
			continue
		default:
			c = putCmd(key, fmt.Sprint(index), kv.Condition{})
		}
		logs[i] = entry(index, c)
	}
	return logs
}

// normalize strips errors to their sentinel, for comparing results.
func normalize(results []interface{}) []interface{} {
	out := make([]interface{}, len(results))
	for i, r := range results {
		if res := first(r); res != nil {
			cp := *res
			if errors.Is(cp.Err, kv.ErrPreconditionFailed) {
				cp.Err = kv.ErrPreconditionFailed
			}
			out[i] = cp
		} else {
			out[i] = r
		}
	}
	return out
}

func TestApplyBatchEqualsSingle(t *testing.T) {
	logs := randomEntries(300, 1)
	single, batched := openTemp(t), openTemp(t)

	var want, got []interface{}
	for _, l := range logs {
		want = append(want, single.Apply(l))
	}
	var batches int
	for i := 0; i < len(logs); batches++ {
		n := min(1+batches%17, len(logs)-i)
		got = append(got, batched.ApplyBatch(logs[i:i+n])...)
		i += n
	}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Error("ApplyBatch results differ from Apply results")
	}
	if a, b := dump(t, single), dump(t, batched); !reflect.DeepEqual(a, b) {
		t.Errorf("states differ:\nsingle  %+v\nbatched %+v", a, b)
	}
}

func TestReplayAfterRestartIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	logs := randomEntries(100, 2)
	s := openAt(t, path)
	s.ApplyBatch(logs[:60])
	s.ApplyBatch(logs[60:])
	before := dump(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path)
	if got := dump(t, s); !reflect.DeepEqual(got, before) {
		t.Fatalf("state after reopen:\n got %+v\nwant %+v", got, before)
	}
	// raft re-delivers from its last snapshot: overlap the applied index.
	for _, r := range s.ApplyBatch(logs[40:]) {
		if r != nil {
			t.Fatalf("re-applied entry returned %+v, want nil", r)
		}
	}
	for _, l := range logs {
		if r := s.Apply(l); r != nil {
			t.Fatalf("re-applied entry %d returned %+v, want nil", l.Index, r)
		}
	}
	if got := dump(t, s); !reflect.DeepEqual(got, before) {
		t.Errorf("state after replay:\n got %+v\nwant %+v", got, before)
	}
	// A batch straddling the applied index applies only the new part.
	next := entry(101, putCmd("k/0", "after", kv.Condition{}))
	res := s.ApplyBatch([]*raft.Log{logs[99], next})
	if res[0] != nil || first(res[1]).Err != nil || s.AppliedIndex() != 101 {
		t.Errorf("straddling batch: %v, applied %d", res, s.AppliedIndex())
	}
}

func TestObserveBatch(t *testing.T) {
	var calls, entries int
	s, err := Open(filepath.Join(t.TempDir(), "kv.db"), Options{
		ObserveBatch: func(n int, _ time.Duration) { calls++; entries += n },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	logs := randomEntries(10, 3)
	s.ApplyBatch(logs)
	s.ApplyBatch(logs) // all skipped: no transaction, no call
	if calls != 1 || entries != 10 {
		t.Errorf("ObserveBatch: %d calls, %d entries; want 1, 10", calls, entries)
	}
}
