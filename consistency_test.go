package raftkv_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

func metricValue(t *testing.T, c *testkit.Cluster, i int, name string) string {
	t.Helper()
	_, body := c.Do(http.MethodGet, c.URL(i)+"/metrics", nil, nil)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// A follower serves linearizable reads itself (ReadIndex): it forwards
// nothing, and a read that starts after a write was acknowledged sees it,
// every time, without polling.
func TestFollowerLinearizableReadsAreLocal(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	before := metricValue(t, c, f, "raftkv_forwarded_requests_total")
	for i := range 30 {
		v := strconv.Itoa(i)
		put(t, c, l, "rw", v)
		resp, body := get(t, c, f, "rw", "")
		if resp.StatusCode != http.StatusOK || body != v {
			t.Fatalf("read %d on follower after acknowledged write: %d %q", i, resp.StatusCode, body)
		}
		if got, want := resp.Header.Get("X-Raft-Node"), fmt.Sprintf("n%d", f+1); got != want {
			t.Fatalf("read served by %s, want the follower %s", got, want)
		}
	}
	if after := metricValue(t, c, f, "raftkv_forwarded_requests_total"); after != before {
		t.Fatalf("follower forwarded reads: counter %s -> %s", before, after)
	}
}

func TestMinIndexReadYourWrites(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	for i := range 20 {
		v := strconv.Itoa(i)
		res := put(t, c, l, "ryw", v)
		// A stale read on a follower, told to wait for the write's index.
		resp, body := get(t, c, f, "ryw", "?consistency=stale&min_index="+strconv.FormatUint(res.ModIndex, 10))
		if resp.StatusCode != http.StatusOK || body != v {
			t.Fatalf("min_index read %d: %d %q", i, resp.StatusCode, body)
		}
		if idx, _ := strconv.ParseUint(resp.Header.Get("X-Raft-Index"), 10, 64); idx < res.ModIndex {
			t.Fatalf("X-Raft-Index %d below min_index %d", idx, res.ModIndex)
		}
	}
	// An index nobody has reached: 504 timeout once ?wait= runs out, with
	// the applied index in the body.
	start := time.Now()
	resp, body := c.Do(http.MethodGet, c.URL(f)+"/v1/kv/ryw?consistency=stale&min_index=999999&wait=300ms", nil, nil)
	var e kv.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != http.StatusGatewayTimeout || e.Error.Code != "timeout" || e.Error.AppliedIndex == 0 {
		t.Fatalf("unreachable min_index: %d %s", resp.StatusCode, body)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("answered after %s, before ?wait=300ms ran out", waited)
	}
	// Through the Go client the caller's deadline is the wait.
	cl, err := client.New(client.Config{Endpoints: []string{c.URL(f)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = cl.Get(ctx, []byte("ryw"), kv.ReadOptions{Consistency: kv.Stale, MinIndex: 999999})
	var we *kv.WaitError
	if !errors.As(err, &we) || !errors.Is(err, kv.ErrTimeout) || we.MinIndex != 999999 || we.AppliedIndex == 0 {
		t.Fatalf("client read past its deadline: %v (%+v)", err, we)
	}
}

func TestStaleReadsAndMaxStale(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	put(t, c, l, "s", "1")
	waitValue(t, c, f, "s", "1")
	resp, _ := get(t, c, f, "s", "?consistency=stale")
	ms, err := strconv.Atoi(resp.Header.Get("X-Last-Contact"))
	if err != nil || ms < 0 || ms > 5000 {
		t.Fatalf("X-Last-Contact %q on a follower", resp.Header.Get("X-Last-Contact"))
	}
	if resp, _ := get(t, c, l, "s", "?consistency=stale"); resp.Header.Get("X-Last-Contact") != "0" {
		t.Fatalf("X-Last-Contact on the leader %q, want 0", resp.Header.Get("X-Last-Contact"))
	}
	// No follower hears from the leader within a nanosecond.
	resp, body := get(t, c, f, "s", "?consistency=stale&max_stale=1ns")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"too_stale"`) {
		t.Fatalf("max_stale=1ns: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, c, f, "s", "?consistency=stale&max_stale=1m"); resp.StatusCode != http.StatusOK || body != "1" {
		t.Fatalf("max_stale=1m: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, c, f, "s", "?max_stale=1m"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("max_stale on a linearizable read: %d, want 400", resp.StatusCode)
	}
}

func TestConditionalWritesOverHTTP(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	f := c.Follower()
	do := func(method, key, body string, h map[string]string) (*http.Response, string) {
		resp, b := c.Do(method, c.URL(f)+"/v1/kv/"+key, strings.NewReader(body), h)
		return resp, string(b)
	}
	// Create-only.
	if resp, body := do("PUT", "cas", "a", map[string]string{"If-None-Match": "*"}); resp.StatusCode != 200 {
		t.Fatalf("create-only on absent key: %d %s", resp.StatusCode, body)
	}
	resp, _ := do("PUT", "cas", "b", map[string]string{"If-None-Match": "*"})
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 412 || etag == "" {
		t.Fatalf("create-only on existing key: %d, ETag %q", resp.StatusCode, etag)
	}
	// Compare-and-swap with the current ETag, then with the stale one.
	if resp, body := do("PUT", "cas", "c", map[string]string{"If-Match": etag}); resp.StatusCode != 200 {
		t.Fatalf("CAS with current ETag: %d %s", resp.StatusCode, body)
	}
	resp, body := do("PUT", "cas", "d", map[string]string{"If-Match": etag})
	if resp.StatusCode != 412 || resp.Header.Get("ETag") == etag || !strings.Contains(body, "precondition_failed") {
		t.Fatalf("CAS with stale ETag: %d %s ETag %s", resp.StatusCode, body, resp.Header.Get("ETag"))
	}
	cur := resp.Header.Get("ETag")
	// Conditional delete: stale token refused, current one deletes.
	if resp, _ := do("DELETE", "cas", "", map[string]string{"If-Match": etag}); resp.StatusCode != 412 {
		t.Fatalf("conditional delete with stale ETag: %d", resp.StatusCode)
	}
	if resp, body := do("DELETE", "cas", "", map[string]string{"If-Match": cur}); resp.StatusCode != 200 || !strings.Contains(body, `"deleted":1`) {
		t.Fatalf("conditional delete: %d %s", resp.StatusCode, body)
	}
	// On an absent key a failed condition carries no ETag.
	if resp, _ := do("PUT", "cas", "e", map[string]string{"If-Match": cur}); resp.StatusCode != 412 || resp.Header.Get("ETag") != "" {
		t.Fatalf("CAS on absent key: %d ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	// DELETE ?prefix removes a range in one entry and counts it.
	for i := range 5 {
		put(t, c, f, "range/"+strconv.Itoa(i), "x")
	}
	if resp, body := do("DELETE", "range/?prefix", "", nil); resp.StatusCode != 200 || !strings.Contains(body, `"deleted":5`) {
		t.Fatalf("delete prefix: %d %s", resp.StatusCode, body)
	}
}

func txnOver(t *testing.T, c *testkit.Cluster, i int, body string, h map[string]string) (*http.Response, string) {
	t.Helper()
	resp, b := c.Do(http.MethodPost, c.URL(i)+"/v1/txn", strings.NewReader(body), h)
	return resp, string(b)
}

func TestTxnOverHTTP(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{MaxValueSize: 4096})
	f := c.Follower()
	a := put(t, c, f, "cfg/a", "old")
	body := fmt.Sprintf(`{"compare":[{"key":"cfg/a","target":"mod_index","op":"=","value":%d},
		{"key":"cfg/b","target":"exists","op":"=","value":false}],
		"success":[{"op":"put","key":"cfg/a","value":"new"},{"op":"put","key":"cfg/b","value_base64":"AP8="},{"op":"get","key":"cfg/a"}],
		"failure":[{"op":"get","key":"cfg/a"}]}`, a.ModIndex)
	resp, out := txnOver(t, c, f, body, nil)
	var res kv.TxnResponse
	if err := json.Unmarshal([]byte(out), &res); err != nil || resp.StatusCode != 200 || !res.Succeeded || len(res.Results) != 3 {
		t.Fatalf("txn: %d %s", resp.StatusCode, out)
	}
	if rec := res.Results[2].Record; rec == nil || *rec.Value != "new" || rec.ModIndex != res.Index {
		t.Fatalf("get inside txn: %s", out)
	}
	if resp.Header.Get("X-Raft-Index") != strconv.FormatUint(res.Index, 10) {
		t.Fatalf("X-Raft-Index %s, txn index %d", resp.Header.Get("X-Raft-Index"), res.Index)
	}
	// The same transaction again: the compares fail, the failure branch runs.
	resp, out = txnOver(t, c, f, body, nil)
	if err := json.Unmarshal([]byte(out), &res); err != nil || resp.StatusCode != 200 || res.Succeeded ||
		len(res.Results) != 1 || res.Results[0].Found == nil || !*res.Results[0].Found || *res.Results[0].Record.Value != "new" {
		t.Fatalf("failed txn: %d %s", resp.StatusCode, out)
	}
	if _, v := get(t, c, f, "cfg/b", ""); v != "\x00\xff" {
		t.Fatalf("binary value written by txn: %q", v)
	}

	many := `{"success":[` + strings.Repeat(`{"op":"get","key":"k"},`, kv.MaxTxnOps) + `{"op":"get","key":"k"}]}`
	big := `{"success":[{"op":"put","key":"a","value":"` + strings.Repeat("x", 3000) + `"},{"op":"put","key":"b","value":"` + strings.Repeat("x", 3000) + `"}]}`
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"too many ops", many, 400, "bad_request"},
		{"too large", big, 413, "too_large"},
		{"bad json", `{"compare":[`, 400, "bad_request"},
		{"unknown field", `{"colour":1}`, 400, "bad_request"},
		{"unknown op", `{"success":[{"op":"rename","key":"a"}]}`, 400, "bad_request"},
		{"unknown target", `{"compare":[{"key":"a","target":"color","op":"=","value":1}]}`, 400, "bad_request"},
		{"wrong value type", `{"compare":[{"key":"a","target":"mod_index","op":"=","value":"x"}]}`, 400, "bad_request"},
		{"exists with <", `{"compare":[{"key":"a","target":"exists","op":"<","value":true}]}`, 400, "bad_request"},
		{"empty key", `{"success":[{"op":"put","key":"","value":"v"}]}`, 400, "invalid_key"},
	}
	for _, tt := range tests {
		resp, out := txnOver(t, c, f, tt.body, nil)
		if resp.StatusCode != tt.status || !strings.Contains(out, `"code":"`+tt.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tt.name, resp.StatusCode, out, tt.status, tt.code)
		}
	}
}

func TestIdempotencyKeyOverHTTP(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	key := map[string]string{"Idempotency-Key": "order-42"}
	resp, first := c.Do(http.MethodPut, c.URL(f)+"/v1/kv/counter", strings.NewReader("1"), key)
	if resp.StatusCode != 200 {
		t.Fatalf("first: %d %s", resp.StatusCode, first)
	}
	// The retry, on another node, returns the first answer and applies nothing.
	resp, again := c.Do(http.MethodPut, c.URL(l)+"/v1/kv/counter", strings.NewReader("1"), key)
	if resp.StatusCode != 200 || string(again) != string(first) {
		t.Fatalf("retry: %d %s, first %s", resp.StatusCode, again, first)
	}
	if r, _ := get(t, c, l, "counter", ""); r.Header.Get("X-Version") != "1" {
		t.Fatalf("retry applied again: version %s", r.Header.Get("X-Version"))
	}
	// Also after a leader change: the key lives in the replicated state.
	if resp, body := c.Do(http.MethodPost, c.URL(l)+"/v1/cluster/transfer-leader", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("transfer: %d %s", resp.StatusCode, body)
	}
	c.WaitReady()
	resp, again = c.Do(http.MethodPut, c.URL(f)+"/v1/kv/counter", strings.NewReader("1"), key)
	if resp.StatusCode != 200 || string(again) != string(first) {
		t.Fatalf("retry after leader change: %d %s, first %s", resp.StatusCode, again, first)
	}
	// The same key for another request is refused.
	resp, body := c.Do(http.MethodPut, c.URL(f)+"/v1/kv/counter", strings.NewReader("2"), key)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), "idempotency_key_reused") {
		t.Fatalf("reused key: %d %s", resp.StatusCode, body)
	}
	// Deletes and transactions take keys too.
	dk := map[string]string{"Idempotency-Key": "del-1"}
	_, d1 := c.Do(http.MethodDelete, c.URL(f)+"/v1/kv/counter", nil, dk)
	put(t, c, l, "counter", "back")
	_, d2 := c.Do(http.MethodDelete, c.URL(l)+"/v1/kv/counter", nil, dk)
	if string(d1) != string(d2) || !strings.Contains(string(d1), `"deleted":1`) {
		t.Fatalf("delete retry %s, first %s", d2, d1)
	}
	if _, v := get(t, c, l, "counter", ""); v != "back" {
		t.Fatalf("a replayed delete deleted again: %q", v)
	}
	tk := map[string]string{"Idempotency-Key": "txn-1"}
	txn := `{"success":[{"op":"put","key":"t","value":"1"}]}`
	_, t1 := txnOver(t, c, f, txn, tk)
	_, t2 := txnOver(t, c, l, txn, tk)
	if t1 != t2 {
		t.Fatalf("txn retry %s, first %s", t2, t1)
	}
	if resp, _ := c.Do(http.MethodPut, c.URL(f)+"/v1/kv/x", strings.NewReader("1"), map[string]string{"Idempotency-Key": strings.Repeat("k", 257)}); resp.StatusCode != 400 {
		t.Fatalf("oversized idempotency key: %d", resp.StatusCode)
	}
}

// The Go API: Txn and idempotency keys on the embedded node and the client.
func TestTxnAndIdempotencyGoAPI(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	cl, err := client.New(client.Config{Endpoints: []string{c.URL(c.Follower())}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for name, api := range map[string]interface {
		Txn(context.Context, kv.Txn, ...kv.WriteOption) (kv.TxnResult, error)
		Put(context.Context, []byte, []byte, ...kv.WriteOption) (kv.PutResult, error)
	}{"follower node": c.Node(c.Follower()), "client": cl} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		k := []byte("go/" + name)
		res, err := api.Txn(ctx, kv.Txn{
			Compare: []kv.Compare{{Key: k, Target: kv.TargetVersion, Op: kv.OpEqual, Number: 0}},
			Success: []kv.TxnOp{{Type: kv.TxnPut, Key: k, Value: []byte("v")}, {Type: kv.TxnGet, Key: k}},
		})
		if err != nil || !res.Succeeded || res.Results[0].Put.Version != 1 || string(res.Results[1].Record.Value) != "v" {
			t.Fatalf("%s txn: %+v %v", name, res, err)
		}
		// The deprecated context key still works.
		ictx := kv.WithIdempotencyKey(ctx, "go-"+name) //nolint:staticcheck // testing the deprecated path on purpose
		p1, err := api.Put(ictx, k, []byte("w"))
		if err != nil {
			t.Fatal(err)
		}
		p2, err := api.Put(ictx, k, []byte("w"))
		if err != nil || p2.ModIndex != p1.ModIndex || p2.Version != p1.Version || string(p2.Key) != string(k) {
			t.Fatalf("%s idempotent retry: %+v %v, first %+v", name, p2, err, p1)
		}
		cancel()
	}
}
