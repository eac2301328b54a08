package chaos

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/kv"
)

// The lock check (docs/chaos.md, "Mutual exclusion"): clients take a lock,
// write one key fenced by the lock's token, and release it, while the
// harness breaks the cluster. The committed history of the lock's queue and
// of the guarded key, replayed together in index order, must show that
// every guarded write applied while its token held the lock, with tokens
// strictly increasing; that every acquisition a client was told of held the
// lock at the index it was told; and that what the clients were answered
// agrees with it. Everything here is pure (lockcheck_test.go tests it
// without a cluster).

// Acquisition is a lock a client was told it holds.
type Acquisition struct {
	// Client is the client that holds it.
	Client int
	// Key is its queue key, Token its fencing token (the key's
	// create_index), Index the applied index at which the node found it
	// the oldest key of the queue.
	Key   string
	Token uint64
	Index uint64
}

// GuardedWrite is a put of the guarded key fenced by a token, and what its
// client learned of it.
type GuardedWrite struct {
	Client int
	// Token is the fence's token, Value the value put (unique).
	Token uint64
	Value string
	// Outcome as the HTTP contract classifies it; ModIndex, CreateIndex
	// and Version as answered when Ok.
	Outcome  Outcome
	ModIndex uint64
	// Call and Return are the history's clock (ns) around the call.
	Call, Return int64
	// Stale marks the write of a paused holder, sent after its lease was
	// gone: it must have been refused.
	Stale bool
}

// Holder is one holder of the lock in committed order: the queue key that
// was the oldest from index From on.
type Holder struct {
	Key   string
	Token uint64
	From  uint64
	// Client is the client told it held it; -1 when none was (a Lock whose
	// answer was lost, or one the harness made).
	Client int
	// Waited: the key was queued before the previous holder's key went,
	// so the lock passed to it in the entry that removed that key (a
	// handoff to a waiter), not later to a newcomer.
	Waited bool
}

// LockCheck is what CheckLocks found.
type LockCheck struct {
	// Problems are the violations, each naming the index and the write.
	Problems []string
	// Holders is the lock's holders in committed order.
	Holders []Holder
	// Applied are the guarded writes in the history, in index order.
	Applied []GuardedWrite
	// Stats sums it up for the test log.
	Stats string
}

// CheckLocks replays the committed history of the lock's queue (queue:
// the keys under kv.LockQueue(name)) and of the guarded key (data: a
// history whose prefix covers dataKey; other keys are ignored) in index
// order, and checks:
//   - the queue follows the store's rules (a new key's create_index is its
//     index, a put keeps it, a delete removes a key that was there), and
//     no two of its keys share a create_index (their token);
//   - every put of dataKey carries, in its value, a token that held the
//     lock (the oldest key of the queue, by create_index) at its index,
//     and the tokens of successive puts strictly increase;
//   - every value in it was sent by one of writes, once, by a write not
//     answered "not applied" or 412, and not by a stale (paused) holder;
//     every write answered 200 is there at its index;
//   - every acquisition held the lock at the index it was told;
//   - in real time, no write answered 200 carried a token lower than one
//     of a write answered 200 before it was called.
//
// tokenOf parses a guarded value's token; values it cannot parse are
// problems.
func CheckLocks(queue, data History, dataKey string, acqs []Acquisition, writes []GuardedWrite, tokenOf func(string) (uint64, bool)) LockCheck {
	var lc LockCheck
	problem := func(format string, args ...any) {
		if len(lc.Problems) < 100 {
			lc.Problems = append(lc.Problems, fmt.Sprintf(format, args...))
		}
	}
	byValue := map[string]int{}
	for i, w := range writes {
		if j, dup := byValue[w.Value]; dup {
			problem("clients: the value %q was sent twice (writes %d and %d)", w.Value, j, i)
		}
		byValue[w.Value] = i
	}
	claims := map[string]int{} // key@token → client
	claim := func(key string, token uint64) string { return fmt.Sprintf("%s@%d", key, token) }
	for _, a := range acqs {
		claims[claim(a.Key, a.Token)] = a.Client
	}
	pending := slices.Clone(acqs)
	slices.SortStableFunc(pending, func(a, b Acquisition) int { return cmp.Compare(a.Index, b.Index) })

	queueState := map[string]uint64{} // queue key → create_index
	// oldest is the holder: the lowest create_index (ties, which are
	// problems of their own, broken by key as the store's cursor does).
	oldest := func() (string, uint64) {
		var key string
		var token uint64
		for k, c := range queueState {
			if token == 0 || c < token || c == token && k < key {
				key, token = k, c
			}
		}
		return key, token
	}
	holderString := func() string {
		k, t := oldest()
		if k == "" {
			return "nobody (the queue was empty)"
		}
		return fmt.Sprintf("%s (token %d)", k, t)
	}
	// checkAcqs checks the acquisitions told at indexes before idx: the
	// state now is the state at their index.
	checkAcqs := func(idx uint64) {
		for len(pending) > 0 && pending[0].Index < idx {
			a := pending[0]
			pending = pending[1:]
			if k, t := oldest(); k != a.Key || t != a.Token {
				problem("acquisition: client %d was told it held the lock with %s (token %d) at index %d, but the lock was held by %s",
					a.Client, a.Key, a.Token, a.Index, holderString())
			}
		}
	}

	seen := map[string]uint64{} // value → index it applied at
	var lastToken uint64
	var lastTokenAt uint64
	qi, di := 0, 0
	for qi < len(queue.Responses) || di < len(data.Responses) {
		var idx uint64
		switch {
		case qi == len(queue.Responses):
			idx = data.Responses[di].Index
		case di == len(data.Responses):
			idx = queue.Responses[qi].Index
		default:
			idx = min(queue.Responses[qi].Index, data.Responses[di].Index)
		}
		checkAcqs(idx)
		var qr, dr *kv.WatchResponse
		if qi < len(queue.Responses) && queue.Responses[qi].Index == idx {
			qr = &queue.Responses[qi]
			qi++
		}
		if di < len(data.Responses) && data.Responses[di].Index == idx {
			dr = &data.Responses[di]
			di++
		}
		var guarded []kv.Event
		if dr != nil {
			for _, e := range dr.Events {
				if string(e.Key) == dataKey {
					guarded = append(guarded, e)
				}
			}
		}
		if qr != nil && len(guarded) > 0 {
			problem("index %d: a guarded write and a change of the lock's queue in one entry: %s; %s", idx, responseString(*qr), responseString(*dr))
		}
		for _, e := range guarded {
			if e.Type != kv.EventPut {
				problem("index %d: the guarded key was deleted (nobody deletes it): %s", idx, responseString(*dr))
				continue
			}
			v := string(e.Value)
			token, ok := tokenOf(v)
			if !ok {
				problem("index %d: the guarded key holds %q, which is no guarded write's value", idx, v)
				continue
			}
			gw := GuardedWrite{Token: token, Value: v, Outcome: Unknown, ModIndex: idx, Client: -1}
			if i, ok := byValue[v]; ok {
				gw = writes[i]
				gw.ModIndex = idx
			}
			lc.Applied = append(lc.Applied, gw)
			if _, held := oldest(); held != token {
				problem("index %d: the guarded write %q (token %d) applied while the lock was held by %s", idx, v, token, holderString())
			}
			if token <= lastToken {
				problem("index %d: the guarded write %q has token %d, not above the token %d of the guarded write at index %d",
					idx, v, token, lastToken, lastTokenAt)
			}
			lastToken, lastTokenAt = token, idx
			if at, dup := seen[v]; dup {
				problem("index %d: the guarded write %q applied again (first at index %d)", idx, v, at)
			}
			seen[v] = idx
			i, sent := byValue[v]
			if !sent {
				problem("index %d: the guarded key holds %q, which no client sent", idx, v)
				continue
			}
			w := writes[i]
			switch {
			case w.Stale:
				problem("index %d: the paused holder's write %q (client %d, token %d), sent after its lease was gone, applied", idx, v, w.Client, w.Token)
			case w.Outcome == PreconditionFailed || w.Outcome == NotApplied:
				problem("index %d: the guarded write %q (client %d, token %d) applied, but its client was answered %s", idx, v, w.Client, w.Token, w.Outcome)
			case w.Outcome == Ok && w.ModIndex != idx:
				problem("index %d: the guarded write %q (client %d) applied here, but was answered mod_index %d", idx, v, w.Client, w.ModIndex)
			}
			if w.Token != token {
				problem("index %d: the value %q says token %d, its write was fenced by %d", idx, v, token, w.Token)
			}
		}
		if qr == nil {
			continue
		}
		before, _ := oldest()
		for _, e := range qr.Events {
			k := string(e.Key)
			c, there := queueState[k]
			switch e.Type {
			case kv.EventPut:
				switch {
				case !there && e.CreateIndex != idx:
					problem("index %d: queue key %s created with create_index %d", idx, k, e.CreateIndex)
				case there && e.CreateIndex != c:
					problem("index %d: queue key %s put again changed its create_index from %d to %d", idx, k, c, e.CreateIndex)
				}
				if !there {
					for o, oc := range queueState {
						if oc == e.CreateIndex {
							problem("index %d: queue keys %s and %s share create_index %d: one fencing token for two holders", idx, o, k, oc)
						}
					}
				}
				queueState[k] = e.CreateIndex
			case kv.EventDelete:
				if !there {
					problem("index %d: queue key %s deleted, but it was not there", idx, k)
				}
				delete(queueState, k)
			}
		}
		if k, t := oldest(); k != "" && k != before {
			h := Holder{Key: k, Token: t, From: idx, Client: -1, Waited: before != "" && t < idx}
			if c, ok := claims[claim(k, t)]; ok {
				h.Client = c
			}
			lc.Holders = append(lc.Holders, h)
		}
	}
	checkAcqs(^uint64(0))

	var ok, refused, unknown, notApplied, stale int
	for _, w := range writes {
		switch w.Outcome {
		case Ok:
			ok++
			if _, there := seen[w.Value]; !there {
				problem("the guarded write %q (client %d, token %d) was answered 200 with mod_index %d, but it is not in the history",
					w.Value, w.Client, w.Token, w.ModIndex)
			}
		case PreconditionFailed:
			refused++
		case Unknown:
			unknown++
		case NotApplied:
			notApplied++
		}
		if w.Stale {
			stale++
		}
	}
	// Real time: a write answered 200 after another was answered 200 carries
	// a higher token.
	var acked []GuardedWrite
	for _, w := range writes {
		if w.Outcome == Ok {
			acked = append(acked, w)
		}
	}
	byReturn := slices.Clone(acked)
	slices.SortFunc(byReturn, func(a, b GuardedWrite) int { return cmp.Compare(a.Return, b.Return) })
	slices.SortFunc(acked, func(a, b GuardedWrite) int { return cmp.Compare(a.Call, b.Call) })
	var top GuardedWrite // the highest token among writes returned so far
	j := 0
	for _, w := range acked {
		for j < len(byReturn) && byReturn[j].Return < w.Call {
			if byReturn[j].Token > top.Token {
				top = byReturn[j]
			}
			j++
		}
		if top.Token != 0 && w.Token <= top.Token {
			problem("real time: the guarded write %q (client %d, token %d) was answered 200, though %q (client %d) with token %d had been answered 200 before it was sent",
				w.Value, w.Client, w.Token, top.Value, top.Client, top.Token)
		}
	}

	waited, unclaimed := 0, 0
	for _, h := range lc.Holders {
		if h.Waited {
			waited++
		}
		if h.Client < 0 {
			unclaimed++
		}
	}
	var tokens string
	if n := len(lc.Applied); n > 0 {
		tokens = fmt.Sprintf(", tokens %d..%d", lc.Applied[0].Token, lc.Applied[n-1].Token)
	}
	lc.Stats = fmt.Sprintf("%d holders (%d took over from a waiting position, %d never told a client), %d guarded writes applied%s; sent %d: %d ok, %d refused (412), %d unknown, %d not applied; %d by paused holders",
		len(lc.Holders), waited, unclaimed, len(lc.Applied), tokens, len(writes), ok, refused, unknown, notApplied, stale)
	return lc
}

// guardedValue is the value a lock client puts: it names the token and
// the client, and is unique.
func guardedValue(token uint64, client, seq int) string {
	return fmt.Sprintf("t%d c%d s%d", token, client, seq)
}

// guardedToken parses guardedValue's token.
func guardedToken(v string) (uint64, bool) {
	var token uint64
	var client, seq int
	if n, err := fmt.Sscanf(v, "t%d c%d s%d", &token, &client, &seq); err != nil || n != 3 || guardedValue(token, client, seq) != v {
		return 0, false
	}
	return token, true
}

// holdersByClient counts, per client (-1: none), the holders it was told
// of, those it took over from a waiting position, and handoffs: holds
// that came after another client's (or an unclaimed) hold.
func holdersByClient(hs []Holder) (held, waited, handoffs map[int]int) {
	held, waited, handoffs = map[int]int{}, map[int]int{}, map[int]int{}
	for i, h := range hs {
		held[h.Client]++
		if h.Waited {
			waited[h.Client]++
		}
		if i > 0 && hs[i-1].Client != h.Client {
			handoffs[h.Client]++
		}
	}
	return held, waited, handoffs
}

// joinLines indents problems one per line.
func joinLines(ps []string) string { return strings.Join(ps, "\n  ") }
