package store

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// The determinism property: the state and the result after entry i depend
// only on entries up to i, never on where raft cut the log into batches,
// on replays of entries already applied, on a restart, or on a snapshot
// restored into a fresh store. TestDeterminism checks it on random logs;
// `make chaos` runs it long (-determinism.long).
var (
	determinismLong    = flag.Bool("determinism.long", false, "TestDeterminism: many seeds and long logs")
	determinismSeed    = flag.Uint64("determinism.seed", 0, "TestDeterminism: run only this seed (replays a failure)")
	determinismEntries = flag.Int("determinism.entries", 0, "TestDeterminism: entries per log (0: the mode's default)")
	determinismSeeds   = flag.Int("determinism.seeds", 0, "TestDeterminism: how many seeds, from 1 (0: the mode's default)")
)

func TestDeterminism(t *testing.T) {
	seeds, entries := 3, 3000
	if *determinismLong {
		seeds, entries = 60, 50_000
	}
	if *determinismSeeds > 0 {
		seeds = *determinismSeeds
	}
	if *determinismEntries > 0 {
		entries = *determinismEntries
	}
	list := make([]uint64, seeds)
	for i := range list {
		list[i] = uint64(i + 1)
	}
	if *determinismSeed != 0 {
		list = []uint64{*determinismSeed}
	}
	start := time.Now()
	for _, seed := range list {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay: go test ./store -run 'TestDeterminism$' -determinism.seed=%d -determinism.entries=%d", seed, entries)
				}
			})
			checkDeterminism(t, seed, entries)
		})
	}
	t.Logf("%d seeds of %d entries each in %v", len(list), entries, time.Since(start).Round(time.Millisecond))
}

// openScratch opens a store without fsync (the property does not depend
// on it, and the test runs faster), with the given idempotency window and
// watch history.
func openScratch(t testing.TB, window, history uint64) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "kv.db"), Options{NoSync: true, BootID: func() string { return "test" }, WatchHistory: history})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.idemWindow = window
	return s
}

// logGen builds a random log. It applies each entry to ref, one entry per
// batch, as it goes, so it can write conditions and compares that hold
// (and ones that fail) against the current state.
type logGen struct {
	t      testing.TB
	r      *rand.Rand
	ref    *Store
	window uint64
	logs   []*raft.Log
	// used lists the commands sent with an idempotency key, by the index
	// of their entry, for retries and reuses.
	used     []idemUse
	nextIdem int
}

type idemUse struct {
	index uint64
	cmd   Command
}

func (g *logGen) index() uint64 { return uint64(len(g.logs) + 1) }

func (g *logGen) key() []byte {
	return fmt.Appendf(nil, "%c/%d", 'a'+g.r.IntN(3), g.r.IntN(6))
}

func (g *logGen) prefix() []byte {
	switch g.r.IntN(6) {
	case 0:
		return nil // every key
	case 1:
		return []byte("a/1")
	case 2:
		return []byte("zz/") // nothing
	}
	return fmt.Appendf(nil, "%c/", 'a'+g.r.IntN(3))
}

func (g *logGen) value() []byte {
	if g.r.IntN(8) == 0 {
		return nil
	}
	return fmt.Appendf(nil, "v%d", g.r.IntN(4))
}

// current reads key from ref; ok is false when it is absent.
func (g *logGen) current(key []byte) (kv.Record, bool) {
	rec, err := g.ref.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return kv.Record{}, false
	}
	if err != nil {
		g.t.Fatal(err)
	}
	return rec, true
}

// cond returns a condition on key that holds or fails, or none.
func (g *logGen) cond(key []byte) kv.Condition {
	rec, ok := g.current(key)
	switch g.r.IntN(7) {
	case 0:
		return kv.Condition{IfAbsent: true}
	case 1, 2:
		if ok {
			return kv.Condition{IfModIndex: rec.ModIndex} // holds
		}
		return kv.Condition{IfModIndex: 1 + g.r.Uint64N(g.index())}
	case 3:
		return kv.Condition{IfModIndex: 1 + g.r.Uint64N(g.index())} // mostly stale
	}
	return kv.Condition{}
}

func (g *logGen) compare() kv.Compare {
	key := g.key()
	rec, ok := g.current(key)
	ops := []kv.CompareOp{kv.OpEqual, kv.OpNotEqual, kv.OpLess, kv.OpGreater}
	c := kv.Compare{Key: key, Op: ops[g.r.IntN(len(ops))]}
	near := func(n uint64) uint64 { return n + g.r.Uint64N(3) - min(n, 1) } // n-1, n or n+1
	switch g.r.IntN(5) {
	case 0:
		c.Target, c.Value = kv.TargetValue, g.value()
		if ok && g.r.IntN(2) == 0 {
			c.Value = rec.Value
		}
	case 1:
		c.Target, c.Number = kv.TargetModIndex, near(rec.ModIndex)
	case 2:
		c.Target, c.Number = kv.TargetCreateIndex, near(rec.CreateIndex)
	case 3:
		c.Target, c.Number = kv.TargetVersion, near(rec.Version)
	default:
		c.Target, c.Op, c.Exists = kv.TargetExists, ops[g.r.IntN(2)], g.r.IntN(2) == 0
	}
	return c
}

func (g *logGen) txnOps() []kv.TxnOp {
	ops := make([]kv.TxnOp, g.r.IntN(4))
	for i := range ops {
		switch g.r.IntN(6) {
		case 0:
			ops[i] = kv.TxnOp{Type: kv.TxnDelete, Key: g.key()}
		case 1:
			ops[i] = kv.TxnOp{Type: kv.TxnDeletePrefix, Key: g.prefix()}
		case 2, 3:
			ops[i] = kv.TxnOp{Type: kv.TxnGet, Key: g.key()}
		default:
			ops[i] = kv.TxnOp{Type: kv.TxnPut, Key: g.key(), Value: g.value()}
			if g.r.IntN(4) == 0 {
				ops[i].Lease = kv.LeaseID(g.leaseID())
			}
		}
	}
	return ops
}

// leaseID picks a lease id: mostly one granted, now and then one that
// never was (the sequence starts at 1 and grants are about one command
// in 36).
func (g *logGen) leaseID() uint64 {
	return 1 + g.r.Uint64N(2+g.index()/30)
}

// leaseCommand returns a lease op, or a put that attaches its key to a
// lease or grants one; single leaves out revokes (they delete many keys).
func (g *logGen) leaseCommand(single bool) Command {
	n := 6
	if single {
		n = 5
	}
	switch g.r.IntN(n) {
	case 0:
		return Command{Op: OpLeaseGrant, TTL: 1 + g.r.Uint64N(60_000)}
	case 1:
		return Command{Op: OpLeaseKeepalive, Lease: g.leaseID()}
	case 2:
		cps := make([]LeaseCheckpoint, g.r.IntN(4))
		for i := range cps {
			cps[i] = LeaseCheckpoint{Lease: g.leaseID(), Remaining: g.r.Uint64N(70_000)}
		}
		return Command{Op: OpLeaseCheckpoint, Checkpoints: cps}
	case 3, 4:
		key := g.key()
		c := Command{Op: OpPut, Key: key, Value: g.value(), Cond: g.cond(key)}
		if g.r.IntN(2) == 0 {
			c.TTL = 1 + g.r.Uint64N(60_000)
		} else {
			c.Lease = g.leaseID()
		}
		return c
	}
	c := Command{Op: OpLeaseRevoke, Lease: g.leaseID()}
	if g.r.IntN(2) == 0 {
		c.IfKeepalive = g.r.Uint64N(g.index())
	}
	return c
}

// aclCommand returns an ACL op: a bootstrap (or a reset), a token created
// with random rules, or a revoke of a token that may or may not exist.
func (g *logGen) aclCommand() Command {
	hash := func() []byte {
		h := kv.SecretHash(fmt.Sprint("secret-", g.r.IntN(8)))
		return h[:]
	}
	switch g.r.IntN(4) {
	case 0:
		c := Command{Op: OpACLBootstrap, Key: hash()}
		if g.r.IntN(2) == 0 {
			c.Value = bytes.Repeat([]byte{byte(g.r.IntN(256))}, MemberSecretSize)
		}
		return c
	case 1:
		return Command{Op: OpACLTokenDelete, Token: 1 + g.r.Uint64N(6)}
	}
	var r kv.ACLRules
	for range g.r.IntN(3) {
		r.Read = append(r.Read, string(g.prefix()))
	}
	for range g.r.IntN(3) {
		r.Write = append(r.Write, string(g.prefix()))
	}
	r.Admin = g.r.IntN(3) == 0
	return Command{Op: OpACLTokenCreate, Key: hash(), Value: EncodeACLToken(fmt.Sprint("t", g.r.IntN(100)), r)}
}

// command returns a fresh command of any op; single limits it to the ops
// that touch at most their Key (those group commit may share an entry
// with others).
func (g *logGen) command(single bool) Command {
	if g.r.IntN(6) == 0 {
		return g.leaseCommand(single)
	}
	if g.r.IntN(40) == 0 {
		return g.aclCommand()
	}
	n := 10
	if single {
		n = 8
	}
	switch g.r.IntN(n) {
	case 0:
		return Command{Op: OpNoop}
	case 1:
		id := fmt.Appendf(nil, "n%d", g.r.IntN(3))
		if g.r.IntN(3) == 0 {
			return Command{Op: OpSetNode, Key: id}
		}
		return Command{Op: OpSetNode, Key: id, Value: fmt.Appendf(nil, "127.0.0.1:%d", 8000+g.r.IntN(4))}
	case 2, 3:
		key := g.key()
		return Command{Op: OpDelete, Key: key, Cond: g.cond(key)}
	case 8:
		return Command{Op: OpDeletePrefix, Key: g.prefix()}
	case 9:
		t := &kv.Txn{Success: g.txnOps(), Failure: g.txnOps()}
		for range g.r.IntN(4) {
			t.Compare = append(t.Compare, g.compare())
		}
		return Command{Op: OpTxn, Txn: t}
	}
	key := g.key()
	return Command{Op: OpPut, Key: key, Value: g.value(), Cond: g.cond(key)}
}

// idemCommand returns a command with an idempotency key: a new one, a
// retry of an earlier command (inside the window, at its edges, or past
// it), or an earlier key with another command.
func (g *logGen) idemCommand(single bool) Command {
	if len(g.used) > 0 {
		switch g.r.IntN(6) {
		case 0, 1: // a retry aimed at the window's edges: age window-1, window, window+1
			if u, ok := g.usedAt(g.index() - min(g.index()-1, g.window-1+g.r.Uint64N(3))); ok {
				return u.cmd
			}
		case 2: // a retry of a recent command
			return g.used[len(g.used)-1-g.r.IntN(min(len(g.used), 8))].cmd
		case 3: // a retry of any earlier command
			return g.used[g.r.IntN(len(g.used))].cmd
		case 4: // another command with an earlier key
			c := g.command(single)
			c.IdemKey = g.used[g.r.IntN(len(g.used))].cmd.IdemKey
			return c
		}
	}
	c := g.command(single)
	g.nextIdem++
	c.IdemKey = fmt.Appendf(nil, "req-%d", g.nextIdem)
	return c
}

// usedAt returns the idempotent command of the entry at index, if any.
func (g *logGen) usedAt(index uint64) (idemUse, bool) {
	lo, hi := 0, len(g.used)
	for lo < hi {
		m := (lo + hi) / 2
		if g.used[m].index < index {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(g.used) && g.used[lo].index == index {
		return g.used[lo], true
	}
	return idemUse{}, false
}

// entry returns the next entry: one command, several (group commit: no two
// touch the same key, and none touches many), a configuration entry, or
// a bad one.
func (g *logGen) entry() *raft.Log {
	index := g.index()
	l := &raft.Log{Index: index, Term: 1 + index/500, Type: raft.LogCommand}
	pick := func(single bool) Command {
		if g.r.IntN(3) == 0 {
			return g.idemCommand(single)
		}
		return g.command(single)
	}
	switch k := g.r.IntN(40); {
	case k == 0:
		l.Type, l.Data = raft.LogConfiguration, fmt.Appendf(nil, "conf-%d", index)
	case k == 1:
		l.Data = g.badEntry()
	case k < 12:
		var cmds []*Command
		var keys [][]byte
		for range 2 + g.r.IntN(7) {
			c := pick(true)
			if c.Op.TouchesMany() || touches(keys, c.Key) {
				continue
			}
			keys = append(keys, c.Key)
			cmds = append(cmds, &c)
		}
		l.Data = EncodeEntry(nil, cmds)
	default:
		c := pick(false)
		l.Data = c.Encode(nil)
	}
	if cmds, err := DecodeEntry(l.Data); err == nil && l.Type == raft.LogCommand {
		for _, c := range cmds {
			if len(c.IdemKey) > 0 {
				g.used = append(g.used, idemUse{index: index, cmd: c})
			}
		}
	}
	return l
}

func touches(keys [][]byte, key []byte) bool {
	for _, k := range keys {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// badEntry returns entry data that does not decode.
func (g *logGen) badEntry() []byte {
	put := Command{Op: OpPut, Key: g.key(), Value: g.value(), IdemKey: []byte("bad")}
	switch g.r.IntN(5) {
	case 0:
		b := make([]byte, g.r.IntN(12))
		for i := range b {
			b[i] = byte(g.r.IntN(256))
		}
		return b
	case 1:
		return []byte{entryVersion, 1, 99, 0} // an op from a newer version
	case 2:
		b := put.Encode(nil)
		return b[:len(b)-1]
	case 3:
		return (&Command{Op: OpPut, Value: []byte("no key")}).Encode(nil)
	}
	ok := Command{Op: OpNoop}
	return EncodeEntry(nil, []*Command{&ok, {Op: OpDelete, Key: put.Key, Value: []byte("x")}})
}

// replica is one store fed the log in its own way.
type replica struct {
	name    string
	s       *Store
	r       *rand.Rand
	results []interface{} // by index-1, from the call that applied the entry
	replays bool          // re-deliver applied entries with new ones
	restart bool          // close and reopen once
}

// nextSize draws the size of the next batch: often one entry, often a
// few, sometimes hundreds.
func (rp *replica) nextSize() int {
	switch rp.r.IntN(10) {
	case 0, 1, 2:
		return 1
	case 3, 4, 5, 6:
		return 1 + rp.r.IntN(16)
	case 7, 8:
		return 1 + rp.r.IntN(300)
	}
	return 1 + rp.r.IntN(3000)
}

// encodeResults is the byte image of an entry's response: each command's
// encoded Result, whether it was replayed, and its error's code and text.
func encodeResults(r interface{}) string {
	if r == nil {
		return "nil"
	}
	rs, ok := r.([]*Result)
	if !ok {
		return fmt.Sprintf("unexpected %T", r)
	}
	var b []byte
	for _, res := range rs {
		if res == nil {
			b = append(b, "nil result;"...)
			continue
		}
		b = AppendResult(b, res)
		b = append(b, boolByte(res.Replayed))
		if res.Err != nil {
			b = fmt.Appendf(b, "%s:%s", kv.Code(res.Err), res.Err)
			if errors.Is(res.Err, ErrBadCommand) {
				b = append(b, "(bad command)"...)
			}
		}
		b = append(b, ';')
	}
	return string(b)
}

func checkDeterminism(t *testing.T, seed uint64, n int) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	window := []uint64{5, 16, 64, 300}[r.IntN(4)]
	// The change history is state too: kept for a few indexes, for more
	// than the log, or not at all.
	history := []uint64{0, 3, 40, 1 << 20}[r.IntN(4)]
	g := &logGen{t: t, r: r, window: window, ref: openScratch(t, window, history)}

	// Common checkpoints: every replica ends a batch there, and its full
	// state must equal the reference's.
	checkpoints := map[uint64][]string{uint64(n): nil}
	for range max(6, n/2000) {
		checkpoints[1+r.Uint64N(uint64(n))] = nil
	}
	cuts := slices.Sorted(maps.Keys(checkpoints))

	var refResults []interface{}
	for range n {
		l := g.entry()
		g.logs = append(g.logs, l)
		out := g.ref.ApplyBatch([]*raft.Log{l})
		refResults = append(refResults, out[0])
		if _, ok := checkpoints[l.Index]; ok {
			checkpoints[l.Index] = stateLines(t, g.ref)
		}
	}
	logs := g.logs
	tallyLog(t, logs, refResults, *determinismSeed == 0 && n >= 2000)

	var replicas []*replica
	for i, mode := range []struct {
		name             string
		replays, restart bool
	}{{"batches", false, false}, {"batches+replays", true, false}, {"batches+restart", false, true}} {
		replicas = append(replicas, &replica{
			name: mode.name, s: openScratch(t, window, history), r: rand.New(rand.NewPCG(seed, uint64(i+1))),
			replays: mode.replays, restart: mode.restart,
		})
	}
	// The snapshot: one replica is snapshotted after a batch, and a fresh
	// store restored from it takes the rest of the log.
	snapAt := uint64(1 + r.IntN(n-1))
	restartAt := uint64(1 + r.IntN(n))

	// feed applies logs[from-1:to] to rp in random batches, cut at every
	// checkpoint, and checks the state at each.
	feed := func(rp *replica, from, to uint64) {
		for next := from; next <= to; {
			end := min(next+uint64(rp.nextSize())-1, to)
			if i, _ := slices.BinarySearch(cuts, next); i < len(cuts) {
				end = min(end, cuts[i])
			}
			batch := logs[next-1 : end]
			redelivered := 0
			if rp.replays && next > 1 && rp.r.IntN(5) == 0 {
				redelivered = 1 + rp.r.IntN(int(min(next-1, 64)))
				batch = logs[next-1-uint64(redelivered) : end]
			}
			out := rp.s.ApplyBatch(batch)
			for i, o := range out[:redelivered] {
				if o != nil {
					t.Fatalf("%s: re-delivered entry %d returned %v, want nil", rp.name, batch[i].Index, o)
				}
			}
			rp.results = append(rp.results, out[redelivered:]...)
			if got := rp.s.AppliedIndex(); got != end {
				t.Fatalf("%s: applied index %d after a batch ending at %d (store error: %v)", rp.name, got, end, rp.s.Err())
			}
			if want, ok := checkpoints[end]; ok {
				if d := linesDiff(stateLines(t, rp.s), want); d != "" {
					t.Fatalf("%s: full state at checkpoint %d differs from the reference's (entries one by one): %s", rp.name, end, d)
				}
			}
			if rp.restart && next <= restartAt && restartAt <= end {
				path := rp.s.path
				if err := rp.s.Close(); err != nil {
					t.Fatal(err)
				}
				s, err := Open(path, Options{NoSync: true, BootID: func() string { return "test" }, WatchHistory: history})
				if err != nil {
					t.Fatalf("%s: reopen: %v", rp.name, err)
				}
				t.Cleanup(func() { _ = s.Close() })
				s.idemWindow = window
				rp.s = s
			}
			next = end + 1
		}
	}

	last := uint64(n)
	for _, rp := range replicas[1:] {
		feed(rp, 1, last)
	}
	// The first replica stops after the batch ending at snapAt; a fresh
	// store restored from its snapshot, and the replica itself, both take
	// the rest.
	src := replicas[0]
	feed(src, 1, snapAt)
	restored := &replica{name: "restored", s: openScratch(t, window, history), r: rand.New(rand.NewPCG(seed, 99)), results: append([]interface{}{}, src.results...)}
	if err := restoreBytes(restored.s, snapshotBytes(t, src.s)); err != nil {
		t.Fatalf("restore at %d: %v", snapAt, err)
	}
	if d := stateDiff(t, src.s, restored.s); d != "" {
		t.Fatalf("restored store differs from its source at %d: %s", snapAt, d)
	}
	feed(src, snapAt+1, last)
	feed(restored, snapAt+1, last)
	replicas = append(replicas, restored)

	for _, rp := range replicas {
		if len(rp.results) != len(refResults) {
			t.Fatalf("%s: %d results, want %d", rp.name, len(rp.results), len(refResults))
		}
		for i := range refResults {
			if got, want := encodeResults(rp.results[i]), encodeResults(refResults[i]); got != want {
				t.Fatalf("%s: entry %d (%s): result differs from the reference's:\n got %s\nwant %s", rp.name, i+1, describe(logs[i]), show(rp.results[i]), show(refResults[i]))
			}
		}
		if d := stateDiff(t, g.ref, rp.s); d != "" {
			t.Fatalf("%s: final state differs from the reference's: %s", rp.name, d)
		}
	}
}

// describe summarizes an entry for a failure message.
func describe(l *raft.Log) string {
	if l.Type != raft.LogCommand {
		return l.Type.String()
	}
	cmds, err := DecodeEntry(l.Data)
	if err != nil {
		return fmt.Sprintf("bad entry %x", l.Data)
	}
	s := ""
	for _, c := range cmds {
		s += fmt.Sprintf("[%v %q idem=%q cond=%+v txn=%+v]", c.Op, c.Key, c.IdemKey, c.Cond, c.Txn)
	}
	return s
}

func show(r interface{}) string {
	rs, ok := r.([]*Result)
	if !ok {
		return fmt.Sprintf("%#v", r)
	}
	s := ""
	for _, res := range rs {
		s += fmt.Sprintf("%+v ", *res)
	}
	return s
}

// tallyLog counts what the log exercised, from the reference's results,
// and, when require is set, fails if a case the property is about never
// occurred: a generator that drifted would otherwise make the test pass
// without testing anything.
func tallyLog(t *testing.T, logs []*raft.Log, results []interface{}, require bool) {
	t.Helper()
	counts := map[string]int{}
	seen := map[string]bool{}
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			counts["configuration entry"]++
			continue
		}
		cmds, err := DecodeEntry(l.Data)
		if err != nil {
			counts["bad entry"]++
			continue
		}
		if len(cmds) > 1 {
			counts["entry of several commands"]++
		}
		rs, _ := results[i].([]*Result)
		if len(rs) != len(cmds) {
			t.Fatalf("entry %d: %d results for %d commands", l.Index, len(rs), len(cmds))
		}
		for j, c := range cmds {
			res := rs[j]
			counts[c.Op.String()]++
			switch {
			case len(c.IdemKey) == 0:
			case !seen[string(c.IdemKey)]:
				counts["idempotency key: first use"]++
			case res.Replayed:
				counts["idempotency key: replayed"]++
			case errors.Is(res.Err, kv.ErrIdempotencyKeyReused):
				counts["idempotency key: reused (422)"]++
			default:
				counts["idempotency key: expired, applied anew"]++
			}
			seen[string(c.IdemKey)] = true
			switch {
			case res.Replayed:
			case errors.Is(res.Err, kv.ErrPreconditionFailed):
				counts["condition failed"]++
			case c.Op == OpPut && !c.Cond.IsZero() && res.Err == nil:
				counts["condition held"]++
			case c.Op == OpTxn && res.Txn.Succeeded && len(c.Txn.Compare) > 0:
				counts["txn: compares held"]++
			case c.Op == OpTxn && !res.Txn.Succeeded:
				counts["txn: compares failed"]++
			}
		}
	}
	t.Logf("log: %v", counts)
	if !require {
		return
	}
	for _, want := range []string{
		"configuration entry", "bad entry", "entry of several commands",
		"noop", "put", "delete", "delete_prefix", "set_node", "txn",
		"idempotency key: first use", "idempotency key: replayed", "idempotency key: reused (422)",
		"idempotency key: expired, applied anew", "condition failed", "condition held",
		"txn: compares held", "txn: compares failed",
	} {
		if counts[want] == 0 {
			t.Errorf("the log never exercised %q", want)
		}
	}
}
