package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// feed applies logs to s in batches whose sizes sizes gives, in turn.
func feed(s *Store, logs []*raft.Log, sizes func(next uint64) int) []interface{} {
	var out []interface{}
	for i := 0; i < len(logs); {
		n := min(max(sizes(logs[i].Index), 1), len(logs)-i)
		out = append(out, s.ApplyBatch(logs[i:i+n])...)
		i += n
	}
	return out
}

// raft cuts the same log into different batches on the leader, on a
// follower catching up, and on a node replaying its log: where a batch ends
// must never change what a retry past the window does. Here the retry is
// 100,001 indexes after the first attempt, one past the window: it applies
// again on every store, however the log is cut.
func TestIdempotencyExpiryIgnoresBatchBoundaries(t *testing.T) {
	put := putCmd("k", "v", kv.Condition{})
	put.IdemKey = []byte("req")
	last := uint64(IdempotencyWindow + 2)
	logs := make([]*raft.Log, 0, last)
	logs = append(logs, entry(1, put))
	for i := uint64(2); i < last; i++ {
		logs = append(logs, entry(i, putCmd(fmt.Sprintf("o/%d", i%64), "x", kv.Condition{})))
	}
	logs = append(logs, entry(last, put))

	alone, inside := openTemp(t), openTemp(t)
	// In chunks of 256, the retry alone in the last batch.
	ra := feed(alone, logs, func(next uint64) int {
		if next == last {
			return 1
		}
		return int(min(256, last-next))
	})
	// In chunks of 256 up to a large last batch that holds the retry.
	ri := feed(inside, logs, func(next uint64) int {
		if next > last-5000 {
			return int(last - next + 1)
		}
		return 256
	})

	for name, res := range map[string]*Result{"alone": first(ra[len(ra)-1]), "inside a batch": first(ri[len(ri)-1])} {
		if res.Replayed || res.Err != nil || res.Put.Version != 2 || res.Put.ModIndex != last {
			t.Errorf("retry %s, one index past the window: %+v; want applied anew (version 2 at %d)", name, res, last)
		}
	}
	da, err := alone.Digest()
	if err != nil {
		t.Fatal(err)
	}
	di, err := inside.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if da != di {
		t.Errorf("digests differ with the batch boundaries: %+v vs %+v", da, di)
	}
	if a, i := fullState(t, alone), fullState(t, inside); a != i {
		t.Errorf("full states differ with the batch boundaries:\n%s\n%s", a, i)
	}
}

// The window's exact edges, and a record replaced after its expiry, under
// every way of cutting the log into batches: a retry at most window
// indexes after the entry that used the key is answered from the record,
// one index later it applies anew, and the new record is then answered for
// a full window of its own (the old record's idem_exp entry, expiring
// meanwhile, must not delete it).
func TestIdempotencyWindowEdges(t *testing.T) {
	const window = 10
	put := putCmd("k", "v", kv.Condition{})
	put.IdemKey = []byte("A")
	other := putCmd("k", "other", kv.Condition{})
	other.IdemKey = []byte("A")
	type want struct {
		replayed bool
		reused   bool
		mod      uint64 // the Put's ModIndex (the first attempt's when replayed)
		version  uint64
	}
	steps := map[uint64]struct {
		cmd  Command
		want want
	}{
		1:  {put, want{mod: 1, version: 1}},
		11: {put, want{replayed: true, mod: 1, version: 1}},  // 10 after: inside
		12: {put, want{mod: 12, version: 2}},                 // 11 after: applies anew
		21: {put, want{replayed: true, mod: 12, version: 2}}, // the new record holds
		22: {other, want{reused: true}},                      // 10 after 12: still the key of put
		23: {other, want{mod: 23, version: 3}},               // 11 after 12: a fresh key
		33: {put, want{reused: true}},                        // 10 after 23: other's key now
		34: {put, want{mod: 34, version: 4}},                 // 11 after 23
		60: {Command{Op: OpNoop}, want{}},                    // long after: 34's record expires
		61: {other, want{mod: 61, version: 5}},
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 61; i++ {
		if st, ok := steps[i]; ok {
			logs = append(logs, entry(i, st.cmd))
		} else {
			logs = append(logs, entry(i, putCmd(fmt.Sprintf("o/%d", i%4), "x", kv.Condition{})))
		}
	}
	batchings := []struct {
		name  string
		sizes func(next uint64) int
	}{
		{"one entry each", func(uint64) int { return 1 }},
		{"threes", func(uint64) int { return 3 }},
		{"sevens", func(uint64) int { return 7 }},
		{"all in one", func(uint64) int { return len(logs) }},
		{"cut after each retry", func(next uint64) int {
			for _, end := range []uint64{11, 12, 22, 23, 33, 34, 61} {
				if next <= end {
					return int(end - next + 1)
				}
			}
			return 1
		}},
	}
	var ref *Store
	for _, bt := range batchings {
		s := openTemp(t)
		s.idemWindow = window
		out := feed(s, logs, bt.sizes)
		for i, st := range steps {
			res := first(out[i-1])
			w := st.want
			ok := res != nil && res.Err == nil == !w.reused && errors.Is(res.Err, kv.ErrIdempotencyKeyReused) == w.reused &&
				res.Replayed == w.replayed
			if ok && st.cmd.Op == OpPut && !w.reused {
				ok = res.Put.ModIndex == w.mod && res.Put.Version == w.version
			}
			if !ok {
				t.Errorf("%s: entry %d: got %+v, want %+v", bt.name, i, res, w)
			}
		}
		if ref == nil {
			ref = s
		} else if d := stateDiff(t, ref, s); d != "" {
			t.Errorf("%s: state differs from %s: %s", bt.name, batchings[0].name, d)
		}
	}
	// Only the last record is left (used at 61), with its idem_exp entry.
	var idem []string
	for _, l := range stateLines(t, ref) {
		if strings.HasPrefix(l, "idem") {
			idem = append(idem, l)
		}
	}
	if len(idem) != 2 || !strings.HasPrefix(idem[1], fmt.Sprintf("idem_exp %x41=", u64(61))) {
		t.Errorf("idempotency buckets after the log: %q", idem)
	}
}
