package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

func TestAppendKey(t *testing.T) {
	for _, tc := range []struct {
		k    int
		want string
	}{{0, "p/00000000"}, {42, "p/00000042"}, {99999999, "p/99999999"}, {123456789, "p/123456789"}} {
		if got := string(appendKey([]byte("p/"), tc.k)); got != tc.want {
			t.Errorf("appendKey(%d) = %q, want %q", tc.k, got, tc.want)
		}
	}
}

func TestBenchValue(t *testing.T) {
	for _, n := range []int{0, 1, 256, 4096} {
		v := benchValue(n)
		if len(v) != n || !bytes.Equal(v, benchValue(n)) {
			t.Errorf("benchValue(%d): %d bytes, or not the same twice", n, len(v))
		}
		if strings.Trim(string(v), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			t.Errorf("benchValue(%d) = %q, want letters only", n, v)
		}
	}
}

// TestTxnBody checks that the txn workload's body is the transaction it
// means, as the server decodes it.
func TestTxnBody(t *testing.T) {
	for _, n := range []int{0, 256} {
		key, value := []byte("bench/00000007"), benchValue(n)
		body, err := txnBody(key, value)
		if err != nil {
			t.Fatal(err)
		}
		var req kv.TxnRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		txn, err := req.Txn()
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if err := txn.Validate(1 << 20); err != nil {
			t.Errorf("%s: %v", body, err)
		}
		if len(txn.Compare) != 1 || len(txn.Success) != 1 || len(txn.Failure) != 1 {
			t.Fatalf("%s: want one compare, one success op, one failure op", body)
		}
		c, s, f := txn.Compare[0], txn.Success[0], txn.Failure[0]
		if !bytes.Equal(c.Key, key) || c.Target != kv.TargetVersion || c.Op != kv.OpGreater || c.Number != 0 {
			t.Errorf("compare = %+v, want version of %s > 0", c, key)
		}
		if s.Type != kv.TxnPut || !bytes.Equal(s.Key, key) || !bytes.Equal(s.Value, value) {
			t.Errorf("success = %+v, want a put of the %d-byte value", s, n)
		}
		if f.Type != kv.TxnGet || !bytes.Equal(f.Key, key) {
			t.Errorf("failure = %+v, want a get", f)
		}
	}
}

// generator returns a Generator for o, closed when the test ends.
func generator(t *testing.T, o Options) *Generator {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "bench/"
	}
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// runLoad preloads when the workload reads keys and runs the load.
func runLoad(t *testing.T, o Options) *Result {
	t.Helper()
	g := generator(t, o)
	ctx := context.Background()
	if err := g.Probe(ctx); err != nil {
		t.Fatalf("%s: probe: %v", o.Workload, err)
	}
	if o.Workload.ReadsKeys() {
		if err := g.Preload(ctx); err != nil {
			t.Fatalf("%s: preload: %v", o.Workload, err)
		}
	}
	res, err := g.Run(ctx)
	if err != nil {
		t.Fatalf("%s: run: %v", o.Workload, err)
	}
	return res
}

// checkFigures checks what every healthy run must show: ops and no
// errors, and figures in their order.
func checkFigures(t *testing.T, res *Result) {
	t.Helper()
	if res.Ops == 0 || res.ErrorsTotal != 0 || len(res.Errors) != 0 {
		t.Errorf("%s: ops %d, errors %d %+v; want ops and no errors", res.Workload, res.Ops, res.ErrorsTotal, res.Errors)
	}
	l := res.Latency
	if res.OpsPerSec <= 0 || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max || l.Mean > l.Max {
		t.Errorf("%s: implausible figures %+v", res.Workload, res)
	}
}

func TestNullServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeNull(ctx, ln, 100) }()

	addr := ln.Addr().String()
	for _, wl := range Workloads() {
		if wl.Watches() || wl.UsesLeases() {
			continue // the do-nothing server has no watch streams, leases or locks
		}
		res := runLoad(t, Options{Endpoints: []string{addr, addr}, Workload: wl, Connections: 3,
			Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Keys: 50, ValueSize: 100})
		checkFigures(t, res)
		if res.Workload != wl || res.Connections != 3 || res.Keys != 50 || res.ValueSize != 100 || res.Warmup != 0.05 || res.Seconds < 0.3 {
			t.Errorf("%s: result does not echo the options: %+v", wl, res)
		}
	}
	resp, err := http.Get("http://" + addr + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, benchValue(100)) {
		t.Errorf("null GET = %d with %d bytes, want 200 with the 100-byte value", resp.StatusCode, len(body))
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeNull = %v after cancel, want nil", err)
	}
}

func TestCountsErrorsByKind(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantKind    string
		wantExample string
	}{
		{"JSON error body", http.StatusServiceUnavailable, `{"error":{"code":"no_leader","message":"no leader known"}}`, "http 503 no_leader", "no leader known"},
		{"outcome unknown", http.StatusGatewayTimeout, `{"error":{"code":"outcome_unknown","message":"maybe applied"}}`, "http 504 outcome_unknown", "maybe applied"},
		{"not a JSON error", http.StatusBadGateway, "bad gateway\n", "http 502", "bad gateway"},
		{"JSON without a code", http.StatusInternalServerError, `{"error":{}}`, "http 500", `{"error":{}}`},
	}
	for _, tc := range tests {
		var requests atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, tc.body)
		}))
		res, err := generator(t, Options{Endpoints: []string{srv.URL}, Workload: Put, Connections: 2, Keys: 10,
			Duration: 200 * time.Millisecond}).Run(context.Background())
		srv.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.Ops != 0 || res.ErrorsTotal == 0 || len(res.Errors) != 1 {
			t.Fatalf("%s: ops %d, errors %d %+v; want only errors", tc.name, res.Ops, res.ErrorsTotal, res.Errors)
		}
		if e := res.Errors[0]; e.Kind != tc.wantKind || e.Count != res.ErrorsTotal || e.Example != tc.wantExample {
			t.Errorf("%s: error = %+v, want every request as %q with example %q", tc.name, e, tc.wantKind, tc.wantExample)
		}
		// No warm-up: every request the server saw is counted once.
		if got := requests.Load(); got != res.Ops+res.ErrorsTotal {
			t.Errorf("%s: the server saw %d requests, the result counts %d", tc.name, got, res.Ops+res.ErrorsTotal)
		}
	}
}

func TestCountsTransportErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	res, err := generator(t, Options{Endpoints: []string{addr}, Workload: Get, Connections: 1, Keys: 10,
		Duration: 100 * time.Millisecond}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 0 || len(res.Errors) != 1 || res.Errors[0].Kind != "connection refused" {
		t.Errorf("ops %d, errors %+v; want only connection refused", res.Ops, res.Errors)
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name         string
		workload     Workload
		status       int
		wantErr      error // nil: Probe passes
		wantRequests int64
	}{
		{"txn 404", Txn, http.StatusNotFound, ErrUnsupported, 1},
		{"txn 405", Txn, http.StatusMethodNotAllowed, ErrUnsupported, 1},
		{"txn 200", Txn, http.StatusOK, nil, 1},
		{"txn 503 is counted by the run, not refused", Txn, http.StatusServiceUnavailable, nil, 1},
		{"put needs no probe", Put, http.StatusNotFound, nil, 0},
		{"get needs no probe", Get, http.StatusNotFound, nil, 0},
	}
	for _, tc := range tests {
		var requests atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			if r.Method != http.MethodPost || r.URL.Path != "/v1/txn" {
				t.Errorf("%s: probe sent %s %s", tc.name, r.Method, r.URL.Path)
			}
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"no route"}}`)
		}))
		err := generator(t, Options{Endpoints: []string{srv.URL}, Workload: tc.workload, Connections: 1, Keys: 1}).Probe(context.Background())
		srv.Close()
		if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil && !strings.Contains(err.Error(), fmt.Sprint(tc.status))) {
			t.Errorf("%s: Probe = %v, want %v naming the status", tc.name, err, tc.wantErr)
		}
		if got := requests.Load(); got != tc.wantRequests {
			t.Errorf("%s: %d requests, want %d", tc.name, got, tc.wantRequests)
		}
	}
	// Nothing listening: the probe cannot tell, and says why.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = generator(t, Options{Endpoints: []string{addr}, Workload: Txn, Connections: 1, Keys: 1}).Probe(context.Background())
	if err == nil || errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "POST http://"+addr+"/v1/txn") {
		t.Errorf("Probe without a server = %v, want the transport error", err)
	}
}

func TestPreloadStopsAtFirstError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, `{"error":{"code":"too_large","message":"value too large"}}`)
	}))
	defer srv.Close()
	err := generator(t, Options{Endpoints: []string{srv.URL}, Workload: Get, Connections: 4, Keys: 1000}).Preload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http 413 too_large: value too large") {
		t.Errorf("Preload = %v, want the first error", err)
	}
}

func TestRunInterrupted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- ServeNull(ctx, ln, 10) }()
	runCtx, stop := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer stop()
	res, err := generator(t, Options{Endpoints: []string{ln.Addr().String()}, Workload: Put, Connections: 2, Keys: 10,
		Duration: time.Hour}).Run(runCtx)
	if res != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run cut short = %+v, %v; want no figures and the context's error", res, err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Error(err)
	}
}

// countingProxy forwards every request to target and counts them: what
// the cluster was actually sent, independently of the Generator's books.
func countingProxy(t *testing.T, target string, n *atomic.Int64) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCluster runs every workload against a real three-node cluster,
// spread over its nodes through proxies that count the requests.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testkit.NewCluster(t, 3, testkit.Options{})
	var sent atomic.Int64
	var eps []string
	for i := range c.Size() {
		eps = append(eps, countingProxy(t, c.URL(i), &sent))
	}

	// put, without warm-up on a fresh key space: every request is counted,
	// as an op or as an error, and every op is one version of a key.
	const putKeys = 8
	res := runLoad(t, Options{Endpoints: eps, Workload: Put, Connections: 4, Keys: putKeys, KeyPrefix: "put/",
		Duration: time.Second, ValueSize: 64})
	checkFigures(t, res)
	if got := sent.Load(); got != res.Ops+res.ErrorsTotal {
		t.Errorf("put: the cluster was sent %d requests; ops %d + errors %d = %d", got, res.Ops, res.ErrorsTotal, res.Ops+res.ErrorsTotal)
	}
	cl, err := client.New(client.Config{Endpoints: []string{c.URL(0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := cl.List(ctx, kv.ListOptions{Prefix: []byte("put/")})
	if err != nil {
		t.Fatal(err)
	}
	var versions uint64
	for _, r := range page.Items {
		versions += r.Version
		if !bytes.Equal(r.Value, benchValue(64)) {
			t.Errorf("%s = %q, want the run's value", r.Key, r.Value)
		}
	}
	// Hundreds of puts over 8 keys leave none unwritten but with odds
	// far below one in a billion.
	if len(page.Items) != putKeys {
		t.Errorf("put wrote %d keys, want all %d", len(page.Items), putKeys)
	}
	if versions != uint64(res.Ops) {
		t.Errorf("the keys' versions add up to %d puts, the run counted %d ops", versions, res.Ops)
	}

	// The other workloads, with warm-up, on a preloaded key space.
	for _, wl := range []Workload{Get, GetStale, Mixed, Txn} {
		before := sent.Load()
		res := runLoad(t, Options{Endpoints: eps, Workload: wl, Connections: 4, Keys: 50,
			Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond})
		checkFigures(t, res)
		if got := sent.Load() - before; got < res.Ops+res.ErrorsTotal {
			t.Errorf("%s: the cluster was sent %d requests, fewer than the %d counted", wl, got, res.Ops+res.ErrorsTotal)
		}
	}
	// Preload wrote every key.
	page, err = cl.List(ctx, kv.ListOptions{Prefix: []byte("bench/"), KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 50 || string(page.Items[0].Key) != "bench/00000000" || string(page.Items[49].Key) != "bench/00000049" {
		t.Errorf("preloaded keys: %d, want bench/00000000 to bench/00000049", len(page.Items))
	}
}
