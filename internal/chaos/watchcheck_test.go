package chaos

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

// testHistory is a small committed history with the writes that made it:
//
//	3: put w/a=1                      (acknowledged)
//	5: txn put w/b=x, put w/a=2       (acknowledged, two events)
//	6: delete w/a                     (acknowledged)
//	7: put z/c=h                      (the harness's, not a client key)
//	8: put w/a=3                      (outcome unknown)
//	9: delete prefix w/               (acknowledged: w/a, w/b)
//
// and a put w/a=4 answered "not applied" that is not in it.
func testHistory() (History, []SentWrite) {
	state := map[string]kv.Record{}
	h := History{From: 1, Through: 10} // every key: prefix ""
	add := func(idx uint64, steps ...TxnStep) {
		evs := simulateSteps(state, steps, idx)
		for _, e := range evs {
			if e.Type == kv.EventPut {
				state[string(e.Key)] = e.Record
			} else {
				delete(state, string(e.Key))
			}
		}
		h.Responses = append(h.Responses, kv.WatchResponse{Index: idx, Events: evs})
	}
	put := func(k, v string) TxnStep { return TxnStep{Kind: WritePut, Key: k, Value: v} }
	add(3, put("w/a", "1"))
	add(5, put("w/b", "x"), put("w/a", "2"))
	add(6, TxnStep{Kind: WriteDelete, Key: "w/a"})
	add(7, put("z/c", "h"))
	add(8, put("w/a", "3"))
	add(9, TxnStep{Kind: WriteDeletePrefix, Key: "w/"})
	writes := []SentWrite{
		{Who: "p0", Kind: WritePut, Key: "w/a", Value: "1", Outcome: Ok, Index: 3, CreateIndex: 3, Version: 1},
		{Who: "t0", Kind: WriteTxn, Success: []TxnStep{put("w/b", "x"), put("w/a", "2")}, Outcome: Ok, Index: 5, Succeeded: true},
		{Who: "p1", Kind: WriteDelete, Key: "w/a", Outcome: Ok, Index: 6, Deleted: 1},
		{Who: "p2", Kind: WritePut, Key: "w/a", Value: "3", Outcome: Unknown},
		{Who: "p3", Kind: WritePut, Key: "w/a", Value: "4", Outcome: NotApplied},
		{Who: "t1", Kind: WriteDeletePrefix, Key: "w/", Outcome: Ok, Index: 9, Deleted: 2},
	}
	return h, writes
}

// cloneHistory deep-copies h's responses so a case can change them.
func cloneHistory(h History) History {
	out := h
	out.Responses = nil
	for _, r := range h.Responses {
		evs := make([]kv.Event, len(r.Events))
		for i, e := range r.Events {
			if e.Prev != nil {
				p := *e.Prev
				e.Prev = &p
			}
			evs[i] = e
		}
		out.Responses = append(out.Responses, kv.WatchResponse{Index: r.Index, Events: evs})
	}
	return out
}

func TestCheckStream(t *testing.T) {
	h, _ := testHistory()
	prefixW := kv.WatchOptions{Key: []byte("w/"), Prefix: true, FromIndex: 1, PrevValue: true}
	exact := func(opts kv.WatchOptions) []kv.WatchResponse { return h.Select(opts, opts.FromIndex, h.Through) }
	progress := func(i uint64) kv.WatchResponse { return kv.WatchResponse{Index: i} }
	without := func(rs []kv.WatchResponse, idx uint64) []kv.WatchResponse {
		return slices.DeleteFunc(slices.Clone(rs), func(r kv.WatchResponse) bool { return r.Index == idx })
	}
	tests := []struct {
		name    string
		opts    kv.WatchOptions
		resps   func() []kv.WatchResponse
		end     error
		allow   bool
		retired bool
		opens   []StreamOpen
		want    string // "" passes; else a piece of the error
	}{
		{name: "exact", opts: prefixW, resps: func() []kv.WatchResponse { return exact(prefixW) }},
		{name: "exact with progress", opts: prefixW, resps: func() []kv.WatchResponse {
			rs := exact(prefixW)
			return append(append(slices.Clone(rs[:2]), progress(5), rs[2], progress(7)), rs[3:]...)
		}},
		{name: "later start", opts: kv.WatchOptions{Key: []byte("w/"), Prefix: true, FromIndex: 6}, resps: func() []kv.WatchResponse {
			return exact(kv.WatchOptions{Key: []byte("w/"), Prefix: true, FromIndex: 6})
		}},
		{name: "one key", opts: kv.WatchOptions{Key: []byte("w/b"), FromIndex: 1}, resps: func() []kv.WatchResponse {
			return exact(kv.WatchOptions{Key: []byte("w/b"), FromIndex: 1})
		}},
		{name: "gap", opts: prefixW, want: "gap: index 5 is missing", resps: func() []kv.WatchResponse {
			return without(exact(prefixW), 5)
		}},
		{name: "gap covered by a progress notification", opts: prefixW, want: "gap: index 5 is missing", resps: func() []kv.WatchResponse {
			rs := exact(prefixW)
			return append([]kv.WatchResponse{rs[0], progress(6)}, rs[3:]...)
		}},
		{name: "missing tail", opts: prefixW, want: "never caught up", resps: func() []kv.WatchResponse {
			return exact(prefixW)[:3]
		}},
		{name: "missing tail of a retired watcher", opts: prefixW, retired: true, resps: func() []kv.WatchResponse {
			return exact(prefixW)[:3]
		}},
		{name: "gap in a retired watcher", opts: prefixW, retired: true, want: "gap: index 5 is missing", resps: func() []kv.WatchResponse {
			return without(exact(prefixW)[:3], 5)
		}},
		{name: "duplicate", opts: prefixW, want: "index 5 was delivered twice", resps: func() []kv.WatchResponse {
			rs := exact(prefixW)
			return append(slices.Clone(rs[:2]), rs[1:]...)
		}},
		{name: "backwards", opts: prefixW, want: "index 5 went backwards", resps: func() []kv.WatchResponse {
			rs := exact(prefixW)
			return []kv.WatchResponse{rs[0], rs[2], rs[1], rs[3], rs[4]}
		}},
		{name: "event after a progress beyond it", opts: prefixW, want: "index 8 was delivered twice", resps: func() []kv.WatchResponse {
			rs := exact(prefixW)
			return append(append(slices.Clone(rs[:4]), progress(8)), rs[3:]...)
		}},
		{name: "progress backwards", opts: prefixW, want: "progress at index 4 after index 5", resps: func() []kv.WatchResponse {
			rs := exact(prefixW)
			return append(append(slices.Clone(rs[:2]), progress(4)), rs[2:]...)
		}},
		{name: "before its start", opts: kv.WatchOptions{Key: []byte("w/"), Prefix: true, FromIndex: 6}, want: "before its start index 6", resps: func() []kv.WatchResponse {
			return exact(prefixW)
		}},
		{name: "other value", opts: prefixW, want: "the events of index 8 differ", resps: func() []kv.WatchResponse {
			rs := cloneHistory(History{Responses: exact(prefixW)}).Responses
			rs[3].Events[0].Value = []byte("other")
			return rs
		}},
		{name: "other version", opts: prefixW, want: "the events of index 5 differ", resps: func() []kv.WatchResponse {
			rs := cloneHistory(History{Responses: exact(prefixW)}).Responses
			rs[1].Events[1].Version++
			return rs
		}},
		{name: "events of an index in another order", opts: prefixW, want: "the events of index 5 differ", resps: func() []kv.WatchResponse {
			rs := cloneHistory(History{Responses: exact(prefixW)}).Responses
			rs[1].Events[0], rs[1].Events[1] = rs[1].Events[1], rs[1].Events[0]
			return rs
		}},
		{name: "a prev it did not ask for", opts: kv.WatchOptions{Key: []byte("w/"), Prefix: true, FromIndex: 1}, want: "the events of index 5 differ", resps: func() []kv.WatchResponse {
			return exact(prefixW)
		}},
		{name: "a key outside its range", opts: prefixW, want: "index 7 is not in the committed history of its range", resps: func() []kv.WatchResponse {
			all := h.Select(kv.WatchOptions{Prefix: true, PrevValue: true}, 1, h.Through)
			return all
		}},
		{name: "an index the history does not have", opts: prefixW, want: "index 4 is not in the committed history", resps: func() []kv.WatchResponse {
			rs := exact(prefixW)
			extra := kv.WatchResponse{Index: 4, Events: []kv.Event{{Type: kv.EventPut, Record: kv.Record{Key: []byte("w/z"), Value: []byte("?"), CreateIndex: 4, ModIndex: 4, Version: 1}}}}
			return append([]kv.WatchResponse{rs[0], extra}, rs[1:]...)
		}},
		{name: "ended compacted", opts: prefixW, want: "compacted", end: &kv.CompactedError{FromIndex: 6, OldestIndex: 7, CurrentIndex: 10}, resps: func() []kv.WatchResponse {
			return exact(prefixW)[:2]
		}},
		{name: "ended compacted on purpose", opts: prefixW, allow: true, end: &kv.CompactedError{FromIndex: 6, OldestIndex: 7, CurrentIndex: 10}, resps: func() []kv.WatchResponse {
			return exact(prefixW)[:2]
		}},
		{name: "ended with another error", opts: prefixW, allow: true, want: "malformed", end: errors.New("malformed line"), resps: func() []kv.WatchResponse {
			return exact(prefixW)
		}},
		{name: "streams that start where they asked", opts: prefixW, resps: func() []kv.WatchResponse { return exact(prefixW) },
			opens: []StreamOpen{{First: 0, From: 1, After: 0}, {First: 2, From: 6, After: 5}}},
		{name: "a stream that says it starts elsewhere", opts: prefixW, want: "stream 2 (opened at 0ms) asked for from_index=6 and answered X-Raft-Index 6",
			resps: func() []kv.WatchResponse { return exact(prefixW) },
			opens: []StreamOpen{{First: 0, From: 1, After: 0}, {First: 2, From: 6, After: 6}}},
		{name: "beyond the history is not checked", opts: prefixW, resps: func() []kv.WatchResponse {
			extra := kv.WatchResponse{Index: 12, Events: []kv.Event{{Type: kv.EventPut, Record: kv.Record{Key: []byte("w/z"), Value: []byte("?"), CreateIndex: 12, ModIndex: 12, Version: 1}}}}
			return append(exact(prefixW), extra)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &WatchStream{Name: "w", Opts: tc.opts, Responses: tc.resps(), End: tc.end, AllowCompacted: tc.allow, Retired: tc.retired, Opens: tc.opens}
			err := CheckStream(h, s)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want no error, got %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("want an error with %q, got none", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

func TestCheckHistory(t *testing.T) {
	keys := []string{}
	prefixes := []string{"w/"}
	tests := []struct {
		name   string
		change func(h *History, w []SentWrite) []SentWrite
		want   string // "" passes; else the start of a problem
	}{
		{name: "exact", change: func(_ *History, w []SentWrite) []SentWrite { return w }},
		{name: "unknown write never applied", change: func(h *History, w []SentWrite) []SentWrite {
			return append(w, SentWrite{Who: "p9", Kind: WritePut, Key: "w/a", Value: "9", Outcome: Unknown})
		}},
		{name: "acknowledged put missing", want: "acknowledged: put w/a=7", change: func(h *History, w []SentWrite) []SentWrite {
			return append(w, SentWrite{Who: "p9", Kind: WritePut, Key: "w/a", Value: "7", Outcome: Ok, Index: 10, CreateIndex: 10, Version: 1})
		}},
		{name: "acknowledged put with another version", want: "acknowledged: put w/a=1", change: func(h *History, w []SentWrite) []SentWrite {
			w[0].Version = 2
			return w
		}},
		{name: "acknowledged put at another index", want: "acknowledged: put w/a=1", change: func(h *History, w []SentWrite) []SentWrite {
			w[0].Index = 4
			return w
		}},
		{name: "acknowledged delete missing", want: "acknowledged: delete w/a", change: func(h *History, w []SentWrite) []SentWrite {
			return append(w, SentWrite{Who: "p9", Kind: WriteDelete, Key: "w/a", Outcome: Ok, Index: 7, Deleted: 1})
		}},
		{name: "not-applied write in the history", want: "not-applied: index 8", change: func(h *History, w []SentWrite) []SentWrite {
			w[3].Outcome = NotApplied
			return w
		}},
		{name: "412 write in the history", want: "not-applied: index 8", change: func(h *History, w []SentWrite) []SentWrite {
			w[3].Outcome = PreconditionFailed
			return w
		}},
		{name: "a value no client sent", want: "unsent: index 8", change: func(h *History, w []SentWrite) []SentWrite {
			return slices.Delete(w, 3, 4)
		}},
		{name: "a value twice", want: "twice: index 8", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[4].Events[0].Value = []byte("1")
			return w
		}},
		{name: "a delete no client sent", want: "unsent: w/a deleted", change: func(h *History, w []SentWrite) []SentWrite {
			return slices.Delete(w, 2, 3)
		}},
		{name: "a delete of unknown outcome", change: func(h *History, w []SentWrite) []SentWrite {
			w[2].Outcome, w[2].Index = Unknown, 0
			return w
		}},
		{name: "a transaction applied in part", want: "write: txn", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[1].Events = h.Responses[1].Events[1:]
			h.Responses[1].Events[0].Prev = nil
			h.Responses[1].Events[0].Version, h.Responses[1].Events[0].CreateIndex = 1, 5
			h.Responses[2].Events[0].Prev.Version, h.Responses[2].Events[0].Prev.CreateIndex = 1, 5
			return w
		}},
		{name: "a transaction's compare misreported", want: "write: txn if exists(w/zz)", change: func(h *History, w []SentWrite) []SentWrite {
			w[1].IfExists = "w/zz"
			w[1].Succeeded = true
			w[1].Failure = []TxnStep{{Kind: WritePut, Key: "w/b", Value: "x"}, {Kind: WritePut, Key: "w/a", Value: "2"}}
			return w
		}},
		{name: "a prefix delete's count", want: "write: delete prefix w/", change: func(h *History, w []SentWrite) []SentWrite {
			w[5].Deleted = 1
			return w
		}},
		{name: "a prefix delete that missed a key", want: "write: delete prefix w/", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[5].Events = h.Responses[5].Events[:1]
			return w
		}},
		{name: "version not counted", want: "rules: index 5 event 1 (put w/a)", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[1].Events[1].Version = 1
			return w
		}},
		{name: "create_index changed", want: "rules: index 5 event 1 (put w/a)", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[1].Events[1].CreateIndex = 5
			return w
		}},
		{name: "mod_index not the index", want: "rules: index 7 event 0 (put z/c) has mod_index 6", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[3].Events[0].ModIndex = 6
			return w
		}},
		{name: "wrong prev", want: "rules: index 6 event 0 (delete w/a): prev", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[2].Events[0].Prev.Value = []byte("1")
			return w
		}},
		{name: "delete of an absent key", want: "rules: index 7 event 1: delete of w/q", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[3].Events = append(h.Responses[3].Events, kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: []byte("w/q"), ModIndex: 7}})
			return w
		}},
		{name: "indexes out of order", want: "order: index 5 after index 6", change: func(h *History, w []SentWrite) []SentWrite {
			h.Responses[1], h.Responses[2] = h.Responses[2], h.Responses[1]
			return w
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, w := testHistory()
			h = cloneHistory(h)
			w = tc.change(&h, slices.Clone(w))
			res := CheckHistory(h, w, keys, prefixes)
			if tc.want == "" {
				if len(res.Problems) > 0 {
					t.Fatalf("want no problem, got:\n%s", strings.Join(res.Problems, "\n"))
				}
				return
			}
			if !slices.ContainsFunc(res.Problems, func(p string) bool { return strings.HasPrefix(p, tc.want) }) {
				t.Fatalf("want a problem starting %q, got:\n%s", tc.want, strings.Join(res.Problems, "\n"))
			}
		})
	}
	t.Run("a history of one prefix leaves other keys' writes out", func(t *testing.T) {
		h, w := testHistory()
		wh := History{Prefix: "w/", From: 1, Through: h.Through, Responses: h.Select(kv.WatchOptions{Key: []byte("w/"), Prefix: true, PrevValue: true}, 1, h.Through)}
		w = append(w, SentWrite{Who: "p9", Kind: WritePut, Key: "z/c", Value: "h", Outcome: Ok, Index: 7, CreateIndex: 7, Version: 1},
			SentWrite{Who: "t9", Kind: WriteTxn, Success: []TxnStep{{Kind: WritePut, Key: "z/d", Value: "v"}}, Outcome: Ok, Index: 10, Succeeded: true})
		if res := CheckHistory(wh, w, nil, []string{""}); len(res.Problems) > 0 {
			t.Fatalf("want no problem, got:\n%s", strings.Join(res.Problems, "\n"))
		}
		// A value under the prefix that no client sent is still caught.
		wh = cloneHistory(wh)
		wh.Responses[3].Events[0].Value = []byte("zzz")
		res := CheckHistory(wh, w, nil, []string{""})
		if !slices.ContainsFunc(res.Problems, func(p string) bool { return strings.HasPrefix(p, "unsent: index 8") }) {
			t.Fatalf("want an unsent value at 8, got:\n%s", strings.Join(res.Problems, "\n"))
		}
	})
	t.Run("final state", func(t *testing.T) {
		h, w := testHistory()
		res := CheckHistory(h, w, keys, prefixes)
		want := []kv.Record{{Key: []byte("z/c"), Value: []byte("h"), CreateIndex: 7, ModIndex: 7, Version: 1}}
		if err := CompareState("n1", res.State, want); err != nil {
			t.Fatal(err)
		}
		want[0].Version = 2
		if err := CompareState("n1", res.State, want); err == nil || !strings.Contains(err.Error(), "z/c holds") {
			t.Fatalf("want a difference on z/c, got %v", err)
		}
		if err := CompareState("n1", res.State, nil); err == nil || !strings.Contains(err.Error(), "z/c is absent") {
			t.Fatalf("want z/c absent, got %v", err)
		}
	})
}

func TestCompareHistories(t *testing.T) {
	a, _ := testHistory()
	if err := CompareHistories("n1", a, "n2", cloneHistory(a)); err != nil {
		t.Fatal(err)
	}
	b := cloneHistory(a)
	b.Responses[3].Events[0].Value = []byte("other")
	if err := CompareHistories("n1", a, "n2", b); err == nil || !strings.Contains(err.Error(), "differ at index 7") {
		t.Fatalf("want a difference at 7, got %v", err)
	}
	c := cloneHistory(a)
	c.Responses = slices.Delete(c.Responses, 2, 3)
	if err := CompareHistories("n1", a, "n3", c); err == nil || !strings.Contains(err.Error(), "differ at index 6") || !strings.Contains(err.Error(), "n3: nothing at 6") {
		t.Fatalf("want n3 missing 6, got %v", err)
	}
}
