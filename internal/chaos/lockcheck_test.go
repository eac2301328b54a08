package chaos

import (
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

// lockHist builds the two histories CheckLocks reads: queue puts and
// deletes (q+"name"), and puts of the guarded key "d".
type lockHist struct {
	queue, data History
	created     map[string]uint64
	version     uint64
}

const testQueue = "_raftkv/lock/l/"

func newLockHist() *lockHist {
	return &lockHist{queue: History{Prefix: testQueue, From: 1}, data: History{Prefix: "d", From: 1}, created: map[string]uint64{}}
}

// enqueue puts queue keys at index (several: one entry).
func (h *lockHist) enqueue(index uint64, names ...string) *lockHist {
	var evs []kv.Event
	for _, n := range names {
		h.created[n] = index
		evs = append(evs, kv.Event{Type: kv.EventPut, Record: kv.Record{Key: []byte(testQueue + n), Value: []byte{}, CreateIndex: index, ModIndex: index, Version: 1}})
	}
	h.queue.Responses = append(h.queue.Responses, kv.WatchResponse{Index: index, Events: evs})
	return h
}

func (h *lockHist) dequeue(index uint64, name string) *lockHist {
	h.queue.Responses = append(h.queue.Responses, kv.WatchResponse{Index: index, Events: []kv.Event{{Type: kv.EventDelete, Record: kv.Record{Key: []byte(testQueue + name), ModIndex: index}}}})
	return h
}

func (h *lockHist) write(index uint64, value string) *lockHist {
	h.version++
	h.data.Responses = append(h.data.Responses, kv.WatchResponse{Index: index, Events: []kv.Event{{Type: kv.EventPut, Record: kv.Record{Key: []byte("d"), Value: []byte(value), CreateIndex: 1, ModIndex: index, Version: h.version}}}})
	return h
}

func gw(client int, token uint64, seq int, out Outcome, mod uint64, call, ret int64) GuardedWrite {
	return GuardedWrite{Client: client, Token: token, Value: guardedValue(token, client, seq), Outcome: out, ModIndex: mod, Call: call, Return: ret}
}

func TestCheckLocks(t *testing.T) {
	// The good run: a holds (token 2), writes, releases; b waited (token
	// 3), writes; its lease ends; c (token 6) writes.
	good := func() *lockHist {
		return newLockHist().enqueue(2, "a").enqueue(3, "b").write(4, guardedValue(2, 1, 1)).
			dequeue(5, "a").enqueue(6, "c").write(7, guardedValue(3, 2, 1)).dequeue(8, "b").write(9, guardedValue(6, 3, 1))
	}
	goodAcqs := []Acquisition{
		{Client: 1, Key: testQueue + "a", Token: 2, Index: 2},
		{Client: 2, Key: testQueue + "b", Token: 3, Index: 5},
		{Client: 3, Key: testQueue + "c", Token: 6, Index: 8},
	}
	goodWrites := []GuardedWrite{gw(1, 2, 1, Ok, 4, 10, 20), gw(2, 3, 1, Ok, 7, 30, 40), gw(3, 6, 1, Unknown, 0, 50, 60)}
	tests := []struct {
		name   string
		hist   *lockHist
		acqs   []Acquisition
		writes []GuardedWrite
		want   []string // substrings, one per problem; none: passes
	}{
		{"good", good(), goodAcqs, goodWrites, nil},
		{"one token writes twice", good().write(10, guardedValue(6, 3, 2)), goodAcqs,
			append(slices.Clone(goodWrites), gw(3, 6, 2, Ok, 10, 70, 80)),
			[]string{"index 10: the guarded write \"t6 c3 s2\" has token 6, not above the token 6 of the guarded write at index 9"}},
		{"a refused write, the paused holder's too", good(), goodAcqs,
			append(slices.Clone(goodWrites), gw(1, 2, 2, PreconditionFailed, 0, 90, 95),
				GuardedWrite{Client: 100, Token: 3, Value: guardedValue(3, 100, 1), Outcome: PreconditionFailed, Stale: true}), nil},
		{"stale token applied", good().write(10, guardedValue(3, 2, 2)), goodAcqs,
			append(slices.Clone(goodWrites), gw(2, 3, 2, Unknown, 0, 70, 80)),
			[]string{"index 10: the guarded write \"t3 c2 s2\" (token 3) applied while the lock was held by _raftkv/lock/l/c (token 6)", "not above the token 6"}},
		// What the harness found (docs/chaos.md, "Mutual exclusion"):
		// group commit put two waiters' keys in one entry.
		{"two waiters created in one entry share a token", newLockHist().enqueue(2, "a", "b").write(3, guardedValue(2, 1, 1)).dequeue(4, "a").write(5, guardedValue(2, 2, 1)),
			[]Acquisition{{Client: 1, Key: testQueue + "a", Token: 2, Index: 2}, {Client: 2, Key: testQueue + "b", Token: 2, Index: 4}},
			[]GuardedWrite{gw(1, 2, 1, Ok, 3, 1, 2), gw(2, 2, 1, Ok, 5, 3, 4)},
			[]string{"index 2: queue keys _raftkv/lock/l/a and _raftkv/lock/l/b share create_index 2", "index 5: the guarded write \"t2 c2 s1\" has token 2, not above the token 2", "real time"}},
		{"a write answered 412 applied", good(), goodAcqs,
			[]GuardedWrite{gw(1, 2, 1, Ok, 4, 10, 20), gw(2, 3, 1, PreconditionFailed, 0, 30, 40), gw(3, 6, 1, Ok, 9, 50, 60)},
			[]string{"\"t3 c2 s1\" (client 2, token 3) applied, but its client was answered 412"}},
		{"the paused holder's write applied", good(), goodAcqs,
			[]GuardedWrite{gw(1, 2, 1, Ok, 4, 10, 20), {Client: 2, Token: 3, Value: guardedValue(3, 2, 1), Outcome: Unknown, Stale: true}, gw(3, 6, 1, Ok, 9, 50, 60)},
			[]string{"the paused holder's write \"t3 c2 s1\""}},
		{"an acknowledged write lost", good(), goodAcqs,
			append(slices.Clone(goodWrites), gw(3, 6, 2, Ok, 10, 70, 80)),
			[]string{"\"t6 c3 s2\" (client 3, token 6) was answered 200 with mod_index 10, but it is not in the history"}},
		{"acknowledged at another index", good(), goodAcqs,
			[]GuardedWrite{gw(1, 2, 1, Ok, 5, 10, 20), goodWrites[1], goodWrites[2]},
			[]string{"applied here, but was answered mod_index 5"}},
		{"a value nobody sent", good().write(10, "junk"), goodAcqs, goodWrites,
			[]string{"holds \"junk\", which is no guarded write's value"}},
		{"an acquisition that did not hold", good(),
			append(slices.Clone(goodAcqs), Acquisition{Client: 4, Key: testQueue + "c", Token: 6, Index: 7}),
			goodWrites,
			[]string{"client 4 was told it held the lock with _raftkv/lock/l/c (token 6) at index 7, but the lock was held by _raftkv/lock/l/b (token 3)"}},
		{"real time: a lower token acknowledged after a higher one", good(), goodAcqs,
			[]GuardedWrite{gw(1, 2, 1, Ok, 4, 50, 60), gw(2, 3, 1, Ok, 7, 10, 20), goodWrites[2]},
			[]string{"real time: the guarded write \"t2 c1 s1\" (client 1, token 2) was answered 200, though \"t3 c2 s1\""}},
		{"the queue breaks the store's rules", good().dequeue(11, "zz"), goodAcqs, goodWrites,
			[]string{"queue key _raftkv/lock/l/zz deleted, but it was not there"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lc := CheckLocks(tt.hist.queue, tt.hist.data, "d", tt.acqs, tt.writes, guardedToken)
			if len(lc.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n  %s", len(lc.Problems), len(tt.want), strings.Join(lc.Problems, "\n  "))
			}
			for i, w := range tt.want {
				if !strings.Contains(lc.Problems[i], w) {
					t.Errorf("problem %d: %s\n  want it to say: %s", i, lc.Problems[i], w)
				}
			}
		})
	}
}

// The holders in committed order, who was told of each, and handoffs.
func TestCheckLocksHolders(t *testing.T) {
	h := newLockHist().enqueue(2, "a").enqueue(3, "b").dequeue(4, "a").dequeue(5, "b").enqueue(6, "x").dequeue(7, "x").enqueue(8, "a")
	acqs := []Acquisition{
		{Client: 1, Key: testQueue + "a", Token: 2, Index: 2},
		{Client: 2, Key: testQueue + "b", Token: 3, Index: 4},
		{Client: 1, Key: testQueue + "a", Token: 8, Index: 8},
	}
	lc := CheckLocks(h.queue, h.data, "d", acqs, nil, guardedToken)
	if len(lc.Problems) > 0 {
		t.Fatalf("problems: %v", lc.Problems)
	}
	want := []Holder{
		{Key: testQueue + "a", Token: 2, From: 2, Client: 1},
		{Key: testQueue + "b", Token: 3, From: 4, Client: 2, Waited: true},
		{Key: testQueue + "x", Token: 6, From: 6, Client: -1},
		{Key: testQueue + "a", Token: 8, From: 8, Client: 1},
	}
	if !slices.Equal(lc.Holders, want) {
		t.Fatalf("holders:\n  %+v\nwant\n  %+v", lc.Holders, want)
	}
	held, waited, handoffs := holdersByClient(lc.Holders)
	if held[1] != 2 || held[2] != 1 || held[-1] != 1 || waited[2] != 1 || handoffs[1] != 1 || handoffs[2] != 1 || handoffs[-1] != 1 {
		t.Fatalf("held %v waited %v handoffs %v", held, waited, handoffs)
	}
}

func TestGuardedValue(t *testing.T) {
	for _, v := range []string{guardedValue(1, 0, 1), guardedValue(1<<60, 100, 99999)} {
		if _, ok := guardedToken(v); !ok {
			t.Errorf("guardedToken(%q) failed", v)
		}
	}
	for _, v := range []string{"", "t1 c2", "t1 c2 s3 x", "x1 c2 s3", "t01 c2 s3"} {
		if tok, ok := guardedToken(v); ok {
			t.Errorf("guardedToken(%q) = %d, want a failure", v, tok)
		}
	}
}
