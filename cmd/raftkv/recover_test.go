package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// cliRun runs the raftkv command line in this process and returns its
// stdout, stderr and exit status.
func cliRun(ctx context.Context, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	err := run(ctx, args, strings.NewReader(""), &out, &errOut)
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// A three-node cluster takes writes; two nodes are lost for good (stopped,
// data deleted); the third is stopped, recovered with raftkv recover,
// restarted, and leads alone; two new nodes (new ids, empty directories)
// join it. Every write the survivor had applied is on all three (same
// /v1/debug/hash digest, every key read back from each), and new writes
// succeed. raftkv health tells when each node is ready. Once with each
// raft log store: recover finds which one the data dir holds.
func TestRecoverAfterQuorumLost(t *testing.T) {
	for _, logStore := range []string{raftkv.LogStoreBoltDB, raftkv.LogStoreWAL} {
		t.Run(logStore, func(t *testing.T) { testRecoverAfterQuorumLost(t, logStore) })
	}
}

func testRecoverAfterQuorumLost(t *testing.T, logStore string) {
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) { cfg.LogStore = logStore }})
	const survivor = 2 // n3
	cl := clusterClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)

	// Writes before and after a snapshot of the survivor, so that the
	// recovery starts from a snapshot and replays a log after it.
	want := map[string]string{}
	var last uint64
	put := func(key, value string) {
		t.Helper()
		res, err := cl.Put(ctx, []byte(key), []byte(value))
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		want[key], last = value, res.ModIndex
	}
	for i := range 60 {
		put(fmt.Sprintf("before/%03d", i), fmt.Sprintf("v%d", i))
	}
	if _, err := cl.Delete(ctx, []byte("before/007")); err != nil {
		t.Fatal(err)
	}
	delete(want, "before/007")
	if err := testkit.Eventually(20*time.Second, func() error {
		if a := c.Node(survivor).AppliedIndex(); a < last {
			return fmt.Errorf("survivor applied %d < %d", a, last)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(survivor).Snapshot(); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		put(fmt.Sprintf("after/%03d", i), strings.Repeat("x", i))
	}
	put("before/001", "changed")

	// Every node has applied every write: the digest the survivor will
	// carry.
	var digest kv.DigestInfo
	if err := testkit.Eventually(20*time.Second, func() error {
		var ds []kv.DigestInfo
		for i := range c.Size() {
			d, err := c.Node(i).Digest()
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		for _, d := range ds {
			if d.SHA256 != ds[0].SHA256 || d.AppliedIndex < last {
				return fmt.Errorf("digests %+v", ds)
			}
		}
		digest = ds[survivor]
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	dir := c.Dir(survivor)
	// While the node runs, recover refuses (its data dir is locked).
	if out, errOut, code := cliRun(ctx, "recover", "--id", "n3", "--data-dir", dir); code != 1 || !strings.Contains(errOut, "in use") {
		t.Fatalf("recover on a running node: exit %d, stdout %q, stderr %q; want 1 and \"in use\"", code, out, errOut)
	}

	// n1 and n2 are lost for good; then n3 stops.
	for _, i := range []int{0, 1} {
		c.Stop(i)
		if err := os.RemoveAll(c.Dir(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(survivor)

	out, errOut, code := cliRun(ctx, "recover", "--id", "n3", "--data-dir", dir, "--dry-run")
	if code != 0 || !strings.Contains(out, "nothing changed") || strings.Count(out, " voter") != 3 {
		t.Fatalf("recover --dry-run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := cliRun(ctx, "recover", "--id", "n9", "--data-dir", dir); code != 1 || !strings.Contains(errOut, "not in the configuration") {
		t.Fatalf("recover --id n9 (not a member): exit %d, stderr %q", code, errOut)
	}
	out, errOut, code = cliRun(ctx, "recover", "--id", "n3", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("recover: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Logf("raftkv recover:\n%s", out)
	for _, s := range []string{"recovered n3", "raft log store:    " + logStore + "\n", "new configuration: n3 ", "sha256 " + digest.SHA256} {
		if !strings.Contains(out, s) {
			t.Errorf("recover printed %q, want it to contain %q", out, s)
		}
	}
	if after := out[strings.Index(out, "new configuration:"):]; strings.Contains(after, "n1 ") || strings.Contains(after, "n2 ") {
		t.Errorf("the new configuration still names a lost member: %q", after)
	}

	// n3 starts again, as before, and leads alone.
	c.Restart(survivor)
	if l := c.Leader(); l != survivor {
		t.Fatalf("leader is node %d, want the survivor", l)
	}
	health := func(url string) error {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return testkit.Eventually(30*time.Second, func() error {
			if out, errOut, code := cliRun(hctx, "health", "--addr", url); code != 0 {
				return fmt.Errorf("raftkv health --addr %s: exit %d: %s%s", url, code, out, errOut)
			}
			return nil
		})
	}
	if err := health(c.URL(survivor)); err != nil {
		t.Fatal(err)
	}

	// Two new members join it.
	survivorAPI := strings.TrimPrefix(c.URL(survivor), "http://")
	nodes := []*raftkv.Node{c.Node(survivor)}
	urls := []string{c.URL(survivor)}
	for _, id := range []string{"n4", "n5"} {
		n, err := raftkv.Open(raftkv.Config{
			ID:       id,
			DataDir:  t.TempDir(),
			LogStore: logStore,
			HTTPAddr: "127.0.0.1:0",
			Join:     []string{survivorAPI},
			Tuning:   testkit.FastTuning,
		})
		if err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		t.Cleanup(func() { _ = n.Close() })
		nodes = append(nodes, n)
		urls = append(urls, "http://"+n.HTTPAddr())
	}
	for _, u := range urls {
		if err := health(u); err != nil {
			t.Fatal(err)
		}
	}
	// They join as non-voters; the survivor, leading, promotes them once
	// they have caught up.
	err := testkit.Eventually(30*time.Second, func() error {
		info, err := nodes[0].Cluster(ctx)
		if err != nil {
			return err
		}
		var ids []string
		for _, n := range info.Nodes {
			if n.Suffrage != "voter" {
				return fmt.Errorf("member %s is a %s", n.ID, n.Suffrage)
			}
			ids = append(ids, n.ID)
		}
		if got := strings.Join(ids, ","); got != "n3,n4,n5" {
			return fmt.Errorf("members %s, want n3,n4,n5", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Every write is on every node: the survivor's digest, and each key
	// read back from each node's own state (stale reads: no forwarding).
	if err := testkit.Eventually(30*time.Second, func() error {
		for _, n := range nodes {
			d, err := n.Digest()
			if err != nil {
				return err
			}
			if d.SHA256 != digest.SHA256 || d.Keys != digest.Keys {
				return fmt.Errorf("%s: digest %+v, want %+v", d.Node, d, digest)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, u := range urls {
		ncl, err := client.New(client.Config{Endpoints: []string{u}, RefreshInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		list, err := ncl.List(ctx, kv.ListOptions{ReadOptions: kv.ReadOptions{Consistency: kv.Stale}, Limit: kv.MaxListLimit})
		ncl.Close()
		if err != nil {
			t.Fatalf("list on %s: %v", u, err)
		}
		got := map[string]string{}
		for _, r := range list.Items {
			got[string(r.Key)] = string(r.Value)
		}
		if len(got) != len(want) {
			t.Errorf("node %d holds %d keys, want %d", i, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("node %d: %s = %q, want %q", i, k, got[k], v)
			}
		}
	}

	// New writes succeed, through a new member too, and reach every node.
	ncl, err := client.New(client.Config{Endpoints: urls[1:]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncl.Close)
	res, err := ncl.Put(ctx, []byte("after-recovery"), []byte("yes"))
	if err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	if res.ModIndex <= digest.AppliedIndex {
		t.Errorf("write after recovery at index %d, not after the recovered state's %d", res.ModIndex, digest.AppliedIndex)
	}
	for _, n := range nodes {
		rec, err := n.Get(ctx, []byte("after-recovery"), kv.ReadOptions{})
		if err != nil || string(rec.Value) != "yes" {
			t.Errorf("read after recovery: %q, %v", rec.Value, err)
		}
	}
}

// raftkv recover refuses what it cannot recover, and its usage errors.
func TestRecoverRefuses(t *testing.T) {
	empty := t.TempDir()
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no id", []string{"recover", "--data-dir", empty}, 2, "--id and --data-dir are required"},
		{"no data dir", []string{"recover", "--id", "n1"}, 2, "--id and --data-dir are required"},
		{"positional", []string{"recover", "--id", "n1", "--data-dir", empty, "extra"}, 2, "wrong number of arguments"},
		{"bad address", []string{"recover", "--id", "n1", "--data-dir", empty, "--raft-advertise", "nohost"}, 2, "not host:port"},
		{"unspecified advertise", []string{"recover", "--id", "n1", "--data-dir", empty, "--raft-advertise", "0.0.0.0:9001"}, 2, "not an address peers can dial"},
		{"no such dir", []string{"recover", "--id", "n1", "--data-dir", empty + "/missing"}, 1, "no raftkv data"},
		{"empty dir", []string{"recover", "--id", "n1", "--data-dir", empty}, 1, "no raft.db"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := cliRun(context.Background(), tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("raftkv %s: exit %d, stderr %q; want %d and %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.want)
			}
		})
	}
	// Nothing was created in the empty directory.
	if ents, err := os.ReadDir(empty); err != nil || len(ents) != 0 {
		t.Errorf("recover left %v in an empty directory (%v)", ents, err)
	}
	// The environment gives --id and --data-dir, as it does to serve.
	t.Setenv("RAFTKV_ID", "n1")
	t.Setenv("RAFTKV_DATA_DIR", empty)
	if _, errOut, code := cliRun(context.Background(), "recover"); code != 1 || !strings.Contains(errOut, "no raft.db") {
		t.Errorf("recover from the environment: exit %d, stderr %q", code, errOut)
	}
}

// raftkv health: 0 for a ready node, 1 for a node that does not answer or
// is not ready, 2 for a usage error; --live checks /livez.
func TestHealthCommand(t *testing.T) {
	c := testkit.NewCluster(t, 1, testkit.Options{})
	ctx := context.Background()
	out, errOut, code := cliRun(ctx, "health", "--addr", c.URL(0))
	if code != 0 || !strings.Contains(out, `"ready"`) {
		t.Fatalf("health on a ready node: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = cliRun(ctx, "health", "--live", "--addr", strings.TrimPrefix(c.URL(0), "http://"))
	if code != 0 || !strings.Contains(out, `"ok"`) {
		t.Fatalf("health --live: exit %d, stdout %q", code, out)
	}
	if _, _, code := cliRun(ctx, "health", "--addr", c.URL(0)+","+c.URL(0)); code != 2 {
		t.Errorf("health with two endpoints: exit %d, want 2", code)
	}
	if _, errOut, code := cliRun(ctx, "health", "--addr", "http://127.0.0.1:1", "--timeout", "1s"); code != 1 || errOut == "" {
		t.Errorf("health on a closed port: exit %d, stderr %q", code, errOut)
	}

	// A node that is not in a cluster yet is alive but not ready.
	n, err := raftkv.Open(raftkv.Config{ID: "lonely", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Join: []string{"127.0.0.1:1"}, BootstrapExpect: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	url := "http://" + n.HTTPAddr()
	if _, errOut, code := cliRun(ctx, "health", "--addr", url); code != 1 || !strings.Contains(errOut, "503") {
		t.Errorf("health on a node without a cluster: exit %d, stderr %q; want 1 and a 503", code, errOut)
	}
	if _, errOut, code := cliRun(ctx, "health", "--live", "--addr", url); code != 0 {
		t.Errorf("health --live on a node without a cluster: exit %d, stderr %q", code, errOut)
	}
}

// raftkv health over TLS: the client commands' TLS flags; a bare host:port
// is https with them; a certificate it cannot verify is a failure (1).
func TestHealthCommandTLS(t *testing.T) {
	c := testkit.NewCluster(t, 1, testkit.Options{TLS: true})
	ctx := context.Background()
	host := strings.TrimPrefix(c.URL(0), "https://")
	if out, errOut, code := cliRun(ctx, "health", "--addr", host, "--cacert", c.PKI.Path("ca.pem")); code != 0 || !strings.Contains(out, `"ready"`) {
		t.Fatalf("health with --cacert: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Setenv("RAFTKV_CACERT", c.PKI.Path("ca.pem"))
	if out, errOut, code := cliRun(ctx, "health", "--live", "--addr", host); code != 0 || !strings.Contains(out, `"ok"`) {
		t.Fatalf("health with $RAFTKV_CACERT: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Setenv("RAFTKV_CACERT", "")
	if _, errOut, code := cliRun(ctx, "health", "--addr", c.URL(0)); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("health without the CA: exit %d, stderr %q; want 1 and a certificate error", code, errOut)
	}
	if _, _, code := cliRun(ctx, "health", "--addr", "http://"+host, "--cacert", c.PKI.Path("ca.pem")); code != 2 {
		t.Errorf("health --cacert with an http:// address: exit %d, want 2", code)
	}
}
