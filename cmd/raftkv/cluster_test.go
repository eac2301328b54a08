package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// The CLI against a real three-node cluster, as a user types it.
func TestCLIAgainstCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	addr := "--addr=" + c.URL(c.Follower()) + "," + c.URL(c.Leader())
	cli := func(stdin string, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut); err != nil {
			t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	var put kv.PutResponse
	if err := json.Unmarshal([]byte(cli("", "put", addr, "app/name", "raftkv")), &put); err != nil || put.Version != 1 {
		t.Fatalf("put: %+v %v", put, err)
	}
	cli("from stdin", "put", addr, "app/motd")
	if got := cli("", "get", addr, "app/name"); got != "raftkv" {
		t.Fatalf("get: %q", got)
	}
	if got := cli("", "get", addr, "--consistency", "linearizable", "app/motd"); got != "from stdin" {
		t.Fatalf("get: %q", got)
	}
	if got := cli("", "ls", addr, "app/"); got != "app/motd\tfrom stdin\napp/name\traftkv\n" {
		t.Fatalf("ls: %q", got)
	}
	txn := `{"compare":[{"key":"app/name","target":"value","op":"=","value":"raftkv"}],
		"success":[{"op":"put","key":"app/name","value":"raftkv2"}],"failure":[]}`
	var res kv.TxnResponse
	if err := json.Unmarshal([]byte(cli(txn, "txn", addr)), &res); err != nil || !res.Succeeded {
		t.Fatalf("txn: %+v %v", res, err)
	}
	if got := cli("", "get", addr, "app/name"); got != "raftkv2" {
		t.Fatalf("get after txn: %q", got)
	}
	if got := cli("", "del", addr, "--prefix", "app/"); !strings.Contains(got, `"deleted":2`) {
		t.Fatalf("del --prefix: %q", got)
	}
	if got := cli("", "cluster", addr); !strings.Contains(got, "leader") || strings.Count(got, "voter") != 3 {
		t.Fatalf("cluster: %q", got)
	}
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"get", addr, "app/name"}, strings.NewReader(""), &bytes.Buffer{}, &errOut)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("get of a deleted key: %v", err)
	}
}

// raftkv watch on a follower prints the changes written through the
// leader, in order, and exits 0 on Ctrl-C; --json prints one line per
// index.
func TestCLIWatchOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) { cfg.WatchHistory = 40 }})
	leader, follower := "--addr="+c.URL(c.Leader()), "--addr="+c.URL(c.Follower())
	cli := func(stdin string, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut); err != nil {
			t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	var first kv.PutResponse
	if err := json.Unmarshal([]byte(cli("", "put", leader, "app/a", "1")), &first); err != nil {
		t.Fatal(err)
	}
	cli("", "put", leader, "app/b", "2")
	cli("", "put", leader, "other", "x")
	cli("", "del", leader, "app/a")
	cli("bin\x00", "put", leader, "app/bin")
	cli("", "del", leader, "--prefix", "app/")
	from := "--from-index=" + strconv.FormatUint(first.ModIndex, 10)

	// watch runs until Ctrl-C (ctx canceled), once it printed want.
	watch := func(want func(string) bool, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out, errOut := &syncBuffer{}, &syncBuffer{}
		done := make(chan error, 1)
		go func() { done <- run(ctx, append([]string{"watch", follower, from}, args...), nil, out, errOut) }()
		if err := testkit.Eventually(30*time.Second, func() error {
			if !want(out.String()) {
				return fmt.Errorf("printed %q", out.String())
			}
			return nil
		}); err != nil {
			t.Errorf("raftkv watch %s: %v; stderr %q", strings.Join(args, " "), err, errOut.String())
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("raftkv watch %s after Ctrl-C: %v, want exit 0", strings.Join(args, " "), err)
		}
		return out.String()
	}
	const want = "PUT app/a 1\nPUT app/b 2\nDELETE app/a\nPUT app/bin \"bin\\x00\"\nDELETE app/b\nDELETE app/bin\n"
	if got := watch(func(s string) bool { return len(s) >= len(want) }, "--prefix", "app/"); got != want {
		t.Errorf("raftkv watch --prefix app/ printed\n%s\nwant\n%s", got, want)
	}
	if got := watch(func(s string) bool { return strings.Count(s, "\n") >= 2 }, "--prev", "app/a"); got != "PUT app/a 1\nDELETE app/a (prev 1)\n" {
		t.Errorf("raftkv watch --prev app/a printed %q", got)
	}
	got := watch(func(s string) bool { return strings.Count(s, "\n") >= 5 }, "--json", "--prefix", "app/")
	var types []string
	for line := range strings.Lines(got) {
		var r kv.WatchResponseJSON
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		var ts []string
		for _, e := range r.Events {
			ts = append(ts, string(e.Type)+" "+e.Key)
		}
		types = append(types, strings.Join(ts, ","))
	}
	if w := []string{"put app/a", "put app/b", "delete app/a", "put app/bin", "delete app/b,delete app/bin"}; !slices.Equal(types[:min(5, len(types))], w) {
		t.Errorf("--json printed %q, want the events %q", got, w)
	}

	// Past the 40 indexes of history the nodes keep, a watch from the
	// start fails, and says so.
	for range 50 {
		cli("", "put", leader, "filler", "x")
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"watch", leader, "--from-index", "1", "app/a"}, nil, &bytes.Buffer{}, &stderr)
	if code := exitCode(err, &stderr); code != 1 || !strings.Contains(stderr.String(), "no longer kept") {
		t.Errorf("raftkv watch --from-index 1: exit %d, %q", code, stderr.String())
	}
}
