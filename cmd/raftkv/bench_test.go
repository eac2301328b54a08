package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

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
		KeyPrefix: "bench/", Duration: 10 * time.Second, Warmup: time.Second, Timeout: 10 * time.Second}
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
	c := testkit.NewCluster(t, 3, testkit.Options{})
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
}
