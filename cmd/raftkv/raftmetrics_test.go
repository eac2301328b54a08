package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	metrics "github.com/armon/go-metrics"

	"github.com/raftkv/raftkv/internal/testkit"
)

// serve --raft-metrics puts hashicorp/raft's own measurements on /metrics
// (as summaries: _count, _sum and quantiles), and they move with writes;
// without the flag they are not there.
func TestServeRaftMetrics(t *testing.T) {
	t.Cleanup(func() { _, _ = metrics.NewGlobal(metrics.DefaultConfig(""), &metrics.BlackholeSink{}) })
	plain := serveNode(t, "p1")
	n := serveNode(t, "n1", "--raft-metrics")

	scrape := func(addr string) map[string]float64 {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			name, v, ok := strings.Cut(sc.Text(), " ")
			if !ok || strings.HasPrefix(name, "#") {
				continue
			}
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out[name] = f
			}
		}
		return out
	}
	put := func(addr, key string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/kv/"+key, bytes.NewReader([]byte("v")))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("put %s on %s: %d", key, addr, resp.StatusCode)
		}
	}
	// raft records an entry's timings around its answer: poll for them.
	put(n.http, "raft-metrics/1")
	want := []string{"raft_commitTime_count", "raft_boltdb_storeLogs_count", "raft_fsm_applyBatch_count"}
	if err := testkit.Eventually(30*time.Second, func() error {
		m := scrape(n.http)
		for _, name := range want {
			if m[name] < 1 {
				return fmt.Errorf("%s is %v", name, m[name])
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("after a put, with --raft-metrics: %v", err)
	}
	before := scrape(n.http)["raft_commitTime_count"]
	put(n.http, "raft-metrics/more")
	if after := scrape(n.http)["raft_commitTime_count"]; after <= before {
		t.Errorf("raft_commitTime_count %v after a put, %v before", after, before)
	}

	put(plain.http, "plain")
	for name := range scrape(plain.http) {
		if strings.HasPrefix(name, "raft_") {
			t.Errorf("%s on /metrics without --raft-metrics", name)
		}
	}
}
