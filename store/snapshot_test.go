package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"reflect"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// bufSink is a raft.SnapshotSink that keeps the snapshot in memory.
type bufSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (b *bufSink) ID() string    { return "test" }
func (b *bufSink) Close() error  { b.closed = true; return nil }
func (b *bufSink) Cancel() error { b.cancelled = true; return nil }

// snapshotBytes takes a snapshot of s and persists it into memory.
func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func restoreBytes(s *Store, b []byte) error {
	return s.Restore(io.NopCloser(bytes.NewReader(b)))
}

func TestSnapshotRestore(t *testing.T) {
	src := openTemp(t)
	logs := randomEntries(200, 4)
	src.ApplyBatch(logs[:150])
	applyOne(t, src, 151, Command{Op: OpSetNode, Key: []byte("n1"), Value: []byte("h:1")})
	want := dump(t, src)

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after Snapshot() do not leak into the snapshot.
	src.ApplyBatch(logs[151:])
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := openTemp(t)
	dst.ApplyBatch(randomEntries(300, 5)) // state that must be discarded
	waited := make(chan error, 1)
	go func() { waited <- dst.WaitApplied(context.Background(), 1000) }()
	if err := restoreBytes(dst, sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, dst); !reflect.DeepEqual(got, want) {
		t.Errorf("restored state:\n got %+v\nwant %+v", got, want)
	}
	if _, err := os.Stat(restorePath(dst.path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file left behind: %v", err)
	}

	// The restored store goes on applying, and survives a reopen.
	if res := applyOne(t, dst, 152, putCmd("after", "x", kv.Condition{})); res.Err != nil {
		t.Fatal(res.Err)
	}
	select {
	case err := <-waited:
		t.Fatalf("WaitApplied(1000) returned early: %v", err)
	default:
	}
	dst.SetAppliedFloor(1000)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	want = dump(t, dst)
	path := dst.path
	dst.Close()
	if got := dump(t, openAt(t, path)); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen:\n got %+v\nwant %+v", got, want)
	}
}

func TestRestoreRejectsBadStreams(t *testing.T) {
	src := openTemp(t)
	src.ApplyBatch(randomEntries(50, 6))
	good := snapshotBytes(t, src)

	dst := openTemp(t)
	applyOne(t, dst, 1, putCmd("keep", "me", kv.Condition{}))
	want := dump(t, dst)

	flip := func(at int) []byte {
		b := bytes.Clone(good)
		b[at] ^= 0x40
		return b
	}
	otherIndex := bytes.Clone(good)
	otherIndex[len(snapshotMagic)+4+7]++ // header index no longer matches the file
	tests := []struct {
		name string
		in   []byte
		bad  bool // the error wraps ErrBadSnapshot
	}{
		{"empty", nil, true},
		{"short header", good[:10], true},
		{"bad magic", flip(0), true},
		{"unknown format", flip(len(snapshotMagic) + 3), true},
		{"index mismatch", otherIndex, true},
		{"truncated body", good[:len(good)/2], true},
		{"missing checksum", good[:len(good)-4], true},
		{"corrupt body", flip(snapshotHdrSize + 5000), true},
		{"corrupt checksum", flip(len(good) - 1), true},
		{"not bbolt", notBbolt(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := restoreBytes(dst, tt.in)
			if err == nil || errors.Is(err, ErrBadSnapshot) != tt.bad {
				t.Fatalf("Restore = %v, want an error (ErrBadSnapshot: %v)", err, tt.bad)
			}
			if got := dump(t, dst); !reflect.DeepEqual(got, want) {
				t.Errorf("state after a failed restore:\n got %+v\nwant %+v", got, want)
			}
			if _, err := os.Stat(restorePath(dst.path)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temp file left behind: %v", err)
			}
		})
	}
}

// notBbolt is a well-formed stream whose body is not a bbolt file.
func notBbolt() []byte {
	body := bytes.Repeat([]byte("not a database "), 1000)
	b := []byte(snapshotMagic)
	b = binary.BigEndian.AppendUint32(b, snapshotFormat)
	b = binary.BigEndian.AppendUint64(b, 1)
	b = binary.BigEndian.AppendUint64(b, uint64(len(body)))
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
}

// TestConcurrentReadsDuringRestoreAndApply is meant for -race: readers
// hammer Get and List while batches, snapshots and restores run.
func TestConcurrentReadsDuringRestoreAndApply(t *testing.T) {
	src := openTemp(t)
	src.ApplyBatch(randomEntries(100, 7))
	snaps := [][]byte{snapshotBytes(t, src)}
	src.ApplyBatch(randomEntries(400, 8)[100:])
	snaps = append(snaps, snapshotBytes(t, src))

	s := openTemp(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Appendf(nil, "k/%d", (i+r)%8)
				if rec, err := s.Get(key); err != nil && !errors.Is(err, kv.ErrNotFound) {
					t.Errorf("Get: %v", err)
					return
				} else if err == nil && !bytes.Equal(rec.Key, key) {
					t.Errorf("Get(%q) returned key %q", key, rec.Key)
				}
				page, err := s.List(kv.ListOptions{Prefix: []byte("k/"), Limit: 3})
				if err != nil {
					t.Errorf("List: %v", err)
					return
				}
				for _, rec := range page.Items {
					if rec.ModIndex == 0 || rec.ModIndex > page.Index || rec.CreateIndex > rec.ModIndex {
						t.Errorf("inconsistent record %+v at index %d", rec, page.Index)
					}
				}
				s.AppliedIndex()
				s.NodeAPIAddrs()
			}
		})
	}
	// A snapshot of s persisted while restores replace the file under it.
	wg.Go(func() {
		for range 5 {
			snap, err := s.Snapshot()
			if err != nil {
				t.Errorf("Snapshot: %v", err)
				return
			}
			if err := snap.Persist(&bufSink{}); err != nil {
				t.Errorf("Persist: %v", err)
			}
			snap.Release()
		}
	})

	logs := randomEntries(1000, 9)
	for i := range 20 {
		if err := restoreBytes(s, snaps[i%2]); err != nil {
			t.Fatal(err)
		}
		from := s.AppliedIndex()
		for _, r := range s.ApplyBatch(logs[from : from+20]) {
			if res := first(r); res != nil && res.Err != nil && !errors.Is(res.Err, kv.ErrPreconditionFailed) {
				t.Fatalf("ApplyBatch: %v", res.Err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
}

// Restore is also the path raft takes for a snapshot of an empty store.
func TestRestoreEmpty(t *testing.T) {
	b := snapshotBytes(t, openTemp(t))
	s := openTemp(t)
	s.ApplyBatch([]*raft.Log{entry(1, putCmd("k", "v", kv.Condition{}))})
	if err := restoreBytes(s, b); err != nil {
		t.Fatal(err)
	}
	if st := dump(t, s); len(st.Records) != 0 || st.Applied != 0 {
		t.Errorf("restored empty snapshot: %+v", st)
	}
}
