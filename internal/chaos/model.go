package chaos

import (
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/kv"
)

// OpKind is a client operation on one key.
type OpKind uint8

// The operations the clients run.
const (
	OpGet    OpKind = iota // GET (linearizable)
	OpPut                  // unconditional PUT
	OpCAS                  // PUT with If-Match: "<Expect>"
	OpCreate               // PUT with If-None-Match: *
	OpDelete               // unconditional DELETE
)

func (k OpKind) String() string {
	return [...]string{"get", "put", "cas", "create", "delete"}[k]
}

// Outcome is what a client learned about an operation.
type Outcome uint8

// Outcomes. A read that failed is not recorded at all.
const (
	// Ok: 200. For a get, the key was found.
	Ok Outcome = iota
	// NotFound: a get answered 404.
	NotFound
	// PreconditionFailed: 412; nothing was written.
	PreconditionFailed
	// NotApplied: the write certainly did not happen (503 no_leader, 504
	// timeout, the connection was never made).
	NotApplied
	// Unknown: the write may or may not have happened (504
	// outcome_unknown, 500, a client timeout or a connection lost after
	// sending). Its return time is the end of the history.
	Unknown
)

func (o Outcome) String() string {
	return [...]string{"ok", "not_found", "412", "not_applied", "unknown"}[o]
}

// Input is an operation as called.
type Input struct {
	Kind   OpKind
	Key    string
	Value  string // put, cas, create
	Expect uint64 // cas: the mod_index of If-Match
	// Fence, on a put, makes it require a lock's token (?lock=&token=):
	// a 412 then means the lock was not held with it, and nothing was
	// written. The register does not model the lock (the lock check,
	// lockcheck.go, does), so such a put is a put that may fail.
	Fence kv.Fence
}

// Output is what came back.
type Output struct {
	Outcome Outcome
	// Get Ok: the value read. Put/cas/create Ok and get Ok: the record's
	// indexes and version.
	Value       string
	ModIndex    uint64
	CreateIndex uint64
	Version     uint64
	// PreconditionFailed: the ETag the server sent (the key's mod_index
	// now), 0 when it sent none (the key is absent).
	CurrentModIndex uint64
	// Delete Ok: keys removed and the delete's raft index.
	Deleted int64
	Index   uint64
}

// regState is the state of one key in the model: a register holding a
// value with its raft indexes and version. Indexes the clients have not
// observed yet (written by an operation of unknown outcome) are 0 and are
// bound the first time a read reveals them; Floor is a lower bound on the
// raft index of the key's next change (its last known change's index), so
// that a write's index must grow in linearization order.
type regState struct {
	Exists  bool
	Value   string
	Mod     uint64 // 0: not observed yet
	Create  uint64 // 0: not observed yet
	Version uint64
	Floor   uint64
}

func (s regState) String() string {
	if !s.Exists {
		return fmt.Sprintf("absent (floor %d)", s.Floor)
	}
	idx := func(i uint64) string {
		if i == 0 {
			return "?"
		}
		return fmt.Sprint(i)
	}
	return fmt.Sprintf("%q mod=%s create=%s v%d", s.Value, idx(s.Mod), idx(s.Create), s.Version)
}

// bindRecord checks that s can be the record (mod, create, version) and
// returns s with unobserved indexes bound to them.
func bindRecord(s regState, mod, create, version uint64) (regState, bool) {
	if !s.Exists || s.Version != version {
		return s, false
	}
	if create > mod || (version == 1 && create != mod) {
		return s, false
	}
	if s.Mod == 0 {
		if mod <= s.Floor {
			return s, false
		}
		s.Mod = mod
		s.Floor = mod
	} else if s.Mod != mod {
		return s, false
	}
	if s.Create == 0 {
		s.Create = create
	} else if s.Create != create {
		return s, false
	}
	if s.Version == 1 && s.Create != s.Mod {
		return s, false
	}
	return s, true
}

// bindMod checks that the existing key can be at mod_index mod now.
func bindMod(s regState, mod uint64) (regState, bool) {
	if !s.Exists {
		return s, false
	}
	if s.Mod == 0 {
		if mod <= s.Floor {
			return s, false
		}
		s.Mod = mod
		s.Floor = mod
		if s.Version == 1 {
			if s.Create != 0 && s.Create != mod {
				return s, false
			}
			s.Create = mod
		}
		return s, true
	}
	return s, s.Mod == mod
}

// written is s after a write of value that made index idx (0: unknown).
func written(s regState, value string, idx uint64) regState {
	n := regState{Exists: true, Value: value, Mod: idx, Floor: s.Floor}
	if s.Exists {
		n.Create, n.Version = s.Create, s.Version+1
	} else {
		n.Create, n.Version = idx, 1
	}
	if idx != 0 {
		n.Floor = idx
	}
	return n
}

// step is the sequential specification of one key: the states the key can
// be in after the operation, none if the output is impossible from s.
func step(s regState, in Input, out Output) []regState {
	one := func(s regState, ok bool) []regState {
		if !ok {
			return nil
		}
		return []regState{s}
	}
	if out.Outcome == NotApplied {
		return []regState{s}
	}
	switch in.Kind {
	case OpGet:
		switch out.Outcome {
		case NotFound:
			return one(s, !s.Exists)
		case Ok:
			if !s.Exists || s.Value != out.Value {
				return nil
			}
			return one(bindRecord(s, out.ModIndex, out.CreateIndex, out.Version))
		}
	case OpPut:
		switch out.Outcome {
		case Ok:
			if out.ModIndex <= s.Floor {
				return nil
			}
			n := written(s, in.Value, out.ModIndex)
			if n.Create == 0 {
				n.Create = out.CreateIndex
			}
			return one(bindRecord(n, out.ModIndex, out.CreateIndex, out.Version))
		case PreconditionFailed:
			// Only a fenced put can fail, and it changes nothing.
			return one(s, !in.Fence.IsZero())
		case Unknown:
			return []regState{written(s, in.Value, 0)}
		}
	case OpCAS, OpCreate:
		holds := func(s regState) (regState, bool) { // the condition holds in s
			if in.Kind == OpCreate {
				return s, !s.Exists
			}
			return bindMod(s, in.Expect)
		}
		switch out.Outcome {
		case Ok:
			b, ok := holds(s)
			if !ok || out.ModIndex <= b.Floor {
				return nil
			}
			n := written(b, in.Value, out.ModIndex)
			if n.Create == 0 {
				n.Create = out.CreateIndex
			}
			return one(bindRecord(n, out.ModIndex, out.CreateIndex, out.Version))
		case PreconditionFailed:
			if _, ok := holds(s); ok && (in.Kind == OpCreate || s.Mod != 0) {
				return nil // it would have succeeded
			}
			if out.CurrentModIndex == 0 {
				return one(s, !s.Exists)
			}
			if in.Kind == OpCAS && out.CurrentModIndex == in.Expect {
				return nil
			}
			return one(bindMod(s, out.CurrentModIndex))
		case Unknown:
			// If it ran, it applied exactly when its condition held. (If
			// it never ran, the checker places it after everything else.)
			if !s.Exists && in.Kind == OpCAS {
				return []regState{s}
			}
			if in.Kind == OpCreate {
				if s.Exists {
					return []regState{s}
				}
				return []regState{written(s, in.Value, 0)}
			}
			if s.Mod != 0 {
				if s.Mod == in.Expect {
					return []regState{written(s, in.Value, 0)}
				}
				return []regState{s}
			}
			// The current index was never observed: it may be Expect.
			out := []regState{s}
			if b, ok := bindMod(s, in.Expect); ok {
				out = append(out, written(b, in.Value, 0))
			}
			return out
		}
	case OpDelete:
		switch out.Outcome {
		case Ok:
			want := int64(0)
			if s.Exists {
				want = 1
			}
			if out.Deleted != want || out.Index <= s.Floor {
				return nil
			}
			return []regState{{Floor: out.Index}}
		case Unknown:
			return []regState{{Floor: s.Floor}}
		}
	}
	return nil
}

// RegisterModel is the porcupine model of the store: one register per key
// (the history is partitioned by key), a record carrying the value, its
// mod_index, create_index and version.
var RegisterModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{regState{}} },
	Step: func(state, input, output any) []any {
		next := step(state.(regState), input.(Input), output.(Output))
		out := make([]any, len(next))
		for i, s := range next {
			out[i] = s
		}
		return out
	},
	Hash: func(state any) uint64 {
		s := state.(regState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t|%s|%d|%d|%d|%d", s.Exists, s.Value, s.Mod, s.Create, s.Version, s.Floor)
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string { return describeOp(input.(Input), output.(Output)) },
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return fmt.Sprintf("sent to %v", info)
	},
	DescribeState: func(state any) string { return state.(regState).String() },
}).ToModel()

func describeOp(in Input, out Output) string {
	var call string
	switch in.Kind {
	case OpGet:
		call = fmt.Sprintf("get(%s)", in.Key)
	case OpPut:
		call = fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
		if !in.Fence.IsZero() {
			call = fmt.Sprintf("put(%s, %q if lock %s token %d)", in.Key, in.Value, in.Fence.Lock, in.Fence.Token)
		}
	case OpCAS:
		call = fmt.Sprintf("cas(%s, %q if mod=%d)", in.Key, in.Value, in.Expect)
	case OpCreate:
		call = fmt.Sprintf("create(%s, %q)", in.Key, in.Value)
	case OpDelete:
		call = fmt.Sprintf("delete(%s)", in.Key)
	}
	var ret string
	switch out.Outcome {
	case Ok:
		switch in.Kind {
		case OpGet:
			ret = fmt.Sprintf("%q mod=%d create=%d v%d", out.Value, out.ModIndex, out.CreateIndex, out.Version)
		case OpDelete:
			ret = fmt.Sprintf("deleted %d at %d", out.Deleted, out.Index)
		default:
			ret = fmt.Sprintf("ok mod=%d create=%d v%d", out.ModIndex, out.CreateIndex, out.Version)
		}
	case PreconditionFailed:
		ret = fmt.Sprintf("412 (current mod=%d)", out.CurrentModIndex)
		if in.Kind == OpPut {
			ret = "412 (the lock is not held with that token)"
		}
	default:
		ret = out.Outcome.String()
	}
	return call + " -> " + ret
}
