package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

func ptrs(cmds []Command) []*Command {
	out := make([]*Command, len(cmds))
	for i := range cmds {
		out[i] = &cmds[i]
	}
	return out
}

func openHistory(t testing.TB, keep uint64, window int) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "kv.db"), Options{NoSync: true, BootID: func() string { return "test" }, WatchHistory: keep, WatchWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// eventLine renders an event for comparisons.
func eventLine(index uint64, e kv.Event) string {
	s := fmt.Sprintf("%d %s %s c=%d m=%d v=%d", index, e.Type, e.Key, e.CreateIndex, e.ModIndex, e.Version)
	if e.Type == kv.EventPut {
		s += " val=" + string(e.Value)
	}
	if e.Prev != nil {
		s += fmt.Sprintf(" prev(c=%d m=%d v=%d val=%s)", e.Prev.CreateIndex, e.Prev.ModIndex, e.Prev.Version, e.Prev.Value)
	}
	return s
}

func lines(resps []kv.WatchResponse) []string {
	var out []string
	for _, r := range resps {
		for _, e := range r.Events {
			out = append(out, eventLine(r.Index, e))
		}
	}
	return out
}

// collect reads from w until it has looked at every index up to through.
// Next returns only with events, so a short wait that ends with nothing
// is normal once the watcher's position is past through.
func collect(t *testing.T, w *Watcher, through uint64) []kv.WatchResponse {
	t.Helper()
	var out []kv.WatchResponse
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		rs, err := w.Next(ctx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) && w.Position() > through:
			return out
		case errors.Is(err, context.DeadlineExceeded) && time.Now().Before(deadline):
			continue
		case err != nil:
			t.Fatalf("Next at position %d: %v", w.Position(), err)
		}
		for _, r := range rs {
			if len(out) > 0 && r.Index <= out[len(out)-1].Index {
				t.Fatalf("index %d delivered after %d", r.Index, out[len(out)-1].Index)
			}
			out = append(out, r)
		}
	}
}

// Every write records its events, with the previous record; failed
// conditions, replays and absent keys record none.
func TestHistoryEvents(t *testing.T) {
	s := openHistory(t, 1000, 0)
	txn := &kv.Txn{Success: []kv.TxnOp{
		{Type: kv.TxnPut, Key: []byte("t"), Value: []byte("1")},
		{Type: kv.TxnPut, Key: []byte("t"), Value: []byte("2")},
		{Type: kv.TxnDelete, Key: []byte("a")},
		{Type: kv.TxnGet, Key: []byte("b")},
	}}
	steps := []struct {
		cmds []Command
		want []string
	}{
		{[]Command{putCmd("a", "1", kv.Condition{})}, []string{"1 put a c=1 m=1 v=1 val=1"}},
		{[]Command{putCmd("a", "2", kv.Condition{})}, []string{"2 put a c=1 m=2 v=2 val=2 prev(c=1 m=1 v=1 val=1)"}},
		{[]Command{putCmd("a", "x", kv.Condition{IfAbsent: true})}, nil},
		{[]Command{delCmd("zz", kv.Condition{})}, nil},
		{[]Command{putCmd("p/1", "", kv.Condition{}), putCmd("p/2", "b", kv.Condition{}), putCmd("b", "y", kv.Condition{})}, []string{
			"5 put p/1 c=5 m=5 v=1 val=", "5 put p/2 c=5 m=5 v=1 val=b", "5 put b c=5 m=5 v=1 val=y"}},
		{[]Command{{Op: OpDeletePrefix, Key: []byte("p/")}}, []string{
			"6 delete p/1 c=0 m=6 v=0 prev(c=5 m=5 v=1 val=)", "6 delete p/2 c=0 m=6 v=0 prev(c=5 m=5 v=1 val=b)"}},
		{[]Command{{Op: OpTxn, Txn: txn}}, []string{
			"7 put t c=7 m=7 v=1 val=1", "7 put t c=7 m=7 v=2 val=2 prev(c=7 m=7 v=1 val=1)", "7 delete a c=0 m=7 v=0 prev(c=1 m=2 v=2 val=2)"}},
		{[]Command{{Op: OpPut, Key: []byte("i"), Value: []byte("1"), IdemKey: []byte("k1")}}, []string{"8 put i c=8 m=8 v=1 val=1"}},
		{[]Command{{Op: OpPut, Key: []byte("i"), Value: []byte("1"), IdemKey: []byte("k1")}}, nil}, // replayed
		{[]Command{{Op: OpNoop}}, nil},
		{[]Command{delCmd("b", kv.Condition{IfModIndex: 5})}, []string{"11 delete b c=0 m=11 v=0 prev(c=5 m=5 v=1 val=y)"}},
	}
	var want []string
	for i, st := range steps {
		index := uint64(i + 1)
		s.ApplyBatch([]*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand, Data: EncodeEntry(nil, ptrs(st.cmds))}})
		want = append(want, st.want...)
	}
	w, err := s.Watch(kv.WatchOptions{Prefix: true, FromIndex: 1, PrevValue: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got := lines(collect(t, w, uint64(len(steps))))
	if d := linesDiff(got, want); d != "" {
		t.Fatalf("history: %s\ngot:\n%s", d, strings.Join(got, "\n"))
	}
	// Without PrevValue, no event carries one; a key watch sees its key only.
	w2, err := s.Watch(kv.WatchOptions{Key: []byte("t"), FromIndex: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	got = lines(collect(t, w2, uint64(len(steps))))
	if d := linesDiff(got, []string{"7 put t c=7 m=7 v=1 val=1", "7 put t c=7 m=7 v=2 val=2"}); d != "" {
		t.Fatalf("key watch: %s", d)
	}
	if oldest, n := s.HistoryStats(); oldest != 1 || n != int64(len(want)) {
		t.Fatalf("HistoryStats = %d, %d; want 1, %d", oldest, n, len(want))
	}
}

// randomLog builds n entries of puts, deletes and prefix deletes over a
// few keys, several commands to some entries.
func randomLog(r *rand.Rand, n int) []*raft.Log {
	logs := make([]*raft.Log, n)
	for i := range logs {
		var cmds []Command
		for range 1 + r.IntN(3) {
			key := fmt.Sprintf("%c/%d", "abc"[r.IntN(3)], r.IntN(5))
			switch r.IntN(10) {
			case 0:
				cmds = []Command{{Op: OpDeletePrefix, Key: []byte(key[:2])}}
			case 1, 2:
				cmds = append(cmds, delCmd(key, kv.Condition{}))
			default:
				cmds = append(cmds, putCmd(key, fmt.Sprint(i), kv.Condition{}))
			}
			if cmds[0].Op == OpDeletePrefix {
				break
			}
		}
		typ := raft.LogCommand
		if r.IntN(20) == 0 {
			typ = raft.LogConfiguration
			cmds = nil
		}
		logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: typ, Data: EncodeEntry(nil, ptrs(cmds))}
	}
	return logs
}

// A watcher delivers exactly the history of its keys: from the window, from
// the history bucket when it falls behind the window (a tiny one here),
// across batch boundaries, whether it reads as entries apply or long after,
// and a store restored from a snapshot serves the same events.
func TestWatcherDeliversHistoryExactly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window int
		live   bool // read while applying, not after
	}{
		{"window, live", DefaultWatchWindow, true},
		{"tiny window, live", 1, true},
		{"window, after", DefaultWatchWindow, false},
		{"tiny window, after", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(tc.window)))
			logs := randomLog(r, 3000)
			ref := openHistory(t, 1<<20, 0)
			for _, l := range logs {
				ref.ApplyBatch([]*raft.Log{l})
			}
			s := openHistory(t, 1<<20, tc.window)
			opts := []kv.WatchOptions{
				{Prefix: true, FromIndex: 1},
				{Key: []byte("a/"), Prefix: true, FromIndex: 1},
				{Key: []byte("b/3"), FromIndex: 1, PrevValue: true},
				{Key: []byte("c/"), Prefix: true, FromIndex: 1500},
			}
			var ws []*Watcher
			for _, o := range opts {
				w, err := s.Watch(o)
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				ws = append(ws, w)
			}
			got := make([][]kv.WatchResponse, len(ws))
			for next := 0; next < len(logs); {
				end := min(next+1+r.IntN(300), len(logs))
				s.ApplyBatch(logs[next:end])
				next = end
				if tc.live {
					for i, w := range ws {
						got[i] = append(got[i], collect(t, w, uint64(end))...)
					}
				}
			}
			for i, w := range ws {
				got[i] = append(got[i], collect(t, w, uint64(len(logs)))...)
				wr, err := ref.Watch(opts[i])
				if err != nil {
					t.Fatal(err)
				}
				want := collect(t, wr, uint64(len(logs)))
				wr.Close()
				if len(want) == 0 {
					t.Fatalf("watch %d selects no events", i)
				}
				if d := linesDiff(lines(got[i]), lines(want)); d != "" {
					t.Fatalf("watch %+v: %s", opts[i], d)
				}
			}
			// A store restored from a snapshot serves the same events.
			restored := openHistory(t, 1<<20, tc.window)
			if err := restoreBytes(restored, snapshotBytes(t, s)); err != nil {
				t.Fatal(err)
			}
			w, err := restored.Watch(opts[0])
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if d := linesDiff(lines(collect(t, w, uint64(len(logs)))), lines(got[0])); d != "" {
				t.Fatalf("restored store's history: %s", d)
			}
		})
	}
}

// History keeps the last WatchHistory indexes: a watch from before them
// fails at once with the bounds, and a watcher that falls behind them
// ends with the same error, never skipping an index.
func TestHistoryCompaction(t *testing.T) {
	const keep = 10
	s := openHistory(t, keep, 1)
	for i := range 30 {
		applyOne(t, s, uint64(i+1), putCmd("k", fmt.Sprint(i), kv.Condition{}))
	}
	var ce *kv.CompactedError
	if _, err := s.Watch(kv.WatchOptions{Key: []byte("k"), FromIndex: 20}); !errors.As(err, &ce) || ce.OldestIndex != 21 || ce.CurrentIndex != 30 || ce.FromIndex != 20 {
		t.Fatalf("Watch from 20: %v (%+v), want compacted, oldest 21, current 30", err, ce)
	}
	if oldest, n := s.HistoryStats(); oldest != 21 || n != keep {
		t.Fatalf("HistoryStats = %d, %d; want 21, %d", oldest, n, keep)
	}
	w, err := s.Watch(kv.WatchOptions{Key: []byte("k"), FromIndex: 21})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got := collect(t, w, 25)
	if got[0].Index != 21 {
		t.Fatalf("first index %d, want 21", got[0].Index)
	}
	// A previous value older than the history is unknown (nil); a newer
	// one is looked up in it.
	wp, err := s.Watch(kv.WatchOptions{Key: []byte("k"), FromIndex: 21, PrevValue: true})
	if err != nil {
		t.Fatal(err)
	}
	defer wp.Close()
	prevs := collect(t, wp, 22)
	if p := prevs[0].Events[0].Prev; p == nil || p.ModIndex != 20 || p.Value != nil {
		t.Fatalf("prev of the event at 21 (set at 20, compacted): %+v, want indexes without a value", p)
	}
	if p := prevs[1].Events[0].Prev; p == nil || p.ModIndex != 21 || string(p.Value) != "20" {
		t.Fatalf("prev of the event at 22: %+v, want the value written at 21", p)
	}
	pos := w.Position()
	// The watcher stops reading; applying goes on past its position.
	for i := 30; i < 30+2*keep; i++ {
		applyOne(t, s, uint64(i+1), putCmd("k", fmt.Sprint(i), kv.Condition{}))
	}
	rs, err := w.Next(context.Background())
	if !errors.As(err, &ce) || ce.FromIndex != pos || ce.OldestIndex != 41 {
		t.Fatalf("Next after falling behind: %v, %v (%+v); want compacted from %d, oldest 41", rs, err, ce, pos)
	}
	// With no history, a watch sees only what applies from now on.
	s0 := openHistory(t, 0, 0)
	applyOne(t, s0, 1, putCmd("k", "1", kv.Condition{}))
	if _, err := s0.Watch(kv.WatchOptions{Key: []byte("k"), FromIndex: 1}); !errors.As(err, &ce) || ce.OldestIndex != 2 {
		t.Fatalf("Watch from 1 without history: %v", err)
	}
	w0, err := s0.Watch(kv.WatchOptions{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer w0.Close()
	applyOne(t, s0, 2, putCmd("k", "2", kv.Condition{}))
	if got := lines(collect(t, w0, 2)); !slices.Equal(got, []string{"2 put k c=1 m=2 v=2 val=2"}) {
		t.Fatalf("live event without history: %q", got)
	}
}

// Next blocks until an event, and returns on Close, on the store's Close
// and on its context.
func TestWatcherBlocksAndEnds(t *testing.T) {
	s := openHistory(t, 100, 0)
	w, err := s.Watch(kv.WatchOptions{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []kv.WatchResponse, 1)
	go func() {
		rs, _ := w.Next(context.Background())
		got <- rs
	}()
	applyOne(t, s, 1, putCmd("other", "x", kv.Condition{}))
	applyOne(t, s, 2, putCmd("k", "x", kv.Condition{}))
	select {
	case rs := <-got:
		if len(rs) != 1 || rs[0].Index != 2 {
			t.Fatalf("Next = %+v, want index 2 only", rs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after a matching write")
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 3)
	go func() { _, err := w.Next(ctx); errc <- err }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
	go func() { _, err := w.Next(context.Background()); errc <- err }()
	w.Close()
	if err := <-errc; !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	w2, err := s.Watch(kv.WatchOptions{Prefix: true})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, err := w2.Next(context.Background()); errc <- err }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Next after the store's Close: %v", err)
	}
	if _, err := s.Watch(kv.WatchOptions{Prefix: true}); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Watch on a closed store: %v", err)
	}
}

// Watchers reading while batches apply (the race detector watches the
// shared window), with a window small enough that they also fall behind
// it, deliver exactly what a reference store's history holds.
func TestWatchersConcurrentWithApply(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	logs := randomLog(r, 2000)
	ref := openHistory(t, 1<<20, 0)
	for _, l := range logs {
		ref.ApplyBatch([]*raft.Log{l})
	}
	s := openHistory(t, 1<<20, 4096)
	opts := []kv.WatchOptions{{Prefix: true, FromIndex: 1}, {Key: []byte("b/"), Prefix: true}, {Key: []byte("c/1"), FromIndex: 1, PrevValue: true}}
	type result struct {
		i   int
		got []kv.WatchResponse
	}
	results := make(chan result, len(opts))
	var ws []*Watcher
	for _, o := range opts {
		w, err := s.Watch(o)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
	}
	last := uint64(len(logs))
	for i, w := range ws {
		go func() {
			var got []kv.WatchResponse
			for w.Position() <= last {
				rs, err := w.Next(context.Background())
				if err != nil {
					break
				}
				got = append(got, rs...)
			}
			results <- result{i, got}
		}()
	}
	for next := 0; next < len(logs); {
		end := min(next+1+r.IntN(20), len(logs))
		s.ApplyBatch(logs[next:end])
		next = end
	}
	// A last write every watch selects, so each sees past the end.
	s.ApplyBatch([]*raft.Log{{Index: last + 1, Term: 1, Type: raft.LogCommand, Data: EncodeEntry(nil, ptrs([]Command{putCmd("b/0", "end", kv.Condition{}), putCmd("c/1", "end", kv.Condition{})}))}})
	for range ws {
		res := <-results
		o := opts[res.i]
		if o.FromIndex == 0 {
			continue // started at a moment the test does not know
		}
		wr, err := ref.Watch(o)
		if err != nil {
			t.Fatal(err)
		}
		want := collect(t, wr, last)
		wr.Close()
		got := res.got
		for len(got) > 0 && got[len(got)-1].Index > last {
			got = got[:len(got)-1]
		}
		if d := linesDiff(lines(got), lines(want)); d != "" {
			t.Fatalf("watch %+v: %s", o, d)
		}
	}
}
