package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/kv"
)

// The watch check (docs/chaos.md, "Watches"): what every watcher received
// must be exactly the committed history of its key range, and that history
// must be exactly what the clients wrote. Everything here is pure: it
// compares recorded streams, so its failures can be tested without a
// cluster (watchcheck_test.go).

// WatchStream is what one watcher received, every response in the order it
// arrived, across every stream it opened.
type WatchStream struct {
	// Name says which watcher it is ("n2 over HTTP", "client, prefix w/t/").
	Name string
	// Opts are the watch's key range, its start (FromIndex, never 0 here)
	// and whether it asked for previous records.
	Opts kv.WatchOptions
	// Responses are the responses received, progress notifications
	// included.
	Responses []kv.WatchResponse
	// Opens lists the streams the watcher opened, in order (a watcher
	// through the Go client opens its streams itself: none are listed).
	Opens []StreamOpen
	// End is what ended the watch before the harness stopped it: a
	// *kv.CompactedError, or another error. Nil when the harness stopped it.
	End error
	// AllowCompacted accepts a compacted End: the test set the history
	// small on purpose. Otherwise a compacted end is a failure.
	AllowCompacted bool
	// Retired says the harness stopped the watch early on purpose (its
	// node left the cluster): what it delivered is checked, but it need
	// not have reached the end of its range.
	Retired bool
}

// StreamOpen is one stream a watcher opened.
type StreamOpen struct {
	// First is the position in Responses of the first response this
	// stream delivered.
	First int
	// From is the from_index it asked for (0: none, a watch from now).
	From uint64
	// After is the stream's X-Raft-Index: the index it starts after
	// (From-1, or for a watch from now the node's applied index then).
	After uint64
	// At is when it opened (the round's clock, ms).
	At float64
	// Ended says how the stream ended.
	Ended string
}

// Reached is the highest index the watcher has delivered (events or
// progress), 0 when nothing.
func (s *WatchStream) Reached() uint64 {
	var m uint64
	for _, r := range s.Responses {
		m = max(m, r.Index)
	}
	return m
}

// History is the committed history of the keys under Prefix (a watch of
// the prefix with previous records) from index From through Through.
type History struct {
	Prefix        string
	From, Through uint64
	Responses     []kv.WatchResponse
}

// Select returns the responses of the indexes from..to (inclusive) with
// the events opts selects, previous records only if opts asks for them.
// Indexes with no selected event are left out.
func (h History) Select(opts kv.WatchOptions, from, to uint64) []kv.WatchResponse {
	var out []kv.WatchResponse
	for _, r := range h.Responses {
		if r.Index < from || r.Index > to {
			continue
		}
		var evs []kv.Event
		for _, e := range r.Events {
			if !opts.Matches(e.Key) {
				continue
			}
			if !opts.PrevValue {
				e.Prev = nil
			}
			evs = append(evs, e)
		}
		if len(evs) > 0 {
			out = append(out, kv.WatchResponse{Index: r.Index, Events: evs})
		}
	}
	return out
}

// LastIndex is the last index in from..Through with an event opts
// selects, 0 when none.
func (h History) LastIndex(opts kv.WatchOptions, from uint64) uint64 {
	sel := h.Select(opts, from, h.Through)
	if len(sel) == 0 {
		return 0
	}
	return sel[len(sel)-1].Index
}

// CheckStream compares what a watcher received with the history: from its
// start index through the last index it reached (capped at h.Through),
// its responses with events must be exactly the history's responses of
// its key range, index by index and event by event (type, key, value,
// create_index, mod_index, version, and prev when it asked for it): no
// gap, no duplicate, no index going backwards. It must have reached the
// last index of its range in the history (it caught up), and must not
// have ended with compacted unless allowed. The error names the first
// difference with both sides.
func CheckStream(h History, s *WatchStream) error {
	from := s.Opts.FromIndex
	if from == 0 || from < h.From {
		return fmt.Errorf("watcher %s: started at index %d, which the history (from %d) does not cover", s.Name, from, h.From)
	}
	if !strings.HasPrefix(string(s.Opts.Key), h.Prefix) {
		return fmt.Errorf("watcher %s: its range is not under the history's prefix %q", s.Name, h.Prefix)
	}
	for k, op := range s.Opens {
		if op.From > 0 && op.After != op.From-1 {
			return fmt.Errorf("watcher %s: stream %d (opened at %.0fms) asked for from_index=%d and answered X-Raft-Index %d; it starts after %d",
				s.Name, k+1, op.At, op.From, op.After, op.From-1)
		}
	}
	// Order first: a stream's indexes only go up.
	var last uint64 // the last index delivered (events or progress)
	var got []kv.WatchResponse
	for i, r := range s.Responses {
		if r.IsProgress() {
			if i > 0 && r.Index < last {
				return fmt.Errorf("watcher %s: progress at index %d after index %d was delivered (response #%d%s): indexes went backwards",
					s.Name, r.Index, last, i, s.openOf(i))
			}
			last = max(last, r.Index)
			continue
		}
		switch {
		case r.Index < from:
			return fmt.Errorf("watcher %s: got index %d, before its start index %d (response #%d%s): %s",
				s.Name, r.Index, from, i, s.openOf(i), responseString(r))
		case i > 0 && r.Index <= last:
			what := "went backwards"
			if r.Index == last {
				what = "was delivered twice"
			}
			return fmt.Errorf("watcher %s: index %d %s: response #%d%s came after index %d: %s",
				s.Name, r.Index, what, i, s.openOf(i), last, responseString(r))
		}
		last = r.Index
		if r.Index <= h.Through {
			got = append(got, r)
		}
	}
	reached := min(last, h.Through)
	want := h.Select(s.Opts, from, reached)
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			w := want[i]
			return fmt.Errorf("watcher %s: gap: index %d is missing; the watcher delivered up to %d.\n  history: %s",
				s.Name, w.Index, reached, responseString(w))
		case i >= len(want):
			g := got[i]
			return fmt.Errorf("watcher %s: index %d is not in the committed history of its range (response %s).\n  watcher: %s\n  history: nothing at %d",
				s.Name, g.Index, s.where(g.Index), responseString(g), g.Index)
		}
		g, w := got[i], want[i]
		switch {
		case g.Index > w.Index:
			prev := "its start"
			if i > 0 {
				prev = fmt.Sprint(got[i-1].Index)
			}
			return fmt.Errorf("watcher %s: gap: index %d is missing; the watcher went from %s to %d (response %s).\n  watcher: nothing at %d, then %s\n  history: %s",
				s.Name, w.Index, prev, g.Index, s.where(g.Index), w.Index, responseString(g), responseString(w))
		case g.Index < w.Index:
			return fmt.Errorf("watcher %s: index %d is not in the committed history of its range (response %s); the next index there is %d.\n  watcher: %s\n  history: nothing at %d, then %s",
				s.Name, g.Index, s.where(g.Index), w.Index, responseString(g), g.Index, responseString(w))
		case !eventsEqual(g.Events, w.Events):
			return fmt.Errorf("watcher %s: the events of index %d differ (response %s).\n  watcher: %s\n  history: %s",
				s.Name, g.Index, s.where(g.Index), responseString(g), responseString(w))
		}
	}
	if s.End != nil {
		var ce *kv.CompactedError
		if !errors.As(s.End, &ce) || !s.AllowCompacted {
			return fmt.Errorf("watcher %s: ended at index %d with %v (the history kept should be large enough for the run: a finding)", s.Name, last, s.End)
		}
		return nil
	}
	if end := h.LastIndex(s.Opts, from); end > reached && !s.Retired {
		return fmt.Errorf("watcher %s: never caught up: it delivered up to index %d, the history of its range goes on to %d.\n  history: %s",
			s.Name, reached, end, responseString(h.Select(s.Opts, reached+1, end)[0]))
	}
	return nil
}

// openOf describes the stream that delivered response i.
func (s *WatchStream) openOf(i int) string {
	o := -1
	for j, op := range s.Opens {
		if op.First <= i {
			o = j
		}
	}
	if o < 0 {
		return ""
	}
	op := s.Opens[o]
	return fmt.Sprintf(", stream %d opened at %.0fms from_index=%d", o+1, op.At, op.From)
}

// where describes the response at index idx: its position and stream.
func (s *WatchStream) where(idx uint64) string {
	for i, r := range s.Responses {
		if r.Index == idx && !r.IsProgress() {
			return fmt.Sprintf("#%d%s", i, s.openOf(i))
		}
	}
	return "?"
}

// CompareHistories compares two nodes' histories index by index through
// the lower of their Through; the error names the first difference.
func CompareHistories(aName string, a History, bName string, b History) error {
	through := min(a.Through, b.Through)
	from := max(a.From, b.From)
	sa := a.Select(kv.WatchOptions{Prefix: true, PrevValue: true}, from, through)
	sb := b.Select(kv.WatchOptions{Prefix: true, PrevValue: true}, from, through)
	for i := 0; i < len(sa) || i < len(sb); i++ {
		var ra, rb *kv.WatchResponse
		if i < len(sa) {
			ra = &sa[i]
		}
		if i < len(sb) {
			rb = &sb[i]
		}
		if ra != nil && rb != nil && ra.Index == rb.Index && eventsEqual(ra.Events, rb.Events) {
			continue
		}
		idx := uint64(0)
		switch {
		case ra == nil:
			idx = rb.Index
		case rb == nil:
			idx = ra.Index
		default:
			idx = min(ra.Index, rb.Index)
		}
		show := func(r *kv.WatchResponse) string {
			if r == nil || r.Index != idx {
				return fmt.Sprintf("nothing at %d", idx)
			}
			return responseString(*r)
		}
		return fmt.Errorf("the nodes' histories differ at index %d:\n  %s: %s\n  %s: %s", idx, aName, show(ra), bName, show(rb))
	}
	return nil
}

// eventsEqual compares two event lists field by field.
func eventsEqual(a, b []kv.Event) bool {
	return slices.EqualFunc(a, b, func(x, y kv.Event) bool {
		if x.Type != y.Type || !recordEqual(x.Record, y.Record) {
			return false
		}
		if (x.Prev == nil) != (y.Prev == nil) {
			return false
		}
		return x.Prev == nil || recordEqual(*x.Prev, *y.Prev)
	})
}

func recordEqual(a, b kv.Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.CreateIndex == b.CreateIndex && a.ModIndex == b.ModIndex && a.Version == b.Version
}

// responseString is a response as its NDJSON line.
func responseString(r kv.WatchResponse) string {
	b, err := json.Marshal(kv.EncodeWatchResponse(r))
	if err != nil {
		return fmt.Sprintf("%+v", r)
	}
	return string(b)
}

// ---- the history against the state machine's rules and the clients ----

// WriteKind is what a client write did.
type WriteKind uint8

// The writes the clients send.
const (
	WritePut          WriteKind = iota // PUT, plain or conditional
	WriteDelete                        // DELETE of one key
	WriteDeletePrefix                  // DELETE ?prefix
	WriteTxn                           // POST /v1/txn
)

// TxnStep is one op of a transaction: put (Value), delete, or
// delete_prefix (Key is the prefix).
type TxnStep struct {
	Kind  WriteKind // WritePut, WriteDelete or WriteDeletePrefix
	Key   string
	Value string
}

// SentWrite is one write a client sent and what it learned of it.
type SentWrite struct {
	// Who sent it, for messages: the process and node.
	Who  string
	Kind WriteKind
	// Key is the key (the prefix of a prefix delete); Value a put's value.
	Key, Value string
	// IfExists, for a transaction, is its one compare (exists = true on
	// this key); empty: no compare, the success ops always run.
	IfExists string
	// Success and Failure are a transaction's ops.
	Success, Failure []TxnStep

	Outcome Outcome
	// For Outcome Ok: Index is the write's raft index (a put's mod_index,
	// a delete's or transaction's index); a put's CreateIndex and Version,
	// a delete's Deleted, a transaction's Succeeded, as answered.
	Index       uint64
	CreateIndex uint64
	Version     uint64
	Deleted     int64
	Succeeded   bool
}

func (w SentWrite) String() string {
	var s string
	switch w.Kind {
	case WritePut:
		s = fmt.Sprintf("put %s=%s", w.Key, w.Value)
	case WriteDelete:
		s = "delete " + w.Key
	case WriteDeletePrefix:
		s = "delete prefix " + w.Key
	case WriteTxn:
		s = "txn"
		if w.IfExists != "" {
			s += " if exists(" + w.IfExists + ")"
		}
		s += " then " + stepsString(w.Success) + " else " + stepsString(w.Failure)
	}
	s += " by " + w.Who + " -> " + w.Outcome.String()
	if w.Outcome == Ok {
		s += fmt.Sprintf(" at index %d", w.Index)
	}
	return s
}

func stepsString(steps []TxnStep) string {
	var parts []string
	for _, st := range steps {
		switch st.Kind {
		case WritePut:
			parts = append(parts, fmt.Sprintf("put %s=%s", st.Key, st.Value))
		case WriteDelete:
			parts = append(parts, "delete "+st.Key)
		case WriteDeletePrefix:
			parts = append(parts, "delete_prefix "+st.Key)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// steps is the write as transaction ops of the branch that runs on state.
func (w SentWrite) steps(state map[string]kv.Record) []TxnStep {
	switch w.Kind {
	case WritePut:
		return []TxnStep{{Kind: WritePut, Key: w.Key, Value: w.Value}}
	case WriteDelete:
		return []TxnStep{{Kind: WriteDelete, Key: w.Key}}
	case WriteDeletePrefix:
		return []TxnStep{{Kind: WriteDeletePrefix, Key: w.Key}}
	}
	if w.IfExists == "" {
		return w.Success
	}
	if _, ok := state[w.IfExists]; ok {
		return w.Success
	}
	return w.Failure
}

// simulateSteps returns the events steps make on state at index (state is not
// changed), as the state machine records them: a put event with the new
// record, a delete event per key removed (a prefix delete in key order),
// each with the record it replaced.
func simulateSteps(state map[string]kv.Record, steps []TxnStep, index uint64) []kv.Event {
	st := make(map[string]kv.Record, len(state))
	for k, v := range state {
		st[k] = v
	}
	var out []kv.Event
	del := func(k string) {
		cur, ok := st[k]
		if !ok {
			return
		}
		prev := cur
		out = append(out, kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: []byte(k), ModIndex: index}, Prev: &prev})
		delete(st, k)
	}
	for _, s := range steps {
		switch s.Kind {
		case WritePut:
			rec := kv.Record{Key: []byte(s.Key), Value: []byte(s.Value), CreateIndex: index, ModIndex: index, Version: 1}
			var prev *kv.Record
			if cur, ok := st[s.Key]; ok {
				rec.CreateIndex, rec.Version = cur.CreateIndex, cur.Version+1
				p := cur
				prev = &p
			}
			st[s.Key] = rec
			out = append(out, kv.Event{Type: kv.EventPut, Record: rec, Prev: prev})
		case WriteDelete:
			del(s.Key)
		case WriteDeletePrefix:
			var keys []string
			for k := range st {
				if strings.HasPrefix(k, s.Key) {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				del(k)
			}
		}
	}
	return out
}

// HistoryCheck is the outcome of CheckHistory.
type HistoryCheck struct {
	// State is every key after the history's last index.
	State map[string]kv.Record
	// Problems lists every violation found (at most a few per kind).
	Problems []string
	// Stats summarizes what was checked.
	Stats string
}

// CheckHistory checks a history that starts at index 1 (h.From == 1),
// read with previous records, against the state machine's rules and
// against the clients' writes (those under h.Prefix):
//
//   - every event of index i has mod_index i; a put makes version +1 and
//     keeps create_index (version 1 and create_index i for a new key); a
//     delete removes an existing key (create_index and version 0 on the
//     wire); each event's prev is exactly the key's record before it;
//   - every write acknowledged (200) is there at its index: a put with its
//     value, create_index and version; a delete's event (or none, when it
//     deleted nothing); a prefix delete's and a transaction's events
//     exactly as they would apply to the state before that index (a
//     transaction and a prefix delete are alone in their entry);
//   - on the clients' keys (owned: a key is owned when it is in keys or
//     under one of prefixes), every put's value is one a client sent, by
//     a write whose outcome was ok (at its index) or unknown, never one
//     answered "not applied" or 412, and appears at most once; a
//     transaction of unknown outcome that shows is applied whole, as it
//     would apply; a delete no acknowledged write explains needs an
//     unknown-outcome write that could have made it.
func CheckHistory(h History, writes []SentWrite, keys []string, prefixes []string) HistoryCheck {
	var res HistoryCheck
	problem := func(kind string, format string, args ...any) {
		n := 0
		for _, p := range res.Problems {
			if strings.HasPrefix(p, kind+":") {
				n++
			}
		}
		if n < 5 {
			res.Problems = append(res.Problems, kind+": "+fmt.Sprintf(format, args...))
		}
	}
	owned := func(k string) bool {
		return strings.HasPrefix(k, h.Prefix) &&
			(slices.Contains(keys, k) || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) }))
	}
	if h.From != 1 {
		problem("history", "starts at index %d, not 1: the clients' writes cannot be checked", h.From)
		return res
	}
	// The writes whose every key lies under the history's prefix.
	writes = slices.DeleteFunc(slices.Clone(writes), func(w SentWrite) bool {
		steps := append(append([]TxnStep{{Kind: w.Kind, Key: w.Key}}, w.Success...), w.Failure...)
		if w.Kind == WriteTxn {
			steps = steps[1:]
		}
		return slices.ContainsFunc(steps, func(s TxnStep) bool { return !strings.HasPrefix(s.Key, h.Prefix) })
	})

	// What the clients sent, by value and by index.
	byValue := map[string]int{} // value -> index in writes
	atIndex := map[uint64][]int{}
	unknownDeleters := map[string]int{} // owned key -> unknown writes that may delete it
	for i, w := range writes {
		for _, st := range append(append([]TxnStep{{Kind: w.Kind, Key: w.Key, Value: w.Value}}, w.Success...), w.Failure...) {
			if st.Kind == WritePut {
				byValue[st.Value] = i
			}
		}
		if w.Outcome == Ok {
			atIndex[w.Index] = append(atIndex[w.Index], i)
		}
	}
	mayDelete := func(w SentWrite, key string) bool {
		steps := []TxnStep{{Kind: w.Kind, Key: w.Key}}
		if w.Kind == WriteTxn {
			steps = append(slices.Clone(w.Success), w.Failure...)
		}
		return slices.ContainsFunc(steps, func(s TxnStep) bool {
			return (s.Kind == WriteDelete && s.Key == key) || (s.Kind == WriteDeletePrefix && strings.HasPrefix(key, s.Key))
		})
	}

	// Replay, checking each index against the rules and the writes.
	state := map[string]kv.Record{}
	seen := map[string]uint64{} // owned put values -> index
	unexplained := map[string][]uint64{}
	indexes := []uint64{}
	byIndex := map[uint64]kv.WatchResponse{}
	var last uint64
	events := 0
	for _, r := range h.Responses {
		if r.Index <= last && last != 0 {
			problem("order", "index %d after index %d", r.Index, last)
			continue
		}
		last = r.Index
		if r.Index > h.Through {
			break
		}
		byIndex[r.Index] = r
		indexes = append(indexes, r.Index)
	}
	for idx := range atIndex {
		if idx >= h.From && idx <= h.Through {
			if _, ok := byIndex[idx]; !ok {
				indexes = append(indexes, idx)
			}
		}
	}
	slices.Sort(indexes)
	indexes = slices.Compact(indexes)
	appeared := map[int]bool{} // unknown-outcome transactions that show
	for _, idx := range indexes {
		r, ok := byIndex[idx]
		if !ok {
			r = kv.WatchResponse{Index: idx}
		}
		events += len(r.Events)
		// Writes that must be whole at this index: acknowledged
		// transactions and prefix deletes here, and unknown-outcome
		// transactions whose values show here.
		whole := map[int]bool{}
		for _, wi := range atIndex[idx] {
			if k := writes[wi].Kind; k == WriteTxn || k == WriteDeletePrefix {
				whole[wi] = true
			}
		}
		for _, e := range r.Events {
			if e.Type == kv.EventPut && owned(string(e.Key)) {
				if wi, ok := byValue[string(e.Value)]; ok && writes[wi].Kind == WriteTxn && writes[wi].Outcome == Unknown {
					whole[wi] = true
					appeared[wi] = true
				}
			}
		}
		for wi := range whole {
			w := writes[wi]
			want := simulateSteps(state, w.steps(state), idx)
			if !eventsEqual(r.Events, want) {
				problem("write", "%s: the events at index %d are not what it makes on the state before it.\n    history: %s\n    expected: %s",
					w, idx, responseString(r), responseString(kv.WatchResponse{Index: idx, Events: want}))
			}
			if w.Kind == WriteDeletePrefix && int64(len(want)) != w.Deleted {
				problem("write", "%s: answered deleted=%d, but %d keys were under the prefix before index %d", w, w.Deleted, len(want), idx)
			}
			if w.Kind == WriteTxn && w.Outcome == Ok && w.IfExists != "" && w.Succeeded != hasKey(state, w.IfExists) {
				problem("write", "%s: answered succeeded=%v, but exists(%s) was %v before index %d", w, w.Succeeded, w.IfExists, hasKey(state, w.IfExists), idx)
			}
		}
		// Acknowledged single-key writes at this index.
		for _, wi := range atIndex[idx] {
			w := writes[wi]
			var mine []kv.Event
			for _, e := range r.Events {
				if string(e.Key) == w.Key {
					mine = append(mine, e)
				}
			}
			switch w.Kind {
			case WritePut:
				want := kv.Record{Key: []byte(w.Key), Value: []byte(w.Value), CreateIndex: w.CreateIndex, ModIndex: w.Index, Version: w.Version}
				if len(mine) != 1 || mine[0].Type != kv.EventPut || !recordEqual(mine[0].Record, want) {
					problem("acknowledged", "%s (create_index %d, version %d) is not in the history at its index.\n    history: %s",
						w, w.CreateIndex, w.Version, responseString(r))
				}
			case WriteDelete:
				if w.Deleted == 1 && (len(mine) != 1 || mine[0].Type != kv.EventDelete) || w.Deleted == 0 && len(mine) != 0 {
					problem("acknowledged", "%s (deleted %d) does not match the history at its index.\n    history: %s", w, w.Deleted, responseString(r))
				}
			}
		}
		// The events against the rules, and the owned keys' values.
		for i, e := range r.Events {
			k := string(e.Key)
			cur, exists := state[k]
			if e.ModIndex != idx {
				problem("rules", "index %d event %d (%s %s) has mod_index %d", idx, i, e.Type, k, e.ModIndex)
			}
			var prev *kv.Record
			if exists {
				p := cur
				prev = &p
			}
			if (e.Prev == nil) != (prev == nil) || e.Prev != nil && !recordEqual(*e.Prev, *prev) {
				problem("rules", "index %d event %d (%s %s): prev %s, but the key held %s", idx, i, e.Type, k, recordString(e.Prev), recordString(prev))
			}
			switch e.Type {
			case kv.EventPut:
				wantCreate, wantVersion := idx, uint64(1)
				if exists {
					wantCreate, wantVersion = cur.CreateIndex, cur.Version+1
				}
				if e.CreateIndex != wantCreate || e.Version != wantVersion {
					problem("rules", "index %d event %d (put %s): create_index %d version %d; after %s it must be create_index %d version %d",
						idx, i, k, e.CreateIndex, e.Version, recordString(prev), wantCreate, wantVersion)
				}
				state[k] = kv.Record{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex, Version: e.Version}
			case kv.EventDelete:
				if !exists {
					problem("rules", "index %d event %d: delete of %s, which did not exist", idx, i, k)
				}
				if e.CreateIndex != 0 || e.Version != 0 || len(e.Value) != 0 {
					problem("rules", "index %d event %d: delete of %s carries create_index %d, version %d, value %q", idx, i, k, e.CreateIndex, e.Version, e.Value)
				}
				delete(state, k)
			default:
				problem("rules", "index %d event %d: unknown type %q", idx, i, e.Type)
			}
			if !owned(k) {
				continue
			}
			switch e.Type {
			case kv.EventPut:
				v := string(e.Value)
				wi, ok := byValue[v]
				if !ok {
					problem("unsent", "index %d: %s=%q, a value no client sent", idx, k, v)
					break
				}
				w := writes[wi]
				if at, dup := seen[v]; dup {
					problem("twice", "index %d: %s=%q was already written at index %d (%s)", idx, k, v, at, w)
				}
				seen[v] = idx
				switch w.Outcome {
				case Ok:
					if w.Index != idx {
						problem("acknowledged", "%s shows at index %d instead", w, idx)
					}
				case Unknown:
				default:
					problem("not-applied", "index %d: %s=%q, written by %s", idx, k, v, w)
				}
			case kv.EventDelete:
				explained := false
				for _, wi := range atIndex[idx] {
					if mayDelete(writes[wi], k) {
						explained = true
					}
				}
				for wi := range whole {
					if mayDelete(writes[wi], k) {
						explained = true
					}
				}
				if !explained {
					unexplained[k] = append(unexplained[k], idx)
				}
			}
		}
	}
	for i, w := range writes {
		if w.Outcome != Unknown || appeared[i] {
			continue
		}
		for k := range unexplained {
			if mayDelete(w, k) {
				unknownDeleters[k]++
			}
		}
	}
	for k, idxs := range unexplained {
		if len(idxs) > unknownDeleters[k] {
			problem("unsent", "%s deleted at indexes %v, %d times more than the deletes of unknown outcome that could have done it (%d)",
				k, idxs, len(idxs)-unknownDeleters[k], unknownDeleters[k])
		}
	}
	// Acknowledged writes the history does not reach are missing too.
	for _, w := range writes {
		if w.Outcome == Ok && w.Index > h.Through {
			problem("acknowledged", "%s is after the history's end (%d)", w, h.Through)
		}
	}
	res.State = state
	counts := map[Outcome]int{}
	for _, w := range writes {
		counts[w.Outcome]++
	}
	res.Stats = fmt.Sprintf("%d indexes with %d events through %d; %d client writes (%d ok, %d unknown, %d not applied, %d 412), %d of their values in the history",
		len(byIndex), events, h.Through, len(writes), counts[Ok], counts[Unknown], counts[NotApplied], counts[PreconditionFailed], len(seen))
	return res
}

func hasKey(state map[string]kv.Record, k string) bool {
	_, ok := state[k]
	return ok
}

func recordString(r *kv.Record) string {
	if r == nil {
		return "nothing"
	}
	return fmt.Sprintf("{value %q create_index %d mod_index %d version %d}", r.Value, r.CreateIndex, r.ModIndex, r.Version)
}

// CompareState compares the history's final state with a node's listing
// of every key (at the history's last index); the error lists the first
// few differences.
func CompareState(node string, want map[string]kv.Record, got []kv.Record) error {
	var diffs []string
	have := map[string]bool{}
	for _, r := range got {
		k := string(r.Key)
		have[k] = true
		w, ok := want[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s holds %s; the history has no such key", k, recordString(&r)))
		case !recordEqual(w, r):
			diffs = append(diffs, fmt.Sprintf("%s holds %s; the history says %s", k, recordString(&r), recordString(&w)))
		}
	}
	for k, w := range want {
		if !have[k] {
			diffs = append(diffs, fmt.Sprintf("%s is absent; the history says %s", k, recordString(&w)))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	slices.Sort(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("… and %d more", len(diffs)-5))
	}
	return fmt.Errorf("%s's keys differ from the replayed history:\n  %s", node, strings.Join(diffs, "\n  "))
}
