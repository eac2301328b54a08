package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testkit"
)

func TestBenchUsageErrors(t *testing.T) {
	tests := [][]string{
		{"extra"},
		{"--bogus"},
		{"--workload", "scan"},
		{"--connections", "0"},
		{"--value-size", "-1"},
		{"--keys", "0"},
		{"--duration", "0s"},
		{"--warmup", "-1s"},
		{"--timeout", "0s"},
		{"--preload-only", "--preload=false"},
		{"--addr", ""},
		{"--addr", "ftp://127.0.0.1:1"},
		{"--addr", "http://127.0.0.1:1/v1"},
		{"--serve-null", "nonsense"},
	}
	for _, args := range tests {
		err := run(context.Background(), append([]string{"bench"}, args...), nil, io.Discard, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("bench %q = %v, want a usage error", args, err)
			continue
		}
		if got := exitCode(err, io.Discard); got != 2 {
			t.Errorf("bench %q: exit code %d, want 2", args, got)
		}
	}
}

func TestBenchFlags(t *testing.T) {
	o, err := parseBenchArgs([]string{"--addr", "127.0.0.1:1, https://h:2/ ,", "--workload", "mixed", "--connections", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(o.endpoints, " "), "http://127.0.0.1:1 https://h:2"; got != want {
		t.Errorf("endpoints = %q, want %q", got, want)
	}
	if o.workload != workloadMixed || o.connections != 3 || o.valueSize != 256 || o.keys != 10000 || o.duration != 10*time.Second || !o.preload {
		t.Errorf("options = %+v", o)
	}
	if _, err := parseBenchArgs([]string{"--preload-only", "--duration", "0s"}, io.Discard); err != nil {
		t.Errorf("--preload-only needs no duration: %v", err)
	}
}

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

func TestHistogramBuckets(t *testing.T) {
	if got := bucketOf(1<<histMaxBits - 1); got != histBuckets-1 {
		t.Fatalf("bucketOf(max) = %d, want %d", got, histBuckets-1)
	}
	if got := bucketOf(math.MaxInt64); got != histBuckets-1 {
		t.Errorf("bucketOf(MaxInt64) = %d, want the last bucket %d", got, histBuckets-1)
	}
	if got := bucketOf(-5); got != 0 {
		t.Errorf("bucketOf(-5) = %d, want 0", got)
	}
	// Every bucket holds the values from just above the previous bucket's
	// high to its own high, and is narrower than 1/histSub of its values.
	low := int64(0)
	for i := range histBuckets {
		high := bucketHigh(i)
		if high < low {
			t.Fatalf("bucket %d: high %d below low %d", i, high, low)
		}
		for _, v := range []int64{low, (low + high) / 2, high} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		if width := high - low + 1; low >= histSub && float64(width) > float64(low)/histSub {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its values", i, low, high, histSub)
		}
		low = high + 1
	}
}

func TestHistogramQuantiles(t *testing.T) {
	seq := func(n, step int64) []int64 {
		var vs []int64
		for i := int64(1); i <= n; i++ {
			vs = append(vs, i*step)
		}
		return vs
	}
	ms := int64(time.Millisecond)
	outlier := make([]int64, 100) // 99 samples of 1ms and one of 1s
	for i := range outlier {
		outlier[i] = ms
	}
	outlier[99] = 1000 * ms
	tests := []struct {
		name   string
		values []int64
		q      float64
		want   int64
	}{
		{"empty", nil, 0.5, 0},
		{"one", []int64{42}, 0.5, 42},
		{"one p99", []int64{42}, 0.99, 42},
		{"exact p50", seq(100, 1), 0.50, 50},
		{"exact p90", seq(100, 1), 0.90, 90},
		{"exact p99", seq(100, 1), 0.99, 99},
		{"exact p100", seq(100, 1), 1, 100},
		{"exact p0 is the minimum", seq(100, 1), 0, 1},
		{"us p50", seq(1000, 1000), 0.50, 500_000},
		{"us p99", seq(1000, 1000), 0.99, 990_000},
		{"us max", seq(1000, 1000), 1, 1_000_000},
		{"outlier p50", outlier, 0.50, ms},
		{"outlier p99", outlier, 0.99, ms},
		{"outlier p999", outlier, 0.999, 1000 * ms},
	}
	for _, tc := range tests {
		h := newHistogram()
		for _, v := range tc.values {
			h.record(v)
		}
		got := h.quantile(tc.q)
		// Within the bucket's precision, never below the true value.
		if got < tc.want || float64(got-tc.want) > float64(tc.want)/histSub {
			t.Errorf("%s: quantile(%v) = %d, want %d (+%.1f%%)", tc.name, tc.q, got, tc.want, 100.0/histSub)
		}
	}
}

func TestHistogramMergeAndMean(t *testing.T) {
	all, a, b := newHistogram(), newHistogram(), newHistogram()
	for i := int64(1); i <= 10000; i++ {
		v := i * i // spread over many octaves
		all.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	a.merge(b)
	for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
		if got, want := a.quantile(q), all.quantile(q); got != want {
			t.Errorf("merged quantile(%v) = %d, want %d", q, got, want)
		}
	}
	if a.n != all.n || a.max != all.max || a.mean() != all.mean() {
		t.Errorf("merged n, max, mean = %d, %d, %d; want %d, %d, %d", a.n, a.max, a.mean(), all.n, all.max, all.mean())
	}
	if got, want := all.max, int64(10000*10000); got != want {
		t.Errorf("max = %d, want %d", got, want)
	}
	if got := newHistogram().mean(); got != 0 {
		t.Errorf("mean of nothing = %d, want 0", got)
	}
}

// benchJSON runs raftkv bench with --json and decodes its result.
func benchJSON(t *testing.T, args ...string) benchResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), append([]string{"bench", "--json"}, args...), nil, &stdout, &stderr); err != nil {
		t.Fatalf("bench %q: %v\n%s", args, err, stderr.String())
	}
	var res benchResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("bench %q: %v in %q", args, err, stdout.String())
	}
	return res
}

func TestBenchNullServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveNull(ctx, ln, 100) }()

	addr := ln.Addr().String()
	for _, wl := range benchWorkloads() {
		res := benchJSON(t, "--addr", addr+","+addr, "--workload", wl, "--connections", "3",
			"--duration", "300ms", "--warmup", "50ms", "--keys", "50", "--value-size", "100")
		if res.Ops == 0 || res.ErrorsTotal != 0 || len(res.Errors) != 0 {
			t.Errorf("%s against the null server: ops %d, errors %d %v", wl, res.Ops, res.ErrorsTotal, res.Errors)
		}
		if res.OpsPerSec <= 0 || res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
			t.Errorf("%s: implausible figures %+v", wl, res)
		}
	}
	resp, err := http.Get("http://" + addr + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != 100 {
		t.Errorf("null GET = %d with %d bytes, want 200 with the 100-byte value", resp.StatusCode, len(body))
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("serveNull = %v after cancel, want nil", err)
	}
}

func TestBenchCountsErrorsByKind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"no_leader","message":"no leader known"}}`)
	}))
	defer srv.Close()
	res := benchJSON(t, "--addr", srv.URL, "--workload", "put", "--connections", "2", "--duration", "200ms", "--warmup", "0s")
	if res.Ops != 0 || res.ErrorsTotal == 0 || len(res.Errors) != 1 {
		t.Fatalf("ops %d, errors %d %+v; want only errors", res.Ops, res.ErrorsTotal, res.Errors)
	}
	if e := res.Errors[0]; e.Kind != "http 503 no_leader" || e.Count != res.ErrorsTotal || e.Example != "no leader known" {
		t.Errorf("error = %+v, want every request as http 503 no_leader", e)
	}
}

func TestBenchTxnUnsupported(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"no route"}}`)
	}))
	defer srv.Close()
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"bench", "--addr", srv.URL, "--workload", "txn", "--duration", "1s"}, nil, &stdout, io.Discard)
	if !errors.Is(err, errUnsupported) || !strings.Contains(err.Error(), "404") {
		t.Errorf("txn against a server without it = %v, want errUnsupported naming the 404", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("printed figures for an unsupported workload: %q", stdout.String())
	}
}

func TestBenchCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	c := testkit.NewCluster(t, 1, testkit.Options{})
	for _, wl := range []string{workloadPut, workloadGet} {
		res := benchJSON(t, "--addr", c.URL(0), "--workload", wl, "--connections", "4",
			"--duration", "1s", "--warmup", "100ms", "--keys", "200")
		if res.Ops == 0 || res.ErrorsTotal != 0 {
			t.Errorf("%s: ops %d, errors %d %+v; want ops and no errors", wl, res.Ops, res.ErrorsTotal, res.Errors)
		}
	}
	// The get workload preloaded every key with a 256-byte value.
	resp, body := c.Do(http.MethodGet, c.URL(0)+"/v1/kv/bench/00000199", nil, nil)
	if resp.StatusCode != http.StatusOK || len(body) != 256 {
		t.Errorf("preloaded key: %d with %d bytes, want 200 with 256", resp.StatusCode, len(body))
	}
}
