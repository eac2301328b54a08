package raftkv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// waitValue polls node i with stale reads until key has value.
func waitValue(t *testing.T, c *testkit.Cluster, i int, key, value string) {
	t.Helper()
	err := testkit.Eventually(15*time.Second, func() error {
		resp, body := get(t, c, i, key, "?consistency=stale")
		if resp.StatusCode != http.StatusOK || body != value {
			return fmt.Errorf("node %d %s: %d %q, want %q", i, key, resp.StatusCode, body, value)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestartedFollowerCatchesUpFromLog(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	f := c.Follower()
	put(t, c, c.Leader(), "before", "1")
	waitValue(t, c, f, "before", "1")
	c.Stop(f)
	for i := range 30 {
		put(t, c, c.Leader(), "while-down/"+strconv.Itoa(i), strconv.Itoa(i))
	}
	c.Restart(f)
	waitValue(t, c, f, "while-down/29", "29")
	waitValue(t, c, f, "before", "1")
	// Its own state machine did not re-apply old entries: versions are exact.
	resp, _ := get(t, c, f, "before", "?consistency=stale")
	if got := resp.Header.Get("X-Version"); got != "1" {
		t.Fatalf("X-Version after restart %s, want 1", got)
	}
}

func TestFarBehindFollowerInstallsSnapshot(t *testing.T) {
	tuning := testkit.FastTuning
	tuning.SnapshotThreshold = 64
	tuning.SnapshotInterval = 100 * time.Millisecond
	tuning.TrailingLogs = 8
	c := testkit.NewCluster(t, 3, testkit.Options{Tuning: tuning})
	f := c.Follower()
	c.Stop(f)
	const keys = 300
	for i := range keys {
		put(t, c, c.Leader(), fmt.Sprintf("bulk/%03d", i), strconv.Itoa(i))
	}
	l := c.Leader()
	if err := c.Node(l).Snapshot(); err != nil {
		t.Fatalf("snapshot on leader: %v", err)
	}
	c.Restart(f)
	waitValue(t, c, f, fmt.Sprintf("bulk/%03d", keys-1), strconv.Itoa(keys-1))
	// It got there through a snapshot: the log it needed was compacted away.
	stats := raftkv.RaftStats(c.Node(f))
	if idx, _ := strconv.ParseUint(stats["last_snapshot_index"], 10, 64); idx == 0 {
		t.Fatalf("follower reports no installed snapshot: %v", stats)
	}
	waitValue(t, c, f, "bulk/000", "0")

	// It survives a restart after the install, and keeps following.
	c.Stop(f)
	c.Restart(f)
	c.WaitReady()
	waitValue(t, c, f, "bulk/150", "150")
	put(t, c, c.Leader(), "after-install", "yes")
	waitValue(t, c, f, "after-install", "yes")
	resp, body := get(t, c, f, "bulk/?prefix&keys_only&limit=1000", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
}

// Stopping every node and starting them again from their directories (a
// second `make run`) keeps every acknowledged write, and indexes go on
// from where they were.
func TestWholeClusterRestartKeepsData(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	var last uint64
	for i := range 10 {
		last = put(t, c, i%3, "keep/"+strconv.Itoa(i), strconv.Itoa(i)).ModIndex
	}
	for i := range c.Size() {
		c.Stop(i)
	}
	for i := range c.Size() {
		c.Restart(i)
	}
	c.WaitReady()
	for i := range c.Size() {
		for k := range 10 {
			resp, body := get(t, c, i, "keep/"+strconv.Itoa(k), "")
			if resp.StatusCode != http.StatusOK || body != strconv.Itoa(k) {
				t.Fatalf("node %d keep/%d after restart: %d %q", i, k, resp.StatusCode, body)
			}
		}
	}
	if next := put(t, c, 0, "after-restart", "x").ModIndex; next <= last {
		t.Fatalf("index went backwards across a restart: %d after %d", next, last)
	}
}

// GET /v1/debug/hash: replicas that applied the same entries agree.
func TestReplicasConvergeToSameDigest(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	for i := range 20 {
		put(t, c, i%3, "d/"+strconv.Itoa(i%7), strconv.Itoa(i))
	}
	last := put(t, c, 0, "d/last", "x").ModIndex
	if d := waitSameDigest(t, c); d.AppliedIndex < last || d.Keys != 8 {
		t.Fatalf("digest %+v: want applied index >= %d and 8 keys", d, last)
	}
}

// waitSameDigest waits until every node reports the same applied index and
// content hash, and returns it.
func waitSameDigest(t *testing.T, c *testkit.Cluster) kv.DigestInfo {
	t.Helper()
	var first kv.DigestInfo
	err := testkit.Eventually(10*time.Second, func() error {
		for i := range c.Size() {
			resp, body := c.Do(http.MethodGet, c.URL(i)+"/v1/debug/hash", nil, nil)
			var d kv.DigestInfo
			if err := json.Unmarshal(body, &d); err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("node %d: %d %s", i, resp.StatusCode, body)
			}
			if i == 0 {
				first = d
			} else if d.SHA256 != first.SHA256 || d.AppliedIndex != first.AppliedIndex {
				return fmt.Errorf("node %d digest %+v differs from node 0's %+v", i, d, first)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return first
}

// A machine that stops while kv.db has writes not yet synced (the state
// file runs without fsync; the raft log is the durable record) may leave
// kv.db torn. The node must notice on start, discard it, and rebuild its
// state from its newest snapshot and its log: every acknowledged write is
// there, applied exactly once.
func TestStateFileRebuiltAfterMachineStop(t *testing.T) {
	tuning := testkit.FastTuning
	tuning.SnapshotThreshold = 1 << 20 // snapshots only when asked
	c := testkit.NewCluster(t, 3, testkit.Options{Tuning: tuning})
	f := c.Follower()
	for i := range 40 {
		put(t, c, c.Leader(), fmt.Sprintf("torn/%02d", i), strconv.Itoa(i))
	}
	waitValue(t, c, f, "torn/39", "39")
	if err := c.Node(f).Snapshot(); err != nil {
		t.Fatalf("snapshot on follower: %v", err)
	}
	for i := 40; i < 80; i++ {
		put(t, c, c.Leader(), fmt.Sprintf("torn/%02d", i), strconv.Itoa(i))
	}
	waitValue(t, c, f, "torn/79", "79")
	c.Stop(f)

	tearStateFile(t, c.Dir(f))
	c.Restart(f)
	for _, i := range []int{0, 39, 40, 79} {
		waitValue(t, c, f, fmt.Sprintf("torn/%02d", i), strconv.Itoa(i))
	}
	resp, _ := get(t, c, f, "torn/50", "?consistency=stale")
	if got := resp.Header.Get("X-Version"); got != "1" {
		t.Fatalf("X-Version after the rebuild %s, want 1", got)
	}
	put(t, c, c.Leader(), "after-rebuild", "yes")
	waitValue(t, c, f, "after-rebuild", "yes")
	waitSameDigest(t, c)
}

// A node whose kv.db was discarded after a machine stop, or removed by an
// operator (a corrupted kv.db: docs/operations.md), restarts from its
// snapshot, behind what it had served; one whose process died restarts
// from kv.db's last commit, which may be behind what it had applied and
// served (deferred commits: docs/architecture.md). Its stale reads must not
// go back in time while raft replays the log: they wait until the node has
// applied again what it had before, and never answer from the older state.
func TestStaleReadsNeverGoBackAfterRebuild(t *testing.T) {
	for _, tt := range []struct {
		name string
		// lose does it to the stopped node's data dir; early is the
		// node's kv.db from before the writes it served.
		lose func(t *testing.T, dir string, early []byte)
	}{
		{"discarded after a machine stop", func(t *testing.T, dir string, _ []byte) { tearStateFile(t, dir) }},
		{"removed by the operator", func(t *testing.T, dir string, _ []byte) {
			if err := os.Remove(filepath.Join(dir, "kv.db")); err != nil {
				t.Fatal(err)
			}
		}},
		{"the process died with applied writes not committed", func(t *testing.T, dir string, early []byte) {
			// What a process that dies leaves: kv.db at its last commit,
			// below what it applied and served, and the marker of a
			// store open (without fsync) in this boot.
			db := filepath.Join(dir, "kv.db")
			if err := os.WriteFile(db, early, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(db+".sync", []byte("open "+store.ReadBootID()+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) { testStaleReadsAfterRebuild(t, tt.lose) })
	}
}

func testStaleReadsAfterRebuild(t *testing.T, lose func(t *testing.T, dir string, early []byte)) {
	tuning := testkit.FastTuning
	tuning.SnapshotThreshold = 1 << 20 // snapshots only when asked
	var slow atomic.Bool
	var f int
	c := testkit.NewCluster(t, 3, testkit.Options{Tuning: tuning, Configure: func(i int, cfg *raftkv.Config) {
		if slow.Load() && i == f {
			// Widen the replay: the state machine stalls after each batch.
			raftkv.SetApplyDelay(cfg, 300*time.Millisecond)
		}
	}})
	f = c.Follower()
	put(t, c, c.Leader(), "old", "before-snapshot")
	waitValue(t, c, f, "old", "before-snapshot")
	if err := c.Node(f).Snapshot(); err != nil {
		t.Fatalf("snapshot on follower: %v", err)
	}
	// The follower's kv.db as it is now, unpacked from its snapshot stream.
	var stream bytes.Buffer
	if _, err := c.Node(f).WriteSnapshot(context.Background(), &stream, kv.ReadOptions{Consistency: kv.Stale}); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(t.TempDir(), "early.db")
	backup, err := store.OpenBackup(&stream, scratch)
	if err != nil {
		t.Fatal(err)
	}
	early, err := os.ReadFile(scratch)
	if cerr := backup.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	const writes = 300
	for i := 1; i <= writes; i++ {
		put(t, c, c.Leader(), "hot", strconv.Itoa(i))
	}
	waitValue(t, c, f, "hot", strconv.Itoa(writes))
	resp, _ := get(t, c, f, "hot", "?consistency=stale")
	seen, _ := strconv.ParseUint(resp.Header.Get("X-Raft-Index"), 10, 64)
	if seen == 0 || resp.Header.Get("X-Version") != strconv.Itoa(writes) {
		t.Fatalf("stale read before the stop: index %d, version %s", seen, resp.Header.Get("X-Version"))
	}
	c.Stop(f)

	lose(t, c.Dir(f), early)
	slow.Store(true)
	c.Restart(f)

	// Read at once and until the node has caught up: every answer is at
	// least as new as the one before the stop, or a refusal to answer.
	answered := 0
	err = testkit.Eventually(30*time.Second, func() error {
		resp, body := get(t, c, f, "hot", "?consistency=stale&wait=200ms")
		index, _ := strconv.ParseUint(resp.Header.Get("X-Raft-Index"), 10, 64)
		switch resp.StatusCode {
		case http.StatusGatewayTimeout:
			return fmt.Errorf("held: %s", body) // waiting for the replay: fine
		case http.StatusOK:
			answered++
			if index < seen || body != strconv.Itoa(writes) {
				t.Fatalf("stale read went back in time: index %d (had served %d), value %q (want %d)", index, seen, body, writes)
			}
			return nil
		default:
			t.Fatalf("stale read during the rebuild: %d %s (index %d, had served %d)", resp.StatusCode, body, index, seen)
		}
		return nil
	})
	if err != nil || answered == 0 {
		t.Fatalf("no stale read answered after the rebuild: %v", err)
	}
}

// tearStateFile leaves in a stopped node's data dir what a power cut can:
// pages of kv.db never written back, and the marker of a boot that is not
// this one, so that the next start discards kv.db and rebuilds it.
func tearStateFile(t *testing.T, dir string) {
	t.Helper()
	db := filepath.Join(dir, "kv.db")
	if err := os.WriteFile(db, bytes.Repeat([]byte{0xab}, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db+".sync", []byte("open 00000000-0000-0000-0000-000000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
