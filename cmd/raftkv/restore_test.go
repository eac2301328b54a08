package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// serveCLI runs raftkv serve with args until the test ends.
func serveCLI(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--log-level", "warn"}, args...), strings.NewReader(""), io.Discard, testWriter{t})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("raftkv serve %s: %v", strings.Join(args, " "), err)
		}
	})
}

// testWriter sends a serve's log to the test log when RAFTKV_TEST_LOG is
// set.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("RAFTKV_TEST_LOG") != "" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Done-when of backups (issue 15): raftkv snapshot save from a real
// three-node cluster while writes go on, raftkv snapshot restore into the
// data directories of a new three-node cluster, raftkv serve on each: the
// new cluster forms by itself, holds exactly the saved state (its digest
// is the snapshot's), takes writes, has a new identity, and it and the
// old cluster refuse each other's members. Member r1 is restored and runs
// with the WAL raft log store (--raft-log-store wal), the others with the
// default: the kind is each member's own.
func TestSnapshotRestoreOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	cl := clusterClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	load := startWriteLoad(ctx, t, cl, 200, 3, 300)
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	saved := snapshotCLI(t, "snapshot", "save", "--addr="+c.URL(c.Follower()), "--json", file)
	load.Stop(t)
	oldID := saved.ClusterID
	if oldID == "" {
		t.Fatal("the backup names no cluster")
	}
	want, after := load.split(saved.Index)
	t.Logf("snapshot at index %d: %d keys; %d writes after it", saved.Index, saved.Keys, after)

	// Three members of the new cluster, restored from the file.
	ids := []string{"r1", "r2", "r3"}
	raftAddrs, httpAddrs, dirs := map[string]string{}, map[string]string{}, map[string]string{}
	var members []string
	for _, id := range ids {
		raftAddrs[id], httpAddrs[id], dirs[id] = freeAddr(t), freeAddr(t), filepath.Join(dir, id)
		members = append(members, id+"="+raftAddrs[id])
	}
	membersFlag := "--members=" + strings.Join(members, ",")

	// Refusals first: a corrupt file, a member not in --members, a data
	// directory that holds anything. None leaves anything behind.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.snap")
	if err := os.WriteFile(bad, flip(data, len(data)/2), 0o600); err != nil {
		t.Fatal(err)
	}
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(busy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "kv.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
		dir  string
	}{
		{"corrupt file", []string{"--id=r1", "--data-dir=" + dirs["r1"], membersFlag, bad}, "checksum mismatch", dirs["r1"]},
		{"not a member", []string{"--id=r9", "--data-dir=" + dirs["r1"], membersFlag, file}, "not one of --members", dirs["r1"]},
		{"non-empty dir", []string{"--id=r1", "--data-dir=" + busy, membersFlag, file}, "not empty", ""},
		{"old identity", []string{"--id=r1", "--data-dir=" + dirs["r1"], membersFlag, "--cluster-id=" + oldID, file}, "must have a new one", dirs["r1"]},
		{"unknown log store", []string{"--id=r1", "--data-dir=" + dirs["r1"], membersFlag, "--raft-log-store=rocksdb", file}, "--raft-log-store must be boltdb or wal", dirs["r1"]},
	} {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"snapshot", "restore"}, tc.args...), strings.NewReader(""), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: restore = %v, want an error about %q", tc.name, err, tc.want)
		}
		if _, err := os.Stat(tc.dir); tc.dir != "" && !os.IsNotExist(err) {
			t.Errorf("%s: %s left behind (%v)", tc.name, tc.dir, err)
		}
	}
	if entries, _ := os.ReadDir(busy); len(entries) != 1 {
		t.Errorf("the refused non-empty directory was changed: %v", entries)
	}

	var newID string
	logStores := map[string]string{"r1": "wal", "r2": "boltdb", "r3": "boltdb"}
	for _, id := range ids {
		var out, errOut bytes.Buffer
		args := []string{"snapshot", "restore", "--json", "--id=" + id, "--data-dir=" + dirs[id], membersFlag, file}
		if id == "r1" { // the others take the default
			args = []string{"snapshot", "restore", "--json", "--raft-log-store=wal", "--id=" + id, "--data-dir=" + dirs[id], membersFlag, file}
		}
		if err := run(ctx, args, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		var r restoreSummary
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("restore printed %q: %v", out.String(), err)
		}
		if r.Index != saved.Index || r.SHA256 != saved.SHA256 || r.Keys != saved.Keys || r.SourceClusterID != oldID {
			t.Fatalf("restore %s: %+v, the backup %+v", id, r, saved)
		}
		if r.LogStore != logStores[id] {
			t.Fatalf("restore %s: raft log store %q, want %q", id, r.LogStore, logStores[id])
		}
		if r.ClusterID == "" || r.ClusterID == oldID || newID != "" && r.ClusterID != newID {
			t.Fatalf("restore %s: cluster id %q (old %q, other members %q)", id, r.ClusterID, oldID, newID)
		}
		newID = r.ClusterID
	}

	// r1's directory is a WAL one: served with the default (boltdb), it
	// refuses to start, naming both, and stays as it was.
	if _, err := os.Stat(filepath.Join(dirs["r1"], "wal", "wal-meta.db")); err != nil {
		t.Fatalf("r1 restored for the WAL has no wal/: %v", err)
	}
	err = run(ctx, []string{"serve", "--log-level", "warn", "--id", "r1", "--data-dir", dirs["r1"], "--http-addr", httpAddrs["r1"], "--raft-addr", raftAddrs["r1"]},
		strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "wal/") || !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("serve r1 with the default log store: %v; want a refusal naming wal/ and raft.db", err)
	}
	if _, err := os.Stat(filepath.Join(dirs["r1"], "raft.db")); !os.IsNotExist(err) {
		t.Fatalf("the refused serve left a raft.db in r1's directory (%v)", err)
	}

	// raftkv serve on each restored directory: no --join, no --bootstrap-expect.
	var newEndpoints []string
	for _, id := range ids {
		serveCLI(t, "--id", id, "--data-dir", dirs[id], "--http-addr", httpAddrs[id], "--raft-addr", raftAddrs[id], "--raft-log-store", logStores[id])
		newEndpoints = append(newEndpoints, "http://"+httpAddrs[id])
	}
	httpc := &http.Client{Timeout: 10 * time.Second}
	getJSON := func(url string, v any) error {
		resp, err := httpc.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
		}
		return json.Unmarshal(body, v)
	}
	for _, ep := range newEndpoints {
		if err := testkit.Eventually(60*time.Second, func() error {
			var r map[string]string
			return getJSON(ep+"/readyz", &r)
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Before any write, every new member's digest is the snapshot's (only
	// the leader's no-op and the members' registrations are applied
	// since, and they change no key).
	for _, ep := range newEndpoints {
		var h kv.DigestInfo
		if err := getJSON(ep+"/v1/debug/hash", &h); err != nil {
			t.Fatal(err)
		}
		if h.AppliedIndex < saved.Index || h.SHA256 != saved.SHA256 || h.Keys != saved.Keys {
			t.Fatalf("%s: digest %+v, the snapshot's %+v", ep, h, saved)
		}
		var info kv.ClusterInfo
		if err := getJSON(ep+"/v1/cluster", &info); err != nil {
			t.Fatal(err)
		}
		if info.ClusterID != newID || len(info.Nodes) != 3 {
			t.Fatalf("%s: cluster %+v, want id %s and 3 members", ep, info, newID)
		}
	}

	// The data, read through the new cluster's API.
	ncl, err := client.New(client.Config{Endpoints: newEndpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncl.Close)
	got := map[string]string{}
	var next []byte
	for {
		res, err := ncl.List(ctx, kv.ListOptions{Limit: kv.MaxListLimit, After: next})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Items {
			got[string(r.Key)] = string(r.Value)
		}
		if !res.More {
			break
		}
		next = res.Next
	}
	if len(got) != len(want) {
		t.Errorf("the restored cluster holds %d keys, want the %d written at or below index %d", len(got), len(want), saved.Index)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("restored %q = %q, want %q", k, got[k], v)
		}
	}
	// It takes writes, at indexes after the snapshot's.
	res, err := ncl.Put(ctx, []byte("after-restore"), []byte("yes"))
	if err != nil || res.ModIndex <= saved.Index {
		t.Fatalf("write to the restored cluster: %+v %v", res, err)
	}
	if cli := clusterCLI(t, newEndpoints[0]); !strings.Contains(cli, "cluster "+newID) {
		t.Fatalf("raftkv cluster on the restored cluster:\n%s", cli)
	}

	// The two clusters refuse each other's members: a join or an internal
	// request stating the other identity is answered 409 wrong_cluster.
	oldLeader := c.URL(c.Leader())
	join := fmt.Sprintf(`{"id":"r1","raft_addr":%q,"api_addr":%q}`, raftAddrs["r1"], httpAddrs["r1"])
	for _, tc := range []struct {
		name, method, url, body, from string
	}{
		{"restored member joins the old cluster", http.MethodPost, oldLeader + "/v1/cluster/nodes", join, newID},
		{"restored member asks the old leader for a read index", http.MethodGet, oldLeader + httpapi.ReadIndexPath, "", newID},
		{"old member checks leadership on a restored one", http.MethodGet, newEndpoints[1] + httpapi.LeaderCheckPath + "?id=r2", "", oldID},
		{"old member sends a batch to a restored one", http.MethodPost, newEndpoints[0] + httpapi.ApplyPath, "", oldID},
	} {
		resp, body := c.Do(tc.method, tc.url, strings.NewReader(tc.body), map[string]string{
			httpapi.HeaderClusterID: tc.from, httpapi.HeaderProtocol: strconv.Itoa(kv.ProtocolVersion), httpapi.HeaderForwardedBy: "x",
		})
		var e kv.ErrorResponse
		if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != http.StatusConflict || e.Error.Code != "wrong_cluster" {
			t.Errorf("%s: %d %s, want 409 wrong_cluster", tc.name, resp.StatusCode, body)
		}
	}
	var info kv.ClusterInfo
	if err := getJSON(oldLeader+"/v1/cluster", &info); err != nil {
		t.Fatal(err)
	}
	if info.ClusterID != oldID || len(info.Nodes) != 3 {
		t.Fatalf("the old cluster: %+v", info)
	}
}

func clusterCLI(t *testing.T, addr string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"cluster", "--addr=" + addr}, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("raftkv cluster: %v\n%s", err, errOut.String())
	}
	return out.String()
}
