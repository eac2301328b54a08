package raftkv_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv"
)

// Every raftkv_ metric a node serves on /metrics is in the metrics table
// of docs/http-api.md with its type, and every metric the table lists is
// served; all of them come from the registry the node was given.
func TestMetricsMatchDocs(t *testing.T) {
	reg := prometheus.NewRegistry()
	node, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + node.HTTPAddr() + "/metrics") // counted by the next scrape
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + node.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}

	served := map[string]string{} // name -> type
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (raftkv_\w+) (\w+)$`).FindAllStringSubmatch(string(body), -1) {
		served[m[1]] = m[2]
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	inReg := map[string]bool{}
	for _, f := range fams {
		inReg[f.GetName()] = true
	}

	documented := docMetrics(t)
	if len(documented) == 0 {
		t.Fatal("no raftkv_ metric rows found in docs/http-api.md: has its layout changed?")
	}
	for name, typ := range served {
		if !inReg[name] {
			t.Errorf("%s is served but not from the node's registry", name)
		}
		switch doc, ok := documented[name]; {
		case !ok:
			t.Errorf("%s (%s) is served but not in docs/http-api.md", name, typ)
		case doc != typ:
			t.Errorf("%s is a %s, docs/http-api.md says %s", name, typ, doc)
		}
	}
	for name := range documented {
		if _, ok := served[name]; !ok {
			t.Errorf("docs/http-api.md lists %s, which /metrics does not serve", name)
		}
	}
}

// docMetrics reads the rows "| `raftkv_...` | type | ..." of docs/http-api.md.
func docMetrics(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("docs/http-api.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `(raftkv_\\w+)` \\| (\\w+) \\|")
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			out[m[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
