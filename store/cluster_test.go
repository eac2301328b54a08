package store

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

// The cluster identity: the first OpSetCluster sets it, a later one
// changes nothing; it survives a restart and travels in snapshots; the
// digest does not cover it.
func TestClusterID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ClusterID(); got != "" {
		t.Fatalf("new store: cluster id %q, want none", got)
	}
	applyOne(t, s, 1, putCmd("a", "1", kv.Condition{}))
	before, err := s.Digest()
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		index uint64
		id    string
		want  string
	}{
		{2, "first", "first"},
		{3, "second", "first"}, // a later leader's proposal changes nothing
	}
	for _, st := range steps {
		res := applyOne(t, s, st.index, Command{Op: OpSetCluster, Value: []byte(st.id)})
		if res.Err != nil {
			t.Fatalf("set_cluster %q: %v", st.id, res.Err)
		}
		if got := s.ClusterID(); got != st.want {
			t.Fatalf("after set_cluster %q at %d: cluster id %q, want %q", st.id, st.index, got, st.want)
		}
	}
	after, err := s.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if after.SHA256 != before.SHA256 || after.Keys != before.Keys {
		t.Fatalf("the digest changed with the identity: %+v, then %+v", before, after)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if got := s.ClusterID(); got != "first" {
		t.Fatalf("after a restart: cluster id %q, want %q", got, "first")
	}

	// A snapshot carries it to a store that has another.
	var buf bytes.Buffer
	e, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	_ = e.Close()
	other := openTemp(t)
	applyOne(t, other, 1, Command{Op: OpSetCluster, Value: []byte("other")})
	if err := other.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := other.ClusterID(); got != "first" {
		t.Fatalf("after a restore: cluster id %q, want %q", got, "first")
	}
}

// A bad identity does not decode: every node refuses it the same way.
func TestSetClusterShape(t *testing.T) {
	tests := []struct {
		name string
		cmd  Command
	}{
		{"empty", Command{Op: OpSetCluster}},
		{"space", Command{Op: OpSetCluster, Value: []byte("a b")}},
		{"too long", Command{Op: OpSetCluster, Value: bytes.Repeat([]byte("a"), kv.MaxClusterIDSize+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeEntry(tt.cmd.Encode(nil)); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("DecodeEntry: %v, want ErrBadCommand", err)
			}
		})
	}
}

// Reseed gives a backup a new identity and term and forgets the members'
// API addresses; the key space, its digest and the applied index stay.
func TestBackupReseed(t *testing.T) {
	s := openTemp(t)
	applyOne(t, s, 1, Command{Op: OpSetCluster, Value: []byte("old")})
	applyOne(t, s, 2, Command{Op: OpSetNode, Key: []byte("n1"), Value: []byte("127.0.0.1:8001")})
	for i, k := range []string{"a", "b", "c"} {
		applyOne(t, s, uint64(3+i), putCmd(k, "v"+k, kv.Condition{}))
	}
	want, err := s.Digest()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	e, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	_ = e.Close()

	dir := t.TempDir()
	b, err := OpenBackup(bytes.NewReader(buf.Bytes()), filepath.Join(dir, "scratch"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := b.Summary(); sum.ClusterID != "old" || sum.Index != 5 || sum.SHA256 != want.SHA256 {
		t.Fatalf("summary %+v, want cluster old, index 5, digest %s", sum, want.SHA256)
	}
	if err := b.Reseed("bad id", 1); !errors.Is(err, kv.ErrBadRequest) {
		t.Fatalf("Reseed with a bad id: %v", err)
	}
	if err := b.Reseed("new", 1); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := b.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	r := openTemp(t)
	if err := r.Restore(io.NopCloser(bytes.NewReader(out.Bytes()))); err != nil {
		t.Fatal(err)
	}
	got, err := r.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("digest after reseed %+v, want %+v", got, want)
	}
	if id := r.ClusterID(); id != "new" {
		t.Fatalf("cluster id %q, want new", id)
	}
	if nodes, err := r.NodeAPIAddrs(); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes after reseed: %v, %v; want none", nodes, err)
	}
	sum, err := InspectSnapshot(bytes.NewReader(out.Bytes()), filepath.Join(dir, "inspect"))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Term != 1 || sum.ClusterID != "new" || sum.Index != 5 {
		t.Fatalf("reseeded stream: %+v, want term 1, cluster new, index 5", sum)
	}
}
