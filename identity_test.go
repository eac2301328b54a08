package raftkv_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// waitClusterID waits until every node of c reports one and the same
// cluster identity in GET /v1/cluster, and returns it.
func waitClusterID(t *testing.T, c *testkit.Cluster) string {
	t.Helper()
	var id string
	err := testkit.Eventually(10*time.Second, func() error {
		id = ""
		for i := range c.Size() {
			info := clusterInfo(t, c, i)
			if info.ClusterID == "" || id != "" && info.ClusterID != id {
				return fmt.Errorf("node %d: cluster id %q (others %q)", i, info.ClusterID, id)
			}
			if info.ProtocolVersion != kv.ProtocolVersion {
				return fmt.Errorf("node %d: protocol version %d, want %d", i, info.ProtocolVersion, kv.ProtocolVersion)
			}
			id = info.ClusterID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// joiner opens a node with an empty directory that joins c through every
// member, with cfg's protocol version set by adjust.
func joiner(t *testing.T, c *testkit.Cluster, id string, adjust func(*raftkv.Config)) *raftkv.Node {
	t.Helper()
	var join []string
	for i := range c.Size() {
		join = append(join, c.Node(i).HTTPAddr())
	}
	cfg := raftkv.Config{ID: id, DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Join: join, Tuning: testkit.FastTuning}
	if adjust != nil {
		adjust(&cfg)
	}
	n, err := raftkv.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// The first leader commits the cluster's identity; every member applies
// it, it survives a restart, and a node that joins after the log was
// compacted learns it from the snapshot it installs.
func TestClusterIdentity(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	id := waitClusterID(t, c)

	f := c.Follower()
	c.Stop(f)
	c.Restart(f)
	c.WaitReady()
	if got := waitClusterID(t, c); got != id {
		t.Fatalf("after a restart: cluster id %q, want %q", got, id)
	}

	put(t, c, c.Leader(), "before-join", "x")
	if err := c.Node(c.Leader()).Snapshot(); err != nil {
		t.Fatal(err)
	}
	n4 := joiner(t, c, "n4", nil)
	if err := n4.WaitReady(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := n4.ClusterID(); got != id {
		t.Fatalf("joiner: cluster id %q, want %q", got, id)
	}
}

// A member of another cluster, or of a protocol version this one cannot
// work with, is refused on every route with 409 and a stable code; a
// request that states nothing (a client), this cluster's identity, or an
// adjacent version passes.
func TestPeerIdentityRefusals(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	id := waitClusterID(t, c)
	l, f := c.Leader(), c.Follower()
	fid := c.Node(f).ID()
	v := strconv.Itoa(kv.ProtocolVersion)
	join := `{"id":"stranger","raft_addr":"127.0.0.1:1","api_addr":"127.0.0.1:2"}`

	tests := []struct {
		name         string
		method, path string
		node         int
		body         string
		header       map[string]string
		wantCode     string // "" : not refused
	}{
		{"client, no headers", http.MethodGet, "/v1/cluster", f, "", nil, ""},
		{"same cluster", http.MethodGet, httpapi.LeaderCheckPath + "?id=" + fid, f, "", map[string]string{httpapi.HeaderClusterID: id, httpapi.HeaderProtocol: v}, ""},
		{"older adjacent version", http.MethodGet, httpapi.LeaderCheckPath + "?id=" + fid, f, "", map[string]string{httpapi.HeaderClusterID: id, httpapi.HeaderProtocol: strconv.Itoa(kv.ProtocolVersion - 1)}, ""},
		{"newer adjacent version", http.MethodGet, httpapi.ReadIndexPath, l, "", map[string]string{httpapi.HeaderProtocol: strconv.Itoa(kv.ProtocolVersion + 1)}, ""},
		{"other cluster, leader check", http.MethodGet, httpapi.LeaderCheckPath + "?id=" + fid, f, "", map[string]string{httpapi.HeaderClusterID: "other", httpapi.HeaderProtocol: v}, "wrong_cluster"},
		{"other cluster, read index", http.MethodGet, httpapi.ReadIndexPath, l, "", map[string]string{httpapi.HeaderClusterID: "other"}, "wrong_cluster"},
		{"other cluster, batch", http.MethodPost, httpapi.ApplyPath, l, "", map[string]string{httpapi.HeaderClusterID: "other", httpapi.HeaderForwardedBy: "x"}, "wrong_cluster"},
		{"other cluster, join on a follower", http.MethodPost, "/v1/cluster/nodes", f, join, map[string]string{httpapi.HeaderClusterID: "other", httpapi.HeaderProtocol: v}, "wrong_cluster"},
		{"other cluster, survey", http.MethodGet, "/v1/cluster", l, "", map[string]string{httpapi.HeaderClusterID: "other"}, "wrong_cluster"},
		{"two versions newer, join", http.MethodPost, "/v1/cluster/nodes", l, join, map[string]string{httpapi.HeaderProtocol: strconv.Itoa(kv.ProtocolVersion + 2)}, "incompatible_version"},
		{"two versions older, read index", http.MethodGet, httpapi.ReadIndexPath, l, "", map[string]string{httpapi.HeaderClusterID: id, httpapi.HeaderProtocol: strconv.Itoa(kv.ProtocolVersion - 2)}, "incompatible_version"},
		{"not a version", http.MethodGet, "/v1/cluster", f, "", map[string]string{httpapi.HeaderProtocol: "two"}, "incompatible_version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := c.Do(tt.method, c.URL(tt.node)+tt.path, strings.NewReader(tt.body), tt.header)
			if tt.wantCode == "" {
				if resp.StatusCode == http.StatusConflict {
					t.Fatalf("refused: %d %s", resp.StatusCode, body)
				}
				return
			}
			var e kv.ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != http.StatusConflict || e.Error.Code != tt.wantCode {
				t.Fatalf("got %d %s, want 409 %s", resp.StatusCode, body, tt.wantCode)
			}
			if got := resp.Header.Get(httpapi.HeaderClusterID); got != id {
				t.Errorf("refusal's %s = %q, want the refusing member's %q", httpapi.HeaderClusterID, got, id)
			}
			if got := resp.Header.Get(httpapi.HeaderProtocol); got != v {
				t.Errorf("refusal's %s = %q, want %s", httpapi.HeaderProtocol, got, v)
			}
		})
	}
	if ids := memberIDs(t, c); slices.Contains(ids, "stranger") {
		t.Fatalf("a refused join was applied: members %v", ids)
	}
}

func memberIDs(t *testing.T, c *testkit.Cluster) []string {
	t.Helper()
	var ids []string
	for _, n := range clusterInfo(t, c, c.Leader()).Nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

// Nodes of adjacent protocol versions join and work together; a node two
// versions away is refused (its survey and join get 409
// incompatible_version) and never becomes a member.
func TestProtocolVersionOnJoin(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	waitClusterID(t, c)
	tests := []struct {
		id      string
		version int
		joins   bool
	}{
		{"newer", kv.ProtocolVersion + 1, true},
		{"older", kv.ProtocolVersion - 1, true},
		{"far", kv.ProtocolVersion + 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			n := joiner(t, c, tt.id, func(cfg *raftkv.Config) { raftkv.SetProtocolVersion(cfg, tt.version) })
			if !tt.joins {
				if err := n.WaitReady(ctxTimeout(t, 3*time.Second)); err == nil {
					t.Fatal("a node two protocol versions away became ready")
				}
				if ids := memberIDs(t, c); slices.Contains(ids, tt.id) {
					t.Fatalf("members %v include %s", ids, tt.id)
				}
				return
			}
			ctx := ctxTimeout(t, 30*time.Second)
			if err := n.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			// Writes through it reach the others, and the other way round.
			key := []byte("version/" + tt.id)
			if _, err := n.Put(ctx, key, []byte(tt.id)); err != nil {
				t.Fatalf("put through %s: %v", tt.id, err)
			}
			if r, err := c.Node(0).Get(ctx, key, kv.ReadOptions{}); err != nil || string(r.Value) != tt.id {
				t.Fatalf("read on n1: %+v %v", r, err)
			}
			if _, err := c.Node(1).Put(ctx, key, []byte("back")); err != nil {
				t.Fatal(err)
			}
			if r, err := n.Get(ctx, key, kv.ReadOptions{}); err != nil || string(r.Value) != "back" {
				t.Fatalf("linearizable read on %s: %+v %v", tt.id, r, err)
			}
		})
	}
}
