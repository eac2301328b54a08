package chaos

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/kv"
)

// h builds a history; each op is [call, return] with return -1 meaning an
// unknown outcome (Recorder semantics: returns at the end).
type hop struct {
	call, ret int64
	in        Input
	out       Output
}

func checkHist(t *testing.T, ops []hop) porcupine.CheckResult {
	t.Helper()
	rec := NewRecorder()
	for i, op := range ops {
		ret := op.ret
		if op.out.Outcome == Unknown {
			ret = op.call
		}
		rec.Add(i, "n1", op.in, op.out, op.call, ret)
	}
	return rec.Check(10 * time.Second).Result
}

func put(k, v string) Input { return Input{Kind: OpPut, Key: k, Value: v} }
func fput(k, v string, token uint64) Input {
	return Input{Kind: OpPut, Key: k, Value: v, Fence: kv.Fence{Lock: "l", Token: token}}
}
func get(k string) Input              { return Input{Kind: OpGet, Key: k} }
func cas(k, v string, e uint64) Input { return Input{Kind: OpCAS, Key: k, Value: v, Expect: e} }
func create(k, v string) Input        { return Input{Kind: OpCreate, Key: k, Value: v} }
func del(k string) Input              { return Input{Kind: OpDelete, Key: k} }

func wrote(mod, create, version uint64) Output {
	return Output{Outcome: Ok, ModIndex: mod, CreateIndex: create, Version: version}
}
func read(v string, mod, create, version uint64) Output {
	return Output{Outcome: Ok, Value: v, ModIndex: mod, CreateIndex: create, Version: version}
}

var (
	unknown    = Output{Outcome: Unknown}
	notApplied = Output{Outcome: NotApplied}
	notFound   = Output{Outcome: NotFound}
	// fenceFailed: a fenced put's 412 (no ETag: the key's index is not
	// what failed).
	fenceFailed = Output{Outcome: PreconditionFailed}
)

func failed(cur uint64) Output { return Output{Outcome: PreconditionFailed, CurrentModIndex: cur} }
func deleted(n int64, idx uint64) Output {
	return Output{Outcome: Ok, Deleted: n, Index: idx}
}

func TestModel(t *testing.T) {
	tests := []struct {
		name string
		ops  []hop
		want porcupine.CheckResult
	}{
		{"sequential", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, 3, get("a"), read("x", 5, 5, 1)},
			{4, 5, cas("a", "y", 5), wrote(7, 5, 2)},
			{6, 7, cas("a", "z", 5), failed(7)},
			{8, 9, create("a", "w"), failed(7)},
			{10, 11, del("a"), deleted(1, 9)},
			{12, 13, get("a"), notFound},
			{14, 15, del("a"), deleted(0, 10)},
			{16, 17, create("a", "v"), wrote(11, 11, 1)},
			{18, 19, get("a"), read("v", 11, 11, 1)},
		}, porcupine.Ok},
		{"stale read", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, 3, put("a", "y"), wrote(6, 5, 2)},
			{4, 5, get("a"), read("x", 5, 5, 1)},
		}, porcupine.Illegal},
		{"lost write", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, 3, get("a"), notFound},
		}, porcupine.Illegal},
		{"applied twice (version)", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, 3, put("a", "y"), wrote(6, 5, 2)},
			{4, 5, get("a"), read("y", 6, 5, 3)},
		}, porcupine.Illegal},
		{"index going backwards", []hop{
			{0, 1, put("a", "x"), wrote(9, 9, 1)},
			{2, 3, put("a", "y"), wrote(8, 9, 2)},
		}, porcupine.Illegal},
		{"cas on a stale index succeeded", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, 3, put("a", "y"), wrote(6, 5, 2)},
			{4, 5, cas("a", "z", 5), wrote(7, 5, 3)},
		}, porcupine.Illegal},
		{"cas failed though it held", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, 3, cas("a", "z", 5), failed(5)},
		}, porcupine.Illegal},
		{"create over an existing key", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, 3, create("a", "z"), wrote(6, 6, 1)},
		}, porcupine.Illegal},
		{"a not-applied write seen", []hop{
			{0, 1, put("a", "x"), notApplied},
			{2, 3, get("a"), read("x", 5, 5, 1)},
		}, porcupine.Illegal},
		{"fenced put refused: nothing written", []hop{
			{0, 1, fput("a", "x", 4), wrote(5, 5, 1)},
			{2, 3, fput("a", "y", 4), fenceFailed},
			{4, 5, get("a"), read("x", 5, 5, 1)},
		}, porcupine.Ok},
		{"fenced put refused, yet its value seen", []hop{
			{0, 1, fput("a", "x", 4), wrote(5, 5, 1)},
			{2, 3, fput("a", "y", 4), fenceFailed},
			{4, 5, get("a"), read("y", 6, 5, 2)},
		}, porcupine.Illegal},
		{"unfenced put answered 412", []hop{
			{0, 1, put("a", "x"), fenceFailed},
		}, porcupine.Illegal},
		{"concurrent writes, either order", []hop{
			{0, 10, put("a", "x"), wrote(6, 5, 2)},
			{1, 9, put("a", "y"), wrote(5, 5, 1)},
			{11, 12, get("a"), read("x", 6, 5, 2)},
		}, porcupine.Ok},
		{"unknown write applied later", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, -1, put("a", "y"), unknown},
			{3, 4, get("a"), read("x", 5, 5, 1)},
			{5, 6, get("a"), read("y", 8, 5, 2)},
			{7, 8, cas("a", "z", 8), wrote(9, 5, 3)},
		}, porcupine.Ok},
		{"unknown write never applied", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, -1, put("a", "y"), unknown},
			{3, 4, get("a"), read("x", 5, 5, 1)},
			{5, 6, put("a", "z"), wrote(9, 5, 2)},
		}, porcupine.Ok},
		{"unknown cas on an unobserved index", []hop{
			{0, -1, put("a", "x"), unknown},
			{1, -1, cas("a", "y", 7), unknown},
			{2, 3, get("a"), read("y", 8, 7, 2)},
		}, porcupine.Ok},
		{"unknown write read with an old index", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, -1, put("a", "y"), unknown},
			{3, 4, get("a"), read("y", 4, 5, 2)},
		}, porcupine.Illegal},
		{"unknown delete", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, -1, del("a"), unknown},
			{3, 4, get("a"), notFound},
			{5, 6, create("a", "q"), wrote(9, 9, 1)},
		}, porcupine.Ok},
		{"keys are independent", []hop{
			{0, 1, put("a", "x"), wrote(5, 5, 1)},
			{2, 3, put("b", "x"), wrote(6, 6, 1)},
			{4, 5, get("a"), read("x", 5, 5, 1)},
			{6, 7, get("b"), notFound},
		}, porcupine.Illegal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkHist(t, tt.ops); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// simulate builds the history of a linearizable register store under
// concurrent clients: each operation takes effect at a random instant
// inside its interval; some writes are reported as of unknown outcome
// (applied or not) or as not applied.
func simulate(seed uint64, clients, opsPerClient int) []hop {
	rng := rand.New(rand.NewPCG(seed, 1))
	type timed struct {
		hop
		at    int64
		apply bool
	}
	var all []timed
	for c := range clients {
		t := int64(rng.IntN(10))
		for i := range opsPerClient {
			call := t
			at := call + 1 + int64(rng.IntN(20))
			ret := at + 1 + int64(rng.IntN(20))
			t = ret + 1
			in := Input{Key: fmt.Sprintf("k%d", rng.IntN(2)), Kind: OpKind(rng.IntN(5))}
			if in.Kind != OpGet && in.Kind != OpDelete {
				in.Value = fmt.Sprintf("c%d-%d", c, i)
			}
			all = append(all, timed{hop: hop{call: call, ret: ret, in: in}, at: at, apply: true})
		}
	}
	slices.SortFunc(all, func(a, b timed) int { return cmp.Compare(a.at, b.at) })
	state := map[string]regState{}
	index := uint64(1)
	for i := range all {
		op := &all[i]
		s := state[op.in.Key]
		if op.in.Kind == OpCAS {
			op.in.Expect = s.Mod
			if rng.IntN(3) == 0 {
				op.in.Expect = s.Mod + 1
			}
			if op.in.Expect == 0 {
				op.in.Expect = 1
			}
		}
		index++
		switch op.in.Kind {
		case OpGet:
			if s.Exists {
				op.out = read(s.Value, s.Mod, s.Create, s.Version)
			} else {
				op.out = notFound
			}
			continue
		case OpDelete:
			n := int64(0)
			if s.Exists {
				n = 1
			}
			op.out = deleted(n, index)
			s = regState{}
		case OpPut:
			s = written(s, op.in.Value, index)
			op.out = wrote(s.Mod, s.Create, s.Version)
		case OpCAS, OpCreate:
			holds := s.Exists && s.Mod == op.in.Expect
			if op.in.Kind == OpCreate {
				holds = !s.Exists
			}
			if !holds {
				op.out = failed(s.Mod)
				continue
			}
			s = written(s, op.in.Value, index)
			op.out = wrote(s.Mod, s.Create, s.Version)
		}
		// Now and then the client does not learn the outcome of a write,
		// or the write never happens.
		switch rng.IntN(10) {
		case 0:
			op.out = unknown
		case 1:
			op.out, op.apply = unknown, false
		case 2:
			op.out, op.apply = notApplied, false
		}
		if op.apply {
			state[op.in.Key] = s
		} else {
			index-- // nothing was written at this index
		}
	}
	out := make([]hop, len(all))
	for i, op := range all {
		out[i] = op.hop
	}
	return out
}

// The checker passes histories of a correct store and fails the same
// histories with one read corrupted: the harness can fail.
func TestModelSimulatedHistories(t *testing.T) {
	for seed := range uint64(20) {
		hist := simulate(seed, 4, 40)
		if got := checkHist(t, hist); got != porcupine.Ok {
			t.Fatalf("seed %d: correct history checked as %s", seed, got)
		}
		// Corrupt a read that observed a value: a value no write wrote,
		// or a version that does not go with the value.
		var reads []int
		for i, op := range hist {
			if op.in.Kind == OpGet && op.out.Outcome == Ok && op.out.Version > 1 {
				reads = append(reads, i)
			}
		}
		if len(reads) == 0 {
			continue
		}
		bad := slices.Clone(hist)
		i := reads[int(seed)%len(reads)]
		if seed%2 == 0 {
			bad[i].out.Value = "never written"
		} else {
			bad[i].out.Version--
		}
		if got := checkHist(t, bad); got != porcupine.Illegal {
			t.Fatalf("seed %d: corrupted read %s checked as %s", seed, describeOp(bad[i].in, bad[i].out), got)
		}
	}
}

// A failing check leaves a visualization with the fault windows and a
// text history.
func TestRecorderOutputs(t *testing.T) {
	rec := NewRecorder()
	rec.Add(0, "n1", put("a", "x"), wrote(5, 5, 1), 0, 10)
	rec.Add(1, "n1", get("a"), notFound, 20, 30)
	rec.Add(2, "n1", put("a", "y"), unknown, 5, 5)
	rec.Fault(1, 25, "isolate leader n1")
	rec.Event(27, "heal 1")
	cr := rec.Check(10 * time.Second)
	if cr.Result != porcupine.Illegal {
		t.Fatalf("got %s, want Illegal", cr.Result)
	}
	dir := t.TempDir()
	html, txt := filepath.Join(dir, "h.html"), filepath.Join(dir, "h.txt")
	if err := rec.WriteVisualization(cr, html); err != nil {
		t.Fatal(err)
	}
	if err := rec.WriteHistory(txt); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{html: "isolate leader n1", txt: `put(a, "y") -> unknown`} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", filepath.Base(path), want)
		}
	}
	// The unknown write returns after everything else.
	for _, op := range rec.Operations() {
		if op.Output.(Output).Outcome == Unknown && op.Return <= 30 {
			t.Errorf("unknown op returns at %d, before the end of the history", op.Return)
		}
	}
}
