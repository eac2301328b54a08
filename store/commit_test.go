package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

// openDeferred opens a store without fsync (the only kind that defers
// commits) whose applied entries wait up to interval for their commit.
func openDeferred(t testing.TB, path string, interval time.Duration, commit func(*bbolt.Tx) error) *Store {
	t.Helper()
	s, err := Open(path, Options{CommitInterval: interval, commitTx: commit, NoSync: true, BootID: func() string { return "boot" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestDeferredCommitReadsSeeWhatWasApplied(t *testing.T) {
	s := openDeferred(t, filepath.Join(t.TempDir(), "kv.db"), time.Hour, nil)
	if res := applyOne(t, s, 1, putCmd("a", "1", kv.Condition{})); res.Err != nil {
		t.Fatal(res.Err)
	}
	applyOne(t, s, 2, Command{Op: OpSetNode, Key: []byte("n1"), Value: []byte("127.0.0.1:1")})
	if !s.pending.Load() {
		t.Fatal("the transaction was committed at once; want it held for the next batches")
	}
	// The leader's address, looked up for every forwarded batch, comes
	// from memory and leaves the transaction open.
	if addr, ok := s.NodeAPIAddr("n1"); !ok || addr != "127.0.0.1:1" {
		t.Fatalf("NodeAPIAddr = %q, %t", addr, ok)
	}
	if !s.pending.Load() {
		t.Fatal("NodeAPIAddr committed the transaction")
	}
	rec, err := s.Get([]byte("a"))
	if err != nil || string(rec.Value) != "1" || rec.ModIndex != 1 {
		t.Fatalf("Get = %+v, %v; want the applied value", rec, err)
	}
	if s.pending.Load() {
		t.Fatal("a read left the transaction open")
	}
}

func TestDeferredCommitTimer(t *testing.T) {
	s := openDeferred(t, filepath.Join(t.TempDir(), "kv.db"), 5*time.Millisecond, nil)
	applyOne(t, s, 1, putCmd("a", "1", kv.Condition{}))
	// No batch and no read follows: the timer commits.
	deadline := time.Now().Add(5 * time.Second)
	for s.pending.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the open transaction was not committed within 5s of its 5ms interval")
		}
		time.Sleep(time.Millisecond)
	}
	// And the next batch opens a new one, which the timer commits too.
	applyOne(t, s, 2, putCmd("b", "2", kv.Condition{}))
	for s.pending.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the second transaction was not committed")
		}
		time.Sleep(time.Millisecond)
	}
	if got := dump(t, s); got.Applied != 2 || len(got.Records) != 2 {
		t.Fatalf("state %+v, want two keys at index 2", got)
	}
}

func TestDeferredCommitBounds(t *testing.T) {
	s := openDeferred(t, filepath.Join(t.TempDir(), "kv.db"), time.Hour, nil)
	for i := range uint64(maxTxEntries) {
		applyOne(t, s, i+1, putCmd(fmt.Sprint("k", i), "v", kv.Condition{}))
		if want := i+1 < maxTxEntries; s.pending.Load() != want {
			t.Fatalf("after %d entries: transaction open %t, want %t", i+1, !want, want)
		}
	}
	big := Command{Op: OpPut, Key: []byte("big"), Value: make([]byte, maxTxBytes)}
	s.Apply(&raft.Log{Index: maxTxEntries + 1, Type: raft.LogCommand, Data: big.Encode(nil)})
	if s.pending.Load() {
		t.Fatalf("an entry of %d bytes left the transaction open", maxTxBytes)
	}
}

func TestDeferredCommitCloseAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Options{CommitInterval: time.Hour, NoSync: true, BootID: func() string { return "boot" }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(3) {
		applyOne(t, s, i+1, putCmd(fmt.Sprint("k", i), "v", kv.Condition{}))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDeferred(t, path, time.Hour, nil)
	if got := dump(t, s); got.Applied != 3 || len(got.Records) != 3 {
		t.Fatalf("after Close and Open: %+v, want three keys at index 3", got)
	}
	if s.Interrupted() {
		t.Fatal("Interrupted after a clean Close")
	}
}

// A process that dies with a transaction open leaves kv.db at its last
// commit, below what it applied and answered; the next Open says so.
func TestDeferredCommitProcessDeath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Options{CommitInterval: time.Hour, NoSync: true, BootID: func() string { return "boot" }})
	if err != nil {
		t.Fatal(err)
	}
	applyOne(t, s, 1, putCmd("a", "1", kv.Condition{}))
	if _, err := s.Get([]byte("a")); err != nil { // commits index 1
		t.Fatal(err)
	}
	applyOne(t, s, 2, putCmd("b", "2", kv.Condition{}))
	// Die: the open transaction goes, nothing is closed cleanly.
	s.mu.Lock()
	s.txMu.Lock()
	s.dropLocked()
	s.txMu.Unlock()
	db := s.db
	s.mu.Unlock()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDeferred(t, path, time.Hour, nil)
	if !s.Interrupted() {
		t.Fatal("Interrupted is false after a process died with kv.db open")
	}
	if got := dump(t, s); got.Applied != 1 || len(got.Records) != 1 {
		t.Fatalf("after the death: %+v, want the last commit's state (one key at index 1)", got)
	}
}

// With fsync on, every batch commits (and syncs) as it is applied.
func TestDeferredCommitOnlyWithoutFsync(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "kv.db"), Options{CommitInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	applyOne(t, s, 1, putCmd("a", "1", kv.Condition{}))
	if s.pending.Load() {
		t.Fatal("a store with fsync on left its transaction open")
	}
}

func TestDeferredCommitSnapshotAndRestore(t *testing.T) {
	s := openDeferred(t, filepath.Join(t.TempDir(), "kv.db"), time.Hour, nil)
	applyOne(t, s, 1, putCmd("a", "1", kv.Condition{}))
	applyOne(t, s, 2, putCmd("b", "2", kv.Condition{}))
	// A snapshot taken with the transaction open holds what was applied.
	snap := snapshotBytes(t, s)
	other := openTemp(t)
	if err := restoreBytes(other, snap); err != nil {
		t.Fatal(err)
	}
	if d := stateDiff(t, s, other); d != "" {
		t.Fatalf("a store restored from the snapshot differs: %s", d)
	}
	// A restore over an open transaction replaces it (and does not wait
	// for it forever).
	applyOne(t, s, 3, putCmd("c", "3", kv.Condition{}))
	if !s.pending.Load() {
		t.Fatal("want an open transaction before the restore")
	}
	done := make(chan error, 1)
	go func() { done <- restoreBytes(s, snap) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Restore over an open transaction did not return in 10s")
	}
	if got := dump(t, s); got.Applied != 2 || len(got.Records) != 2 {
		t.Fatalf("after the restore: %+v, want the snapshot's two keys at index 2", got)
	}
}

func TestDeferredCommitFailureStopsReads(t *testing.T) {
	errInjected := errors.New("injected commit failure")
	var fail atomic.Bool
	commit := func(tx *bbolt.Tx) error {
		if fail.Load() {
			_ = tx.Rollback()
			return errInjected
		}
		return tx.Commit()
	}
	s := openDeferred(t, filepath.Join(t.TempDir(), "kv.db"), time.Hour, commit)
	applyOne(t, s, 1, putCmd("a", "1", kv.Condition{}))
	snap := snapshotBytes(t, s)
	// Applied and answered, then lost with its commit: the file is behind
	// the applied index readers were told of.
	if res := applyOne(t, s, 2, putCmd("b", "2", kv.Condition{})); res.Err != nil {
		t.Fatal(res.Err)
	}
	fail.Store(true)
	if _, err := s.Get([]byte("b")); !errors.Is(err, errInjected) {
		t.Fatalf("Get after a failed commit: %v, want an error wrapping the commit's", err)
	}
	if _, err := s.Get([]byte("a")); !errors.Is(err, errInjected) {
		t.Fatalf("Get of an older key after a failed commit: %v, want every read refused with the commit's error", err)
	}
	if !errors.Is(s.Err(), errInjected) {
		t.Fatalf("Err = %v, want the commit's error", s.Err())
	}
	if res := applyOne(t, s, 3, putCmd("c", "3", kv.Condition{})); !errors.Is(res.Err, errInjected) {
		t.Fatalf("apply after a failed commit: %v, want the store's error", res.Err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, errInjected) {
		t.Fatalf("Snapshot after a failed commit: %v, want the commit's error", err)
	}
	// A restore brings the store back.
	fail.Store(false)
	if err := restoreBytes(s, snap); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Get([]byte("a")); err != nil || string(rec.Value) != "1" {
		t.Fatalf("Get after the restore: %+v, %v", rec, err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err after the restore: %v", err)
	}
}

// A reader that saw applied index i finds the write of i, however the
// commits (by the timer, by other readers, by the next batch) fall.
func TestDeferredCommitReadsNeverMissAnAppliedWrite(t *testing.T) {
	s := openDeferred(t, filepath.Join(t.TempDir(), "kv.db"), time.Millisecond, nil)
	const n = 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := s.AppliedIndex()
				if i == 0 {
					continue
				}
				j := i - uint64(r)%i // i itself, or a little behind it
				rec, err := s.Get(fmt.Appendf(nil, "k/%d", j))
				if err != nil || rec.ModIndex != j {
					t.Errorf("applied index %d, Get(k/%d) = %+v, %v", i, j, rec, err)
					return
				}
			}
		})
	}
	for i := uint64(1); i <= n; i++ {
		applyOne(t, s, i, putCmd(fmt.Sprintf("k/%d", i), "v", kv.Condition{}))
		if i%100 == 0 {
			// Now and then, no next batch: the timer, or a reader,
			// commits.
			deadline := time.Now().Add(5 * time.Second)
			for s.pending.Load() && time.Now().Before(deadline) {
				runtime.Gosched()
			}
		}
	}
	close(stop)
	wg.Wait()
}
