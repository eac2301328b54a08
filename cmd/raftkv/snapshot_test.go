package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// write is one acknowledged put of the workload.
type write struct {
	key, value string
	index      uint64
}

// clusterClient is a client for every node of c, closed when the test ends.
func clusterClient(t *testing.T, c *testkit.Cluster) *client.Client {
	t.Helper()
	var endpoints []string
	for i := range c.Size() {
		endpoints = append(endpoints, c.URL(i))
	}
	cl, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// writeLoad is a write workload on a cluster: pre keys written first
// (pre/NNNN), then writers putting w/<writer>/<n> until Stop, every
// acknowledged write recorded with its index.
type writeLoad struct {
	cl   *client.Client
	mu   sync.Mutex
	acks []write
	errs chan error
	stop func()
}

// startWriteLoad writes pre keys, starts writers, and returns once at
// least atLeast writes are acknowledged; the writers stop at Stop or when
// the test ends.
func startWriteLoad(ctx context.Context, t *testing.T, cl *client.Client, pre, writers, atLeast int) *writeLoad {
	t.Helper()
	l := &writeLoad{cl: cl, errs: make(chan error, writers)}
	for i := range pre {
		if err := l.put(ctx, fmt.Sprintf("pre/%04d", i), strings.Repeat("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if err := l.put(ctx, fmt.Sprintf("w/%d/%06d", g, i), fmt.Sprint(i)); err != nil {
					l.errs <- err
					return
				}
			}
		})
	}
	l.stop = sync.OnceFunc(func() { close(done); wg.Wait() })
	t.Cleanup(l.stop)
	if err := testkit.Eventually(10*time.Second, func() error {
		if n := len(l.writes()); n < atLeast {
			return fmt.Errorf("%d writes acknowledged", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *writeLoad) put(ctx context.Context, key, value string) error {
	res, err := l.cl.Put(ctx, []byte(key), []byte(value))
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.acks = append(l.acks, write{key, value, res.ModIndex})
	l.mu.Unlock()
	return nil
}

// writes is a copy of the writes acknowledged so far.
func (l *writeLoad) writes() []write {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]write(nil), l.acks...)
}

// Stop stops the writers and fails the test if one of them failed.
func (l *writeLoad) Stop(t *testing.T) {
	t.Helper()
	l.stop()
	select {
	case err := <-l.errs:
		t.Fatalf("a writer failed: %v", err)
	default:
	}
}

// split is what a snapshot at index holds of the writes (the last value
// of each key written at or below it), and how many came after it.
func (l *writeLoad) split(index uint64) (want map[string]string, after int) {
	want = map[string]string{}
	for _, w := range l.writes() {
		if w.index <= index {
			want[w.key] = w.value
		} else {
			after++
		}
	}
	return want, after
}

// raftkv snapshot save from a follower of a real three-node cluster, with
// writes running during the save, then raftkv snapshot inspect: the file
// verifies, holds exactly the writes at or below its index (and every
// write acknowledged before the save began), and its digest is the one
// the cluster's nodes report for that index.
func TestSnapshotSaveInspectOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	follower := c.Follower()
	cl := clusterClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)

	// Writers run until the save and the inspection are over; some writes
	// land before the save starts, and the barrier must cover them.
	load := startWriteLoad(ctx, t, cl, 300, 4, 400)
	var ackedBefore uint64
	for _, w := range load.writes() {
		ackedBefore = max(ackedBefore, w.index)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	addr := "--addr=" + c.URL(follower)
	saved := snapshotCLI(t, "snapshot", "save", addr, "--json", file)
	load.Stop(t)
	if _, err := os.Stat(file + ".part"); !os.IsNotExist(err) {
		t.Errorf("FILE.part left behind: %v", err)
	}
	inspected := snapshotCLI(t, "snapshot", "inspect", "--json", file)
	if saved != inspected {
		t.Fatalf("save printed %+v, inspect %+v", saved, inspected)
	}
	if saved.Index < ackedBefore {
		t.Fatalf("snapshot at index %d misses writes acknowledged up to %d before the save", saved.Index, ackedBefore)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Size() != saved.Bytes {
		t.Fatalf("file is %v bytes (%v), summary says %d", fi.Size(), err, saved.Bytes)
	}

	// The file restores into a scratch store holding exactly the writes at
	// or below its index.
	scratch, err := store.Open(filepath.Join(t.TempDir(), "kv.db"), store.Options{InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = scratch.Close() })
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := scratch.Restore(f); err != nil {
		t.Fatal(err)
	}
	want, after := load.split(saved.Index)
	if after == 0 {
		t.Log("no write landed after the snapshot's index: the writers were slow")
	}
	got := map[string]string{}
	var next []byte
	for {
		res, err := scratch.List(kv.ListOptions{Limit: kv.MaxListLimit, After: next})
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
		t.Errorf("restored %d keys, want the %d written at or below index %d", len(got), len(want), saved.Index)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("restored %q = %q, want %q", k, got[k], v)
		}
	}
	d, err := scratch.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d.AppliedIndex != saved.Index || d.SHA256 != saved.SHA256 || d.Keys != saved.Keys {
		t.Errorf("restored digest %+v, inspect said %+v", d, saved)
	}

	// With the writes stopped, a save from the follower has the digest
	// GET /v1/debug/hash gives on every node at the same index.
	file2 := filepath.Join(dir, "quiet.snap")
	quiet := snapshotCLI(t, "snapshot", "save", addr, "--json", file2)
	for i := range c.Size() {
		if err := testkit.Eventually(10*time.Second, func() error {
			resp, body := c.Do(http.MethodGet, c.URL(i)+"/v1/debug/hash", nil, nil)
			var h kv.DigestInfo
			if err := json.Unmarshal(body, &h); err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("debug/hash: %d %s", resp.StatusCode, body)
			}
			if h.AppliedIndex != quiet.Index {
				return fmt.Errorf("node %d at index %d, the snapshot at %d", i, h.AppliedIndex, quiet.Index)
			}
			if h.SHA256 != quiet.SHA256 || h.Keys != quiet.Keys {
				t.Fatalf("node %d: digest %+v, snapshot %+v", i, h, quiet)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// A cut-off or corrupted file fails inspect with a clear error.
	data, err := os.ReadFile(file2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", data[:len(data)/2], "truncated after"},
		{"no checksum", data[:len(data)-4], "checksum"},
		{"flipped byte", flip(data, len(data)/2), "checksum mismatch"},
		{"trailing data", append(bytes.Clone(data), 0), "trailing data"},
		{"not a snapshot", []byte("hello, this is not a raftkv snapshot at all"), "not a raftkv snapshot"},
	} {
		bad := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(bad, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"snapshot", "inspect", bad}, strings.NewReader(""), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad snapshot") {
			t.Errorf("%s: inspect = %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".inspect-") {
			t.Errorf("inspect left %s behind", e.Name())
		}
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0xff
	return b
}

// snapshotCLI runs a raftkv snapshot command with --json and decodes its
// summary.
func snapshotCLI(t *testing.T, args ...string) snapshotSummary {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	var s snapshotSummary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("raftkv %s printed %q: %v", strings.Join(args, " "), out.String(), err)
	}
	s.File = ""
	return s
}

// GET /v1/snapshot's contract: headers announce index, term and size
// before the body, which is that long; bad parameters are 400, other
// methods 405.
func TestSnapshotHTTP(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	base := c.URL(c.Follower())
	resp, _ := c.Do(http.MethodPut, c.URL(c.Leader())+"/v1/kv/a", strings.NewReader("1"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("put: %d", resp.StatusCode)
	}
	for _, q := range []string{"", "?consistency=linearizable", "?consistency=stale"} {
		resp, body := c.Do(http.MethodGet, base+"/v1/snapshot"+q, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/snapshot%s: %d %s", q, resp.StatusCode, body)
		}
		size := fmt.Sprint(len(body))
		if resp.Header.Get("X-Snapshot-Size") != size || resp.Header.Get("Content-Length") != size {
			t.Errorf("%s: X-Snapshot-Size %q, Content-Length %q, body %s bytes", q, resp.Header.Get("X-Snapshot-Size"), resp.Header.Get("Content-Length"), size)
		}
		sum, err := store.InspectSnapshot(bytes.NewReader(body), filepath.Join(t.TempDir(), "scratch"))
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if resp.Header.Get("X-Raft-Index") != fmt.Sprint(sum.Index) || resp.Header.Get("X-Raft-Term") != fmt.Sprint(sum.Term) || sum.Term == 0 {
			t.Errorf("%s: headers index %q term %q, stream index %d term %d", q, resp.Header.Get("X-Raft-Index"), resp.Header.Get("X-Raft-Term"), sum.Index, sum.Term)
		}
		if sum.Keys != 1 {
			t.Errorf("%s: %d keys, want 1", q, sum.Keys)
		}
	}
	for _, q := range []string{"?consistency=bogus", "?nope=1", "?consistency=stale&consistency=stale"} {
		resp, body := c.Do(http.MethodGet, base+"/v1/snapshot"+q, nil, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "bad_request") {
			t.Errorf("GET /v1/snapshot%s: %d %s, want 400 bad_request", q, resp.StatusCode, body)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		resp, body := c.Do(m, base+"/v1/snapshot", nil, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
			t.Errorf("%s /v1/snapshot: %d (Allow %q) %s, want 405", m, resp.StatusCode, resp.Header.Get("Allow"), body)
		}
	}
}
