package raftkv_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// put writes key=value through node i's HTTP API and returns the response.
func put(t *testing.T, c *testkit.Cluster, i int, key, value string) kv.PutResponse {
	t.Helper()
	resp, body := c.Do(http.MethodPut, c.URL(i)+"/v1/kv/"+key, strings.NewReader(value), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s on node %d: %d %s", key, i, resp.StatusCode, body)
	}
	var out kv.PutResponse
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("PUT %s: decoding %q: %v", key, body, err)
	}
	if got, want := resp.Header.Get("ETag"), fmt.Sprintf("%q", strconv.FormatUint(out.ModIndex, 10)); got != want {
		t.Errorf("PUT %s: ETag %s, want %s", key, got, want)
	}
	return out
}

// get reads key from node i with the given query and returns status and body.
func get(t *testing.T, c *testkit.Cluster, i int, key, query string) (*http.Response, string) {
	t.Helper()
	resp, body := c.Do(http.MethodGet, c.URL(i)+"/v1/kv/"+key+query, nil, nil)
	return resp, string(body)
}

func TestWriteOnLeaderReadEverywhere(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l := c.Leader()
	res := put(t, c, l, "greeting", "hello")
	if res.Key != "greeting" || res.Version != 1 || res.CreateIndex != res.ModIndex {
		t.Fatalf("put result %+v", res)
	}
	for i := range c.Size() {
		resp, body := get(t, c, i, "greeting", "")
		if resp.StatusCode != http.StatusOK || body != "hello" {
			t.Fatalf("linearizable GET on node %d: %d %q", i, resp.StatusCode, body)
		}
		if got, want := resp.Header.Get("X-Mod-Index"), strconv.FormatUint(res.ModIndex, 10); got != want {
			t.Errorf("node %d X-Mod-Index %s, want %s", i, got, want)
		}
		if resp.Header.Get("X-Raft-Node") == "" || resp.Header.Get("X-Raft-Index") == "" {
			t.Errorf("node %d: missing X-Raft-Node/X-Raft-Index: %v", i, resp.Header)
		}
		// A stale read is served locally; the write reaches every node soon.
		err := testkit.Eventually(5*time.Second, func() error {
			resp, body := get(t, c, i, "greeting", "?consistency=stale")
			if resp.StatusCode != http.StatusOK || body != "hello" {
				return fmt.Errorf("stale GET on node %d: %d %q", i, resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Raft-Node"); got != fmt.Sprintf("n%d", i+1) {
				return fmt.Errorf("stale GET on node %d served by %s", i, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteThroughFollower(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	res := put(t, c, f, "via/follower", "v1")
	resp, body := get(t, c, l, "via/follower", "")
	if resp.StatusCode != http.StatusOK || body != "v1" {
		t.Fatalf("GET on leader: %d %q", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("X-Mod-Index"), strconv.FormatUint(res.ModIndex, 10); got != want {
		t.Errorf("X-Mod-Index %s, want %s", got, want)
	}
	// A second write through the follower updates the same record.
	res2 := put(t, c, f, "via/follower", "v2")
	if res2.Version != 2 || res2.CreateIndex != res.CreateIndex || res2.ModIndex <= res.ModIndex {
		t.Fatalf("second put %+v after %+v", res2, res)
	}
	// The follower counted what it forwarded.
	_, metrics := c.Do(http.MethodGet, c.URL(f)+"/metrics", nil, nil)
	if !strings.Contains(string(metrics), "raftkv_forwarded_requests_total 2") {
		t.Errorf("follower metrics lack raftkv_forwarded_requests_total 2:\n%s", grepLines(string(metrics), "raftkv_forwarded"))
	}
	// A node's own registry shows the Go runtime too (the heap target of
	// docs/performance.md is read from it).
	if !strings.Contains(string(metrics), "\ngo_memstats_heap_inuse_bytes ") || !strings.Contains(string(metrics), "\nprocess_resident_memory_bytes ") {
		t.Errorf("metrics lack the Go runtime and process collectors:\n%s", grepLines(string(metrics), "go_memstats"))
	}
}

func TestRedirectToLeader(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPut, c.URL(f)+"/v1/kv/r?redirect", strings.NewReader("x"))
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("status %d, want 307", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Location"), c.URL(l)+"/v1/kv/r?redirect"; got != want {
		t.Fatalf("Location %q, want %q", got, want)
	}
	// Following the redirect (as curl -L does) keeps the PUT and its body.
	req, _ = http.NewRequest(http.MethodPut, c.URL(f)+"/v1/kv/r?redirect", strings.NewReader("x"))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }
	resp, err = c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("followed redirect: status %d", resp.StatusCode)
	}
	if _, body := get(t, c, l, "r", ""); body != "x" {
		t.Fatalf("value after redirected put: %q", body)
	}
}

func TestLeaderFailoverKeepsAcknowledgedWrites(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	old := c.Leader()
	acked := map[string]string{}
	for i := range 20 {
		k, v := fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)
		put(t, c, i%3, k, v)
		acked[k] = v
	}
	c.Stop(old)
	nl := c.Leader()
	if nl == old {
		t.Fatalf("leader %d still reported after stop", nl)
	}
	for i := range c.Size() {
		if i == old {
			continue
		}
		for k, v := range acked {
			err := testkit.Eventually(10*time.Second, func() error {
				resp, body := get(t, c, i, k, "")
				if resp.StatusCode != http.StatusOK || body != v {
					return fmt.Errorf("node %d %s: %d %q, want %q", i, k, resp.StatusCode, body, v)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// The two survivors still form a quorum and take writes.
	put(t, c, c.Follower(), "after-failover", "ok")
	// The old leader comes back as a follower and catches up.
	c.Restart(old)
	c.WaitReady()
	for k, v := range map[string]string{"after-failover": "ok", "k07": "v7"} {
		err := testkit.Eventually(10*time.Second, func() error {
			resp, body := get(t, c, old, k, "?consistency=stale")
			if resp.StatusCode != http.StatusOK || body != v {
				return fmt.Errorf("restarted node %s: %d %q", k, resp.StatusCode, body)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
