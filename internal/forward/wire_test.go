package forward

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

func TestRequestRoundTrip(t *testing.T) {
	cmds := []*store.Command{
		{Op: store.OpPut, Key: []byte("a"), Value: []byte("1"), Cond: kv.Condition{IfModIndex: 7}},
		{Op: store.OpDelete, Key: []byte("b"), IdemKey: []byte("idem-1")},
		{Op: store.OpDeletePrefix, Key: []byte("p/")},
		{Op: store.OpTxn, Txn: &kv.Txn{
			Compare: []kv.Compare{{Key: []byte("a"), Target: kv.TargetVersion, Op: kv.OpEqual, Number: 1}},
			Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("a"), Value: []byte("2")}},
		}},
	}
	timeouts := []time.Duration{0, 1500 * time.Microsecond, time.Second, 2 * time.Hour}
	got, gotTimeouts, err := DecodeRequest(AppendRequest(nil, cmds, timeouts))
	if err != nil {
		t.Fatal(err)
	}
	// Timeouts travel in whole milliseconds, rounded up, capped at an hour.
	want := []time.Duration{0, 2 * time.Millisecond, time.Second, time.Hour}
	if !reflect.DeepEqual(gotTimeouts, want) {
		t.Fatalf("timeouts %v, want %v", gotTimeouts, want)
	}
	for i := range cmds {
		if !reflect.DeepEqual(got[i].Encode(nil), cmds[i].Encode(nil)) {
			t.Fatalf("command %d: %+v, want %+v", i, got[i], *cmds[i])
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	outs := []Outcome{
		{Res: &store.Result{Index: 9, Put: kv.PutResult{Key: []byte("a"), CreateIndex: 3, ModIndex: 9, Version: 2}}},
		{Res: &store.Result{Index: 10, CurrentModIndex: 4, Err: &kv.PreconditionError{CurrentModIndex: 4}}},
		{Res: &store.Result{Index: 11, Err: kv.ErrIdempotencyKeyReused}},
		{Res: &store.Result{Index: 12, Delete: kv.DeleteResult{Index: 12, Deleted: 3}}},
		{Err: kv.ErrOutcomeUnknown},
		{Err: kv.ErrNotLeader},
		{Err: errors.New("disk on fire")},
		{}, // no result and no error: reported as unknown, never as success
	}
	got, err := DecodeResponse(AppendResponse(nil, outs), len(outs))
	if err != nil {
		t.Fatal(err)
	}
	if r := got[0].Res; got[0].Err != nil || r == nil || r.Err != nil || r.Put.ModIndex != 9 || string(r.Put.Key) != "a" || r.Put.Version != 2 {
		t.Errorf("put: %+v %+v", got[0].Res, got[0].Err)
	}
	var pe *kv.PreconditionError
	if r := got[1].Res; r == nil || !errors.As(r.Err, &pe) || pe.CurrentModIndex != 4 {
		t.Errorf("failed condition: %+v", got[1])
	}
	if r := got[2].Res; r == nil || !errors.Is(r.Err, kv.ErrIdempotencyKeyReused) {
		t.Errorf("reused key: %+v", got[2])
	}
	if r := got[3].Res; r == nil || r.Delete.Deleted != 3 || r.Index != 12 {
		t.Errorf("delete: %+v", got[3])
	}
	for i, want := range []error{kv.ErrOutcomeUnknown, kv.ErrNotLeader, nil, kv.ErrOutcomeUnknown} {
		o := got[4+i]
		switch {
		case o.Res != nil || o.Err == nil:
			t.Errorf("outcome %d: %+v, want an error", 4+i, o)
		case want != nil && !errors.Is(o.Err, want):
			t.Errorf("outcome %d: %v, want %v", 4+i, o.Err, want)
		case want == nil && kv.Code(o.Err) != kv.CodeInternal:
			t.Errorf("outcome %d: code %s, want internal", 4+i, kv.Code(o.Err))
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := AppendRequest(nil, []*store.Command{{Op: store.OpPut, Key: []byte("a")}}, []time.Duration{0})
	for name, b := range map[string][]byte{
		"empty":           nil,
		"version":         append([]byte{9}, valid[1:]...),
		"too many":        {wireVersion, 0xff, 0xff, 0x7f},
		"count mismatch":  append([]byte{wireVersion, 2, 0, 0}, valid[3:]...),
		"truncated":       valid[:len(valid)-1],
		"no entry":        valid[:3],
		"trailing bytes":  append(append([]byte{}, valid...), 0),
		"bad entry":       append(append([]byte{}, valid[:3]...), 2, 1, 99),
		"response as req": AppendResponse(nil, []Outcome{{Err: kv.ErrTimeout}}),
	} {
		if _, _, err := DecodeRequest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	resp := AppendResponse(nil, []Outcome{{Err: kv.ErrTimeout}})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"count":     AppendResponse(nil, []Outcome{{Err: kv.ErrTimeout}, {Err: kv.ErrTimeout}}),
		"truncated": resp[:len(resp)-1],
		"trailing":  append(append([]byte{}, resp...), 0),
		"kind":      {wireVersion, 1, 7},
	} {
		if _, err := DecodeResponse(b, 1); !errors.Is(err, ErrMalformed) {
			t.Errorf("response %s: %v, want ErrMalformed", name, err)
		}
	}
}

// The leader decodes what any client sends to its internal endpoint, and
// the follower what comes back: neither may panic, and what decodes must
// encode again to an equivalent request.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(AppendRequest(nil, []*store.Command{{Op: store.OpPut, Key: []byte("a"), Value: []byte("v")}}, []time.Duration{time.Second}))
	f.Add(AppendRequest(nil, []*store.Command{{Op: store.OpDelete, Key: []byte("a")}, {Op: store.OpDeletePrefix, Key: []byte("")}}, []time.Duration{0, 0}))
	f.Add([]byte{wireVersion, 1, 0, 2, 1, 4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, timeouts, err := DecodeRequest(b)
		if err != nil {
			return
		}
		ptrs := make([]*store.Command, len(cmds))
		for i := range cmds {
			ptrs[i] = &cmds[i]
		}
		again, _, err := DecodeRequest(AppendRequest(nil, ptrs, timeouts))
		if err != nil || len(again) != len(cmds) {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(AppendResponse(nil, []Outcome{{Res: &store.Result{Index: 3, Put: kv.PutResult{Key: []byte("k"), ModIndex: 3}}}}), 1)
	f.Add(AppendResponse(nil, []Outcome{{Err: kv.ErrTimeout}, {Res: &store.Result{Err: &kv.PreconditionError{CurrentModIndex: 2}}}}), 2)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > MaxCommands {
			return
		}
		outs, err := DecodeResponse(b, n)
		if err == nil && len(outs) != n {
			t.Fatalf("%d outcomes for %d", len(outs), n)
		}
	})
}
