package raftkv_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftnode"
)

// A cluster whose every node keeps its raft log in the WAL (raft-wal in
// wal/, with 4 KiB segments so that a few writes fill and rotate them):
// writes through every node; a follower whose state file is lost while it
// is down rebuilds it from its own log, read back from wal/; a snapshot
// compacts the leader's log, deleting the segments that held what a
// follower that was down lacks, so that follower installs the snapshot
// (raft then empties its WAL: raft-wal is a MonotonicLogStore); a restart
// of the whole cluster after that; and every acknowledged write is read
// back from every node.
//
// raft-wal still serves entries below its first index while they are in
// its unsealed tail segment: with the default 64 MiB segments, a leader
// that compacted its log would send such a follower the entries instead.
func TestClusterOnWAL(t *testing.T) {
	tuning := testkit.FastTuning
	tuning.SnapshotThreshold = 1 << 20 // snapshots only when asked
	tuning.TrailingLogs = 8
	c := testkit.NewCluster(t, 3, testkit.Options{Tuning: tuning, Configure: func(_ int, cfg *raftkv.Config) {
		cfg.LogStore = raftkv.LogStoreWAL
		raftkv.SetWALSegmentSize(cfg, 4<<10)
	}})
	for i := range c.Size() {
		if _, err := os.Stat(filepath.Join(c.Dir(i), "wal", "wal-meta.db")); err != nil {
			t.Fatalf("node %d: no WAL: %v", i, err)
		}
		if _, err := os.Stat(filepath.Join(c.Dir(i), "raft.db")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("node %d on the WAL has a raft.db (%v)", i, err)
		}
	}
	want := map[string]string{}
	var last uint64
	write := func(i int, key, value string) {
		t.Helper()
		last = put(t, c, i, key, value).ModIndex
		want[key] = value
	}
	waitApplied := func(i int) {
		t.Helper()
		if err := testkit.Eventually(20*time.Second, func() error {
			if a := c.Node(i).AppliedIndex(); a < last {
				return fmt.Errorf("node %d applied %d < %d", i, a, last)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Writes through every node (followers forward to the leader).
	for i := range 30 {
		write(i%3, fmt.Sprintf("a/%02d", i), strconv.Itoa(i))
	}

	// A follower restarts without its state file and no snapshot: every
	// entry it applies again is read from its WAL, exactly once.
	f := c.Follower()
	waitApplied(f)
	c.Stop(f)
	if err := os.Remove(filepath.Join(c.Dir(f), "kv.db")); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		write(c.Leader(), fmt.Sprintf("b/%02d", i), strconv.Itoa(i))
	}
	c.Restart(f)
	waitValue(t, c, f, "b/19", "19")
	waitValue(t, c, f, "a/00", "0")
	if idx := raftkv.RaftStats(c.Node(f))["last_snapshot_index"]; idx != "0" {
		t.Fatalf("follower restored a snapshot (index %s): the replay did not come from its log", idx)
	}
	resp, _ := get(t, c, f, "a/00", "?consistency=stale")
	if got := resp.Header.Get("X-Version"); got != "1" {
		t.Fatalf("a/00 X-Version after the replay %s, want 1", got)
	}
	waitSameDigest(t, c)

	// Another follower is down while the leader writes past its
	// trailing logs and snapshots: the leader's log no longer has what
	// the follower lacks, so it installs the snapshot.
	g := c.Follower()
	c.Stop(g)
	for i := range 40 {
		write(c.Leader(), fmt.Sprintf("c/%02d", i), strings.Repeat("x", 256+i))
	}
	l := c.Leader()
	segs := walSegments(t, c.Dir(l))
	if len(segs) < 3 {
		t.Fatalf("the leader's WAL holds segments %v: the writes rotated too few", segs)
	}
	if err := c.Node(l).Snapshot(); err != nil {
		t.Fatalf("snapshot on the leader: %v", err)
	}
	// Compaction deletes the segments wholly before the trailing logs.
	if err := testkit.Eventually(10*time.Second, func() error {
		if _, err := os.Stat(segs[0]); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the leader's first segment %s is still there (%v)", segs[0], err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c.Restart(g)
	waitValue(t, c, g, "c/39", want["c/39"])
	// raft records the snapshot just after the state machine has
	// restored it (what the read above saw): poll.
	if err := testkit.Eventually(10*time.Second, func() error {
		if stats := raftkv.RaftStats(c.Node(g)); stats["last_snapshot_index"] == "0" {
			return fmt.Errorf("follower reports no installed snapshot: %v", stats)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		write(i%3, fmt.Sprintf("d/%02d", i), strconv.Itoa(i))
	}

	// The whole cluster restarts from its compacted WALs.
	for i := range c.Size() {
		c.Stop(i)
	}
	for i := range c.Size() {
		c.Restart(i)
	}
	c.WaitReady()
	before := last
	for i := range 10 {
		write(i%3, fmt.Sprintf("e/%02d", i), strconv.Itoa(i))
	}
	if last <= before {
		t.Fatalf("index went backwards across the restart: %d after %d", last, before)
	}

	// Every acknowledged write, from every node's own state.
	waitSameDigest(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range c.Size() {
		for k, v := range want {
			rec, err := c.Node(i).Get(ctx, []byte(k), kv.ReadOptions{Consistency: kv.Stale})
			if err != nil || string(rec.Value) != v {
				t.Errorf("node %d: %s = %q, %v; want %q", i, k, rec.Value, err, v)
			}
		}
	}
}

// A data directory keeps the raft log store it was created with: a node
// started on it with the other kind refuses to start, names both, and
// leaves the directory as it was (the node starts again with its own kind,
// its writes there).
func TestLogStoreMismatchRefused(t *testing.T) {
	for _, tt := range []struct {
		name           string
		created, opens string
		have, asked    string // the paths the error names
	}{
		{"boltdb dir opened with wal", raftkv.LogStoreBoltDB, raftkv.LogStoreWAL, "raft.db", "wal/"},
		{"default dir opened with wal", "", raftkv.LogStoreWAL, "raft.db", "wal/"},
		{"wal dir opened with boltdb", raftkv.LogStoreWAL, raftkv.LogStoreBoltDB, "wal/", "raft.db"},
		{"wal dir opened with the default", raftkv.LogStoreWAL, "", "wal/", "raft.db"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "n1")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			open := func(kind string) (*raftkv.Node, error) {
				return raftkv.Open(raftkv.Config{ID: "n1", DataDir: dir, LogStore: kind, HTTPAddr: "127.0.0.1:0", Tuning: testkit.FastTuning})
			}
			n, err := open(tt.created)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := n.Put(ctx, []byte("k"), []byte("v")); err != nil {
				t.Fatal(err)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			before := listDir(t, dir)

			n, err = open(tt.opens)
			if err == nil {
				_ = n.Close()
				t.Fatalf("a %q data dir opened with %q", tt.created, tt.opens)
			}
			if !errors.Is(err, raftnode.ErrLogStoreMismatch) || !strings.Contains(err.Error(), tt.have) || !strings.Contains(err.Error(), tt.asked) {
				t.Fatalf("open: %v; want ErrLogStoreMismatch naming %s and %s", err, tt.have, tt.asked)
			}
			if after := listDir(t, dir); after != before {
				t.Fatalf("the refused open changed the data dir:\nbefore %s\nafter  %s", before, after)
			}

			n, err = open(tt.created)
			if err != nil {
				t.Fatalf("reopen with %q: %v", tt.created, err)
			}
			defer func() { _ = n.Close() }()
			if err := n.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			if rec, err := n.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil || string(rec.Value) != "v" {
				t.Fatalf("k after the refused open: %q, %v", rec.Value, err)
			}
		})
	}
	if _, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: t.TempDir(), LogStore: "rocksdb"}); err == nil || !strings.Contains(err.Error(), `"rocksdb"`) {
		t.Fatalf("an unknown log store: %v", err)
	}
}

// walSegments lists the segment files in dir's wal/, oldest first (their
// names start with their first index, zero-padded).
func walSegments(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// listDir names the files and directories under dir.
func listDir(t *testing.T, dir string) string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		names = append(names, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(names, " ")
}
