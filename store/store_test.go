package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

func TestList(t *testing.T) {
	s := openTemp(t)
	keys := []string{"a", "b", "b/\x00", "b/1", "b/2", "b/3", "b/\xff", "b0", "c"}
	var logs []*raft.Log
	for i, k := range keys {
		logs = append(logs, entry(uint64(i+1), putCmd(k, "v"+k, kv.Condition{})))
	}
	s.ApplyBatch(logs)

	str := func(items []kv.Record) []string {
		var out []string
		for _, r := range items {
			out = append(out, string(r.Key))
		}
		return out
	}
	tests := []struct {
		name     string
		opts     kv.ListOptions
		want     []string
		wantMore bool
	}{
		{"all", kv.ListOptions{}, keys, false},
		{"prefix", kv.ListOptions{Prefix: []byte("b/")}, []string{"b/\x00", "b/1", "b/2", "b/3", "b/\xff"}, false},
		{"prefix limit", kv.ListOptions{Prefix: []byte("b/"), Limit: 2}, []string{"b/\x00", "b/1"}, true},
		{"prefix after", kv.ListOptions{Prefix: []byte("b/"), After: []byte("b/1"), Limit: 2}, []string{"b/2", "b/3"}, true},
		{"last page exact", kv.ListOptions{Prefix: []byte("b/"), After: []byte("b/2"), Limit: 2}, []string{"b/3", "b/\xff"}, false},
		{"after absent key", kv.ListOptions{Prefix: []byte("b/"), After: []byte("b/15")}, []string{"b/2", "b/3", "b/\xff"}, false},
		{"after before prefix", kv.ListOptions{Prefix: []byte("b/"), After: []byte("a"), Limit: 1}, []string{"b/\x00"}, true},
		{"after past prefix", kv.ListOptions{Prefix: []byte("b/"), After: []byte("b0")}, nil, false},
		{"no match", kv.ListOptions{Prefix: []byte("zz")}, nil, false},
		{"limit all", kv.ListOptions{Limit: len(keys)}, keys, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.List(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(str(got.Items), tt.want) || got.More != tt.wantMore {
				t.Errorf("got %q more=%v, want %q more=%v", str(got.Items), got.More, tt.want, tt.wantMore)
			}
			if got.Index != uint64(len(keys)) {
				t.Errorf("Index = %d, want %d", got.Index, len(keys))
			}
			if n := len(got.Items); n > 0 && !bytes.Equal(got.Next, got.Items[n-1].Key) {
				t.Errorf("Next = %q, want the last key %q", got.Next, got.Items[n-1].Key)
			}
			for _, r := range got.Items {
				if string(r.Value) != "v"+string(r.Key) || r.Version != 1 || r.ModIndex == 0 {
					t.Errorf("bad record %+v", r)
				}
			}
		})
	}

	// Paging with Next visits every key once; KeysOnly leaves values out.
	var paged []string
	opts := kv.ListOptions{Limit: 2, KeysOnly: true}
	for {
		page, err := s.List(opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Items {
			if r.Value != nil {
				t.Errorf("KeysOnly returned a value for %q", r.Key)
			}
		}
		paged = append(paged, str(page.Items)...)
		if !page.More {
			break
		}
		opts.After = page.Next
	}
	if !reflect.DeepEqual(paged, keys) {
		t.Errorf("paged %q, want %q", paged, keys)
	}
}

func TestGetReturnsCopies(t *testing.T) {
	s := openTemp(t)
	applyOne(t, s, 1, putCmd("k", "value", kv.Condition{}))
	rec, err := s.Get([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	want := kv.Record{Key: []byte("k"), Value: []byte("value"), CreateIndex: 1, ModIndex: 1, Version: 1}
	if !reflect.DeepEqual(rec, want) {
		t.Fatalf("Get = %+v, want %+v", rec, want)
	}
	copy(rec.Value, "XXXXX")
	rec.Key[0] = 'X'
	// Write enough to make bbolt reuse pages, then read again.
	for i := range 50 {
		applyOne(t, s, uint64(i+2), putCmd("k", string(make([]byte, 1000)), kv.Condition{}))
	}
	applyOne(t, s, 100, putCmd("k", "value", kv.Condition{}))
	if again, err := s.Get([]byte("k")); err != nil || string(again.Value) != "value" || string(again.Key) != "k" {
		t.Errorf("Get after mutating a returned record: %+v, %v", again, err)
	}
	if _, err := s.Get([]byte("missing")); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func TestWaitApplied(t *testing.T) {
	s := openTemp(t)
	done := make(chan error, 1)
	go func() { done <- s.WaitApplied(context.Background(), 3) }()

	for i := uint64(1); i <= 3; i++ {
		select {
		case err := <-done:
			t.Fatalf("WaitApplied(3) returned %v at applied index %d", err, i-1)
		default:
		}
		applyOne(t, s, i, Command{Op: OpNoop})
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied(3) = %v", err)
	}
	if err := s.WaitApplied(context.Background(), 2); err != nil {
		t.Errorf("WaitApplied of a past index = %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- s.WaitApplied(ctx, 10) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WaitApplied after cancel = %v, want context.Canceled", err)
	}

	go func() { done <- s.WaitApplied(context.Background(), 10) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, kv.ErrClosed) {
		t.Errorf("WaitApplied after Close = %v, want kv.ErrClosed", err)
	}
}

func TestSetAppliedFloor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s := openAt(t, path)
	applyOne(t, s, 5, Command{Op: OpNoop})

	done := make(chan error, 1)
	go func() { done <- s.WaitApplied(context.Background(), 9) }()
	if err := s.SetAppliedFloor(9); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied after SetAppliedFloor = %v", err)
	}
	if err := s.SetAppliedFloor(7); err != nil || s.AppliedIndex() != 9 {
		t.Fatalf("lower floor: %v, applied %d; want nil, 9", err, s.AppliedIndex())
	}
	if r := s.Apply(entry(8, putCmd("k", "v", kv.Condition{}))); r != nil {
		t.Errorf("entry below the floor applied: %+v", r)
	}
	s.Close()
	if s = openAt(t, path); s.AppliedIndex() != 9 {
		t.Errorf("floor not persisted: applied %d after reopen", s.AppliedIndex())
	}
}

func TestCloseAndLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s := openAt(t, path)
	applyOne(t, s, 1, putCmd("k", "v", kv.Condition{}))
	if s.FileSize() <= 0 {
		t.Errorf("FileSize = %d", s.FileSize())
	}

	if other, err := Open(path, Options{}); err == nil {
		other.Close()
		t.Fatal("a second Open of the same file succeeded")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := s.Get([]byte("k")); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("Get after Close = %v, want kv.ErrClosed", err)
	}
	if _, err := s.List(kv.ListOptions{}); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("List after Close = %v, want kv.ErrClosed", err)
	}
	if res := first(s.Apply(entry(2, Command{Op: OpNoop}))); res == nil || !errors.Is(res.Err, kv.ErrClosed) {
		t.Errorf("Apply after Close = %+v, want kv.ErrClosed", res)
	}
	if _, err := s.Snapshot(); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("Snapshot after Close = %v, want kv.ErrClosed", err)
	}
}

func TestDigest(t *testing.T) {
	a, b := openTemp(t), openTemp(t)
	logs := []*raft.Log{
		entry(1, putCmd("a", "1", kv.Condition{})),
		entry(2, putCmd("b", "2", kv.Condition{})),
	}
	a.ApplyBatch(logs)
	b.ApplyBatch(logs)
	da, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	db, _ := b.Digest()
	if da != db || da.Keys != 2 || da.AppliedIndex != 2 {
		t.Fatalf("same entries, digests %+v and %+v", da, db)
	}
	// One more write anywhere changes it.
	b.ApplyBatch([]*raft.Log{entry(3, putCmd("a", "1", kv.Condition{}))})
	if db, _ = b.Digest(); db.SHA256 == da.SHA256 {
		t.Fatalf("digest unchanged after a write bumped a version")
	}
}
