package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/loadgen"
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
		{"--addr", " , "},
		{"--addr", "ftp://127.0.0.1:1"},
		{"--addr", "http://127.0.0.1:1?x=1"},
		{"--serve-null", "nonsense"},
		{"--serve-null", "127.0.0.1:0", "--connections", "0"},
		{"--workload", "watch-idle", "--watchers", "0"},
		{"--workload", "watch-delay", "--watchers", "-1"},
		{"--workload", "watch-delay", "--rate", "0"},
		{"--workload", "watch-idle", "--addr", "127.0.0.1:1,127.0.0.1:2"},
		{"--workload", "watch-delay", "--duration", "0s"},
		{"--workload", "leases-keepalive", "--leases", "3", "--connections", "4"},
		{"--workload", "leases-keepalive", "--ttl", "0s"},
		{"--workload", "lock-contended", "--ttl", "-1s"},
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
	t.Setenv("RAFTKV_ADDR", "")
	o, err := parseBenchArgs(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := loadgen.Options{Endpoints: []string{defaultAddr}, Workload: loadgen.Put, Connections: 16, ValueSize: 256, Keys: 10000,
		KeyPrefix: "bench/", Duration: 10 * time.Second, Warmup: time.Second, Timeout: 10 * time.Second, Watchers: 1000, Rate: 1000,
		Leases: 10000, TTL: 30 * time.Second}
	if got := o.Options; !reflect.DeepEqual(got, want) || !o.preload || o.preloadOnly || o.json || o.serveNull != "" {
		t.Errorf("defaults = %+v, want %+v with preload", o, want)
	}

	t.Setenv("RAFTKV_ADDR", "127.0.0.1:7")
	o, err = parseBenchArgs([]string{"--workload", "mixed", "--connections", "3", "--key-prefix", "x/", "--json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Endpoints, " ") != "http://127.0.0.1:7" || o.Workload != loadgen.Mixed || o.Connections != 3 || o.KeyPrefix != "x/" || !o.json {
		t.Errorf("options = %+v", o)
	}
	o, err = parseBenchArgs([]string{"--addr", "127.0.0.1:1, https://h:2/ ,"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(o.Endpoints, " "), "http://127.0.0.1:1 https://h:2"; got != want {
		t.Errorf("endpoints = %q, want %q", got, want)
	}
	o, err = parseBenchArgs([]string{"--workload", "watch-idle", "--watchers", "10000", "--addr", "127.0.0.1:9"}, io.Discard)
	if err != nil || o.Workload != loadgen.WatchIdle || o.Watchers != 10000 || strings.Join(o.Endpoints, " ") != "http://127.0.0.1:9" {
		t.Errorf("watch-idle options = %+v, %v", o, err)
	}
	o, err = parseBenchArgs([]string{"--workload", "watch-delay", "--watchers", "30", "--rate", "200", "--addr", "127.0.0.1:1,127.0.0.1:2"}, io.Discard)
	if err != nil || o.Workload != loadgen.WatchDelay || o.Watchers != 30 || o.Rate != 200 || len(o.Endpoints) != 2 {
		t.Errorf("watch-delay options = %+v, %v", o, err)
	}
	o, err = parseBenchArgs([]string{"--workload", "leases-keepalive", "--leases", "500", "--ttl", "5s", "--connections", "8"}, io.Discard)
	if err != nil || o.Workload != loadgen.LeasesKeepalive || o.Leases != 500 || o.TTL != 5*time.Second || o.Connections != 8 {
		t.Errorf("leases-keepalive options = %+v, %v", o, err)
	}
	if _, err := parseBenchArgs([]string{"--preload-only", "--duration", "0s"}, io.Discard); err != nil {
		t.Errorf("--preload-only needs no duration: %v", err)
	}
	if _, err := parseBenchArgs([]string{"--serve-null", "127.0.0.1:0", "--duration", "0s", "--addr", ""}, io.Discard); err != nil {
		t.Errorf("--serve-null needs no duration and no endpoint: %v", err)
	}
}

// TestPrintBenchResult pins raftkv bench's two output formats, which
// scripts/bench.sh and people read.
func TestPrintBenchResult(t *testing.T) {
	r := &loadgen.Result{Workload: loadgen.Get, Endpoints: []string{"http://127.0.0.1:8001", "http://127.0.0.1:8002"},
		Connections: 16, ValueSize: 256, Keys: 10000, Warmup: 1, Seconds: 5.0012, Ops: 50123, OpsPerSec: 10022.1,
		Latency:     loadgen.LatencyMS{Mean: 1.5, P50: 1.234, P90: 2.5, P99: 7.25, Max: 31.001},
		ErrorsTotal: 3, Errors: []loadgen.ErrorCount{
			{Kind: "http 503 no_leader", Count: 2, Example: "no leader known"},
			{Kind: "timeout", Count: 1, Example: "context deadline exceeded"},
		}}
	var text, js bytes.Buffer
	if err := printBenchResult(&text, r); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	wantText := "workload              get\n" +
		"endpoints             http://127.0.0.1:8001, http://127.0.0.1:8002\n" +
		"connections           16\n" +
		"values                256 bytes, key space 10000\n" +
		"measured              5.00s after 1.00s of warm-up\n" +
		"throughput            10022 ops/s (50123 ops)\n" +
		"latency               mean 1.500ms  p50 1.234ms  p90 2.500ms  p99 7.250ms  max 31.001ms\n" +
		"errors                3\n" +
		"  http 503 no_leader  2  e.g. no leader known\n" +
		"  timeout             1  e.g. context deadline exceeded\n"
	wantJSON := `{"workload":"get","endpoints":["http://127.0.0.1:8001","http://127.0.0.1:8002"],"connections":16,` +
		`"value_size":256,"keys":10000,"warmup_s":1,"duration_s":5.0012,"ops":50123,"ops_per_sec":10022.1,` +
		`"latency_ms":{"mean":1.5,"p50":1.234,"p90":2.5,"p99":7.25,"max":31.001},"errors_total":3,` +
		`"errors":[{"kind":"http 503 no_leader","count":2,"example":"no leader known"},{"kind":"timeout","count":1,"example":"context deadline exceeded"}]}` + "\n"
	if text.String() != wantText {
		t.Errorf("text output:\n%s\nwant:\n%s", text.String(), wantText)
	}
	if js.String() != wantJSON {
		t.Errorf("JSON output:\n%s\nwant:\n%s", js.String(), wantJSON)
	}
}

// TestPrintWatchResults pins the output of the two watch workloads.
func TestPrintWatchResults(t *testing.T) {
	idle := &loadgen.WatchIdleResult{Workload: loadgen.WatchIdle, Endpoint: "http://127.0.0.1:8001", Watchers: 10000, Opened: 9999, OpenSeconds: 1.234,
		Before:      loadgen.MemorySample{RSSBytes: 16 << 20, HeapInuseBytes: 4 << 20, StackInuseBytes: 1 << 19, Goroutines: 30, Watchers: 0},
		Open:        loadgen.MemorySample{RSSBytes: 272 << 20, HeapInuseBytes: 170 << 20, StackInuseBytes: 98 << 20, Goroutines: 20028, Watchers: 9999},
		Closed:      loadgen.MemorySample{RSSBytes: 280 << 20, HeapInuseBytes: 5 << 20, StackInuseBytes: 1 << 20, Goroutines: 30, Watchers: 0},
		PerWatcher:  loadgen.PerWatcher{RSSBytes: 26214.4, HeapStackBytes: 27648, HeapBytes: 17408, StackBytes: 10240, Goroutines: 2},
		ErrorsTotal: 1, Errors: []loadgen.ErrorCount{{Kind: "http 503 too_many_watchers", Count: 1, Example: "full"}}}
	var text bytes.Buffer
	if err := printWatchIdleResult(&text, idle); err != nil {
		t.Fatal(err)
	}
	want := "workload                      watch-idle\n" +
		"endpoint                      http://127.0.0.1:8001\n" +
		"watchers                      9999 opened of 10000, in 1.23s\n" +
		"node memory                   resident   heap in use  stacks    goroutines  watchers\n" +
		"  before                      16.0 MiB   4.0 MiB      0.5 MiB   30          0\n" +
		"  open                        272.0 MiB  170.0 MiB    98.0 MiB  20028       9999\n" +
		"  closed                      280.0 MiB  5.0 MiB      1.0 MiB   30          0\n" +
		"per watcher                   resident 25.6 KiB  heap+stacks 27.0 KiB (heap 17.0 KiB, stacks 10.0 KiB)  goroutines 2.00\n" +
		"events                        0\n" +
		"errors                        1\n" +
		"  http 503 too_many_watchers  1  e.g. full\n"
	if text.String() != want {
		t.Errorf("watch-idle output:\n%s\nwant:\n%s", text.String(), want)
	}

	delay := &loadgen.WatchDelayResult{Workload: loadgen.WatchDelay, Endpoints: []string{"http://127.0.0.1:8001", "http://127.0.0.1:8002"},
		Watchers: 1000, Opened: 1000, Rate: 1000, Connections: 16, ValueSize: 256, Warmup: 1, Seconds: 10.0012,
		Writes: 9990, WritesPerSec: 998.9, WritesLate: 3, WritesUnsent: 7, WriteLatency: loadgen.LatencyMS{Mean: 5, P50: 4, P90: 8, P99: 20, Max: 50},
		EventsExpected: 9990000, EventsReceived: 9989999, EventsMissing: 1, EventsEarly: 12345, EventsDuplicate: 2, EventsMismatched: 3,
		EventsUnacknowledged: 1000, EventsForeign: 4, Delay: loadgen.LatencyMS{Mean: 10.5, P50: 3.25, P90: 30, P99: 99.5, Max: 250},
		LoadCPU: 0.85, WatchersEnded: 1, ErrorsTotal: 2, Errors: []loadgen.ErrorCount{
			{Kind: "http 504 outcome_unknown", Count: 1, Example: "maybe"}, {Kind: "stream ended: compacted", Count: 1, Example: "gone"}}}
	text.Reset()
	if err := printWatchDelayResult(&text, delay); err != nil {
		t.Fatal(err)
	}
	want = "workload                    watch-delay\n" +
		"endpoints                   http://127.0.0.1:8001, http://127.0.0.1:8002\n" +
		"watchers                    1000 opened of 1000, 1 ended early\n" +
		"writes                      9990 at 999/s (asked 1000/s, 3 late, 7 not sent), 16 connections, 256-byte values\n" +
		"measured                    10.00s after 1.00s of warm-up\n" +
		"write latency               mean 5.000ms  p50 4.000ms  p90 8.000ms  p99 20.000ms  max 50.000ms\n" +
		"event delay                 mean 10.500ms  p50 3.250ms  p90 30.000ms  p99 99.500ms  max 250.000ms\n" +
		"events                      9989999 received of 9990000 expected, 1 missing, 12345 before their answer (delay 0)\n" +
		"  other                     2 duplicated, 3 mismatched, 1000 of unanswered writes, 4 of other keys\n" +
		"load process                0.85 CPUs\n" +
		"errors                      2\n" +
		"  http 504 outcome_unknown  1  e.g. maybe\n" +
		"  stream ended: compacted   1  e.g. gone\n"
	if text.String() != want {
		t.Errorf("watch-delay output:\n%s\nwant:\n%s", text.String(), want)
	}
	// scripts/bench.sh reads these JSON fields.
	var js bytes.Buffer
	if err := writeJSON(&js, delay); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"writes_per_sec":998.9`, `"delay_ms":{"mean":10.5,"p50":3.25,"p90":30,"p99":99.5,"max":250}`,
		`"events_expected":9990000`, `"events_received":9989999`, `"events_missing":1`, `"events_early":12345`, `"load_cpu":0.85`} {
		if !strings.Contains(js.String(), field) {
			t.Errorf("watch-delay JSON lacks %s: %s", field, js.String())
		}
	}
	js.Reset()
	if err := writeJSON(&js, idle); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"per_watcher":{"rss_bytes":26214.4,"heap_stack_bytes":27648,"heap_bytes":17408,"stack_bytes":10240,"goroutines":2}`) {
		t.Errorf("watch-idle JSON: %s", js.String())
	}
}

// TestBenchWatchRefused runs the watch workloads against a node that
// refuses every watch: no figures, exit 1, the refusal named.
func TestBenchWatchRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/watch/") {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"too_many_watchers","message":"full"}}`)
			return
		}
		if r.URL.Path == "/metrics" {
			_, _ = io.WriteString(w, "go_goroutines 1\ngo_memstats_heap_inuse_bytes 1\ngo_memstats_stack_inuse_bytes 1\nprocess_resident_memory_bytes 1\nraftkv_watchers 0\n")
		}
	}))
	defer srv.Close()
	for _, wl := range []string{"watch-idle", "watch-delay"} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"bench", "--addr", srv.URL, "--workload", wl, "--watchers", "3", "--duration", "1s"}, nil, &stdout, io.Discard)
		if code := exitCode(err, &stderr); code != 1 || !strings.Contains(stderr.String(), "no watch opened: 3 failed, most as http 503 too_many_watchers (full)") {
			t.Errorf("%s: exit %d, stderr %q", wl, code, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%s: printed figures: %q", wl, stdout.String())
		}
	}
}

func TestBenchTxnUnsupported(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"no route"}}`)
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "--addr", srv.URL, "--workload", "txn", "--duration", "1s"}, nil, &stdout, io.Discard)
	if !errors.Is(err, loadgen.ErrUnsupported) || !strings.Contains(err.Error(), "404") {
		t.Errorf("txn against a server without it = %v, want ErrUnsupported naming the 404", err)
	}
	// scripts/bench.sh prints this message after "raftkv: bench: ".
	if code := exitCode(err, &stderr); code != 1 || !strings.HasPrefix(stderr.String(), "raftkv: bench: workload not supported by the server: POST "+srv.URL+"/v1/txn answered http 404 not_found (no route)") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("printed figures for an unsupported workload: %q", stdout.String())
	}
}

// TestBenchCluster runs raftkv bench end to end against a real three-node
// cluster, as scripts/bench.sh does: preload, then a workload in each
// output format.
func TestBenchCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) { cfg.Pprof = true }})
	addrs := strings.Join([]string{c.URL(0), c.URL(1), c.URL(2)}, ",")
	bench := func(args ...string) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"bench", "--addr", addrs, "--keys", "200", "--connections", "4"}, args...), nil, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != 0 {
			t.Fatalf("bench %q: exit %d\n%s", args, code, stderr.String())
		}
		return stdout.String(), stderr.String()
	}

	stdout, stderr := bench("--preload-only", "--value-size", "100")
	if stdout != "" || !regexp.MustCompile(`^raftkv bench: preloaded 200 keys in [0-9.]+s \([0-9]+ puts/s\)\n$`).MatchString(stderr) {
		t.Errorf("--preload-only: stdout %q, stderr %q", stdout, stderr)
	}
	resp, body := c.Do(http.MethodGet, c.URL(1)+"/v1/kv/bench/00000199", nil, nil)
	if resp.StatusCode != http.StatusOK || len(body) != 100 {
		t.Errorf("preloaded key: %d with %d bytes, want 200 with 100", resp.StatusCode, len(body))
	}

	stdout, _ = bench("--workload", "get", "--preload=false", "--duration", "500ms", "--warmup", "100ms")
	want := regexp.MustCompile(`^workload +get\n` +
		`endpoints +` + regexp.QuoteMeta(strings.ReplaceAll(addrs, ",", ", ")) + `\n` +
		`connections +4\n` +
		`values +256 bytes, key space 200\n` +
		`measured +[0-9]+\.[0-9]{2}s after 0\.10s of warm-up\n` +
		`throughput +[1-9][0-9]* ops/s \([1-9][0-9]* ops\)\n` +
		`latency +mean [0-9.]+ms  p50 [0-9.]+ms  p90 [0-9.]+ms  p99 [0-9.]+ms  max [0-9.]+ms\n` +
		`errors +0\n$`)
	if !want.MatchString(stdout) {
		t.Errorf("get output:\n%s\nwant it to match %s", stdout, want)
	}

	stdout, _ = bench("--workload", "put", "--duration", "500ms", "--warmup", "0s", "--json")
	var res loadgen.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	if res.Workload != loadgen.Put || len(res.Endpoints) != 3 || res.Ops == 0 || res.ErrorsTotal != 0 || res.Errors == nil {
		t.Errorf("put: %+v; want ops and no errors over the three endpoints", res)
	}

	// The watch workloads; a later --addr replaces the one bench passes.
	stdout, _ = bench("--workload", "watch-idle", "--watchers", "20", "--addr", c.URL(2))
	want = regexp.MustCompile(`^workload +watch-idle\n` +
		`endpoint +` + regexp.QuoteMeta(c.URL(2)) + `\n` +
		`watchers +20 opened of 20, in [0-9.]+s\n` +
		`node memory +resident +heap in use +stacks +goroutines +watchers\n` +
		`  before +[0-9.]+ MiB +[0-9.]+ MiB +[0-9.]+ MiB +[0-9]+ +0\n` +
		`  open +[0-9.]+ MiB +[0-9.]+ MiB +[0-9.]+ MiB +[0-9]+ +20\n` +
		`  closed +[0-9.]+ MiB +[0-9.]+ MiB +[0-9.]+ MiB +[0-9]+ +0\n` +
		`per watcher +resident -?[0-9.]+ KiB  heap\+stacks -?[0-9.]+ KiB \(heap -?[0-9.]+ KiB, stacks -?[0-9.]+ KiB\)  goroutines [0-9.]+\n` +
		`events +0\n` +
		`errors +0\n$`)
	if !want.MatchString(stdout) {
		t.Errorf("watch-idle output:\n%s\nwant it to match %s", stdout, want)
	}
	stdout, _ = bench("--workload", "watch-delay", "--watchers", "6", "--rate", "100", "--duration", "500ms", "--warmup", "0s", "--json")
	var wd loadgen.WatchDelayResult
	if err := json.Unmarshal([]byte(stdout), &wd); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	// On a loaded machine the writers may not keep the rate: a write still
	// waiting when the time is up is not sent (writes_unsent). Every one
	// is accounted for, and every one sent reaches every watcher.
	if wd.Opened != 6 || wd.Writes < 1 || wd.Writes+wd.WritesUnsent != 50 || wd.EventsExpected != 6*wd.Writes || wd.EventsReceived != wd.EventsExpected || wd.ErrorsTotal != 0 || wd.Errors == nil {
		t.Errorf("watch-delay: %+v; want 50 writes sent or unsent, each sent one received by the 6 watchers", wd)
	}
}

// raftkv bench against a cluster with ACLs: with --token ($RAFTKV_TOKEN)
// every request carries it, the watch streams and the memory samples
// included; without one, every request is refused and counted as such.
func TestBenchWithToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	const root = "bench-test-root-token-0123456789"
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) {
		cfg.ACL = &raftkv.ACLConfig{BootstrapToken: root}
		cfg.Pprof = true // watch-idle forces a collection through pprof: an admin route
	}})
	addrs := strings.Join([]string{c.URL(0), c.URL(1), c.URL(2)}, ",")
	bench := func(args ...string) loadgen.Result {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append([]string{"bench", "--addr", addrs, "--keys", "20", "--connections", "2", "--warmup", "0s", "--duration", "300ms", "--json"}, args...)
		err := run(context.Background(), args, nil, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != 0 {
			t.Fatalf("raftkv %q: exit %d\n%s", args, code, stderr.String())
		}
		var res loadgen.Result
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("raftkv %q: %v in %q", args, err, stdout.String())
		}
		return res
	}
	if res := bench("--workload", "put", "--token", root); res.Ops == 0 || res.ErrorsTotal != 0 {
		t.Errorf("put with --token: %+v, want ops and no errors", res)
	}
	t.Setenv("RAFTKV_TOKEN", root)
	if res := bench("--workload", "get"); res.Ops == 0 || res.ErrorsTotal != 0 {
		t.Errorf("get with $RAFTKV_TOKEN: %+v, want ops and no errors", res)
	}
	var idle loadgen.WatchIdleResult
	args := []string{"bench", "--addr", c.URL(0), "--workload", "watch-idle", "--watchers", "4", "--json"}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, nil, &stdout, &stderr); err != nil || json.Unmarshal(stdout.Bytes(), &idle) != nil ||
		idle.Opened != 4 || idle.ErrorsTotal != 0 {
		t.Errorf("raftkv %q with $RAFTKV_TOKEN: %+v, %v\n%s", args, idle, err, stderr.String())
	}
	t.Setenv("RAFTKV_TOKEN", "")
	res := bench("--workload", "put")
	if res.Ops != 0 || res.ErrorsTotal == 0 || len(res.Errors) != 1 || res.Errors[0].Kind != "http 401 unauthenticated" {
		t.Errorf("put without a token: %+v, want every request refused with 401", res)
	}
}

// raftkv bench --fsync measures synced writes in a directory, needs no
// cluster, leaves nothing behind, and fails clearly on a directory it
// cannot write.
func TestBenchFsync(t *testing.T) {
	dir := t.TempDir()
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"bench", "--fsync", dir, "--duration", "200ms", "--json", "--addr", ""}, nil, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	var res loadgen.FsyncResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("%v: %q", err, stdout.String())
	}
	if res.Workload != "fsync" || res.Writes < 1 || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 {
		t.Fatalf("implausible result %+v", res)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left %d files in %s", len(left), dir)
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "--fsync", filepath.Join(dir, "missing"), "--duration", "100ms"}, nil, io.Discard, io.Discard)
	if code := exitCode(err, &stderr); code != 1 || !strings.Contains(stderr.String(), "fsync") {
		t.Fatalf("a missing directory: exit %d, stderr %q", code, stderr.String())
	}
}
