package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// single starts a one-voter cluster on loopback and waits until it leads.
func single(t *testing.T) *Node {
	t.Helper()
	n := openNodes(t, 1)[0]
	if err := n.Bootstrap([]Server{{ID: "n1", RaftAddr: n.RaftAddr(), Voter: true}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err := n.ReadIndex(ctx); err == nil {
			return n
		} else if ctx.Err() != nil {
			t.Fatalf("never became a ready leader: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestBootstrapTwiceIsAlreadyBootstrapped(t *testing.T) {
	n := single(t)
	err := n.Bootstrap([]Server{{ID: "n1", RaftAddr: n.RaftAddr(), Voter: true}})
	if !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Fatalf("second bootstrap: %v, want ErrAlreadyBootstrapped", err)
	}
}

func TestApplyAndLinearizableBarrier(t *testing.T) {
	n := single(t)
	ctx := context.Background()
	res, err := n.Apply(ctx, &store.Command{Op: store.OpPut, Key: []byte("k"), Value: []byte("v")})
	if err != nil || res.Put.ModIndex == 0 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	idx, err := n.LinearizableBarrier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx < res.Put.ModIndex {
		t.Fatalf("read index %d below the acknowledged write at %d", idx, res.Put.ModIndex)
	}
	if got := n.fsm.AppliedIndex(); got < idx {
		t.Fatalf("barrier returned with applied index %d < read index %d", got, idx)
	}
	// A failed condition is a result, not an error.
	res, err = n.Apply(ctx, &store.Command{Op: store.OpPut, Key: []byte("k"), Value: []byte("x"), Cond: kv.Condition{IfAbsent: true}})
	if err != nil || !errors.Is(res.Err, kv.ErrPreconditionFailed) {
		t.Fatalf("conditional apply: %+v %v", res, err)
	}
}

func TestApplyWithExpiredContextIsNotHandedOff(t *testing.T) {
	n := single(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := n.raft.LastIndex()
	_, err := n.Apply(ctx, &store.Command{Op: store.OpPut, Key: []byte("k"), Value: []byte("v")})
	if !errors.Is(err, kv.ErrTimeout) {
		t.Fatalf("apply with a done context: %v, want ErrTimeout", err)
	}
	if after := n.raft.LastIndex(); after != before {
		t.Fatalf("log grew from %d to %d for a request that was refused", before, after)
	}
}

// A real single-node leader answers many concurrent linearizable reads.
func TestConcurrentLinearizableReads(t *testing.T) {
	n := single(t)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := n.LinearizableBarrier(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestApplyErrorMapping(t *testing.T) {
	tests := []struct {
		in   error
		want error
	}{
		{raft.ErrNotLeader, kv.ErrNotLeader},
		{raft.ErrLeadershipTransferInProgress, kv.ErrNoLeader},
		{raft.ErrLeadershipLost, kv.ErrOutcomeUnknown},
		{raft.ErrEnqueueTimeout, kv.ErrOutcomeUnknown},
		{raft.ErrRaftShutdown, kv.ErrOutcomeUnknown},
		{fmt.Errorf("wrapped: %w", raft.ErrNotLeader), kv.ErrNotLeader},
	}
	for _, tt := range tests {
		if got := applyError(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("applyError(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := applyError(raft.ErrRaftShutdown); !errors.Is(got, kv.ErrClosed) {
		t.Errorf("shutdown should also be ErrClosed: %v", got)
	}
}

// Group commit: concurrent writes share entries, each gets its own result,
// and no two changes of one key share a mod_index.
func TestGroupCommit(t *testing.T) {
	n := single(t)
	before := n.raft.LastIndex()
	const writers = 200
	var wg sync.WaitGroup
	mods := make([]uint64, writers)
	for i := range writers {
		wg.Go(func() {
			key := fmt.Sprintf("k%d", i%20) // ten writers per key
			res, err := n.Apply(context.Background(), &store.Command{Op: store.OpPut, Key: []byte(key), Value: []byte("v")})
			if err != nil {
				t.Error(err)
				return
			}
			mods[i] = res.Put.ModIndex
		})
	}
	wg.Wait()
	entries := n.raft.LastIndex() - before
	if entries >= writers {
		t.Fatalf("%d writes took %d entries: no group commit", writers, entries)
	}
	t.Logf("%d writes in %d entries", writers, entries)
	seen := map[string]map[uint64]bool{}
	for i, m := range mods {
		key := fmt.Sprintf("k%d", i%20)
		if seen[key] == nil {
			seen[key] = map[uint64]bool{}
		}
		if seen[key][m] {
			t.Fatalf("two writes of %s share mod_index %d", key, m)
		}
		seen[key][m] = true
	}
	for k := range 20 {
		rec, err := n.fsm.Get([]byte(fmt.Sprintf("k%d", k)))
		if err != nil || rec.Version != writers/20 {
			t.Fatalf("k%d: %+v %v, want version %d", k, rec, err, writers/20)
		}
	}
}

// A write whose context ends while it waits in the queue is reported as
// not applied, and is not applied.
func TestGroupCommitAbandonedWrite(t *testing.T) {
	n := single(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, errs := n.commit.ApplyMany([]context.Context{ctx}, []*store.Command{{Op: store.OpPut, Key: []byte("gone"), Value: []byte("v")}})
	err := errs[0]
	switch {
	case errors.Is(err, kv.ErrTimeout):
		if _, gerr := n.fsm.Get([]byte("gone")); !errors.Is(gerr, kv.ErrNotFound) {
			t.Fatalf("write reported not applied was applied: %v", gerr)
		}
	case errors.Is(err, kv.ErrOutcomeUnknown):
		// handed to raft before the cancellation was seen: allowed
	default:
		t.Fatalf("abandoned write: %v", err)
	}
}

// ApplyMany answers each command in order with its own result: writes of
// one key get distinct indexes, a failed condition stays in its Result,
// and a command whose context has ended is refused without being applied.
func TestApplyMany(t *testing.T) {
	n := single(t)
	ctx := context.Background()
	done, cancel := context.WithCancel(ctx)
	cancel()
	cmds := []*store.Command{
		{Op: store.OpPut, Key: []byte("a"), Value: []byte("1")},
		{Op: store.OpPut, Key: []byte("a"), Value: []byte("2")},
		{Op: store.OpPut, Key: []byte("b"), Value: []byte("x"), Cond: kv.Condition{IfModIndex: 1 << 40}},
		{Op: store.OpPut, Key: []byte("never"), Value: []byte("x")},
		{Op: store.OpDelete, Key: []byte("a")},
	}
	res, errs := n.ApplyMany([]context.Context{ctx, ctx, ctx, done, ctx}, cmds)
	for i, err := range errs {
		if i != 3 && err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	if !errors.Is(errs[3], kv.ErrTimeout) {
		t.Fatalf("command with an ended context: %v, want kv.ErrTimeout", errs[3])
	}
	if res[0].Put.ModIndex >= res[1].Put.ModIndex || res[1].Put.Version != 2 {
		t.Fatalf("two puts of one key: %+v then %+v", res[0].Put, res[1].Put)
	}
	if !errors.Is(res[2].Err, kv.ErrPreconditionFailed) {
		t.Fatalf("failed condition: %+v", res[2])
	}
	if res[4].Delete.Deleted != 1 || res[4].Index <= res[1].Index {
		t.Fatalf("delete after the puts: %+v", res[4])
	}
	if _, err := n.fsm.Get([]byte("never")); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("command refused as timed out was applied: %v", err)
	}
}

// Close while writers keep handing entries to raft, with group commit and
// without: raft's apply channel is buffered (BatchApplyCh), so an entry
// still in it when raft shut down would never be answered. Close must
// return, and every write must be answered (applied, or an error).
func TestCloseWhileApplying(t *testing.T) {
	for _, maxBatch := range []int{0, 1} {
		t.Run(fmt.Sprintf("MaxBatch=%d", maxBatch), func(t *testing.T) {
			for round := range 5 {
				dir := t.TempDir()
				fsm, err := store.Open(dir+"/kv.db", store.Options{})
				if err != nil {
					t.Fatal(err)
				}
				n, err := Open(Config{ID: "n1", DataDir: dir, RaftAddr: "127.0.0.1:0", MaxBatch: maxBatch}, fsm)
				if err != nil {
					t.Fatal(err)
				}
				if err := n.Bootstrap([]Server{{ID: "n1", RaftAddr: n.RaftAddr(), Voter: true}}); err != nil {
					t.Fatal(err)
				}
				var applied sync.WaitGroup
				var writes sync.WaitGroup
				var closing atomic.Bool
				for w := range 16 {
					applied.Add(1)
					writes.Go(func() {
						first := true
						for i := 0; ; i++ {
							_, err := n.Apply(context.Background(), &store.Command{Op: store.OpPut, Key: []byte(fmt.Sprintf("k%d-%d", w, i)), Value: []byte("v")})
							if err == nil && first {
								first = false
								applied.Done()
							}
							if err != nil && closing.Load() {
								if first {
									applied.Done()
								}
								return
							}
						}
					})
				}
				applied.Wait() // every writer got one write in: the node leads and writes flow
				closed := make(chan error, 1)
				closing.Store(true)
				go func() { closed <- n.Close() }()
				select {
				case err := <-closed:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("round %d: Close did not return with writes in flight", round)
				}
				done := make(chan struct{})
				go func() { writes.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					t.Fatalf("round %d: a write was never answered after Close", round)
				}
				if err := fsm.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
