package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// Leases, TTL keys, lock and elect through the CLI on a real cluster.
func TestCLILeasesAndLocksOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	addr := "--addr=" + c.URL(c.Follower())
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	id := strings.TrimSpace(cli("lease", "grant", addr, "30s"))
	if _, err := kv.ParseLeaseID(id); err != nil {
		t.Fatalf("lease grant printed %q", id)
	}
	var put kv.PutResponse
	if err := json.Unmarshal([]byte(cli("put", addr, "--lease", id, "svc/a", "up")), &put); err != nil || put.Lease.String() != id {
		t.Fatalf("put --lease: %+v %v", put, err)
	}
	if err := json.Unmarshal([]byte(cli("put", addr, "--ttl", "20s", "svc/b", "up")), &put); err != nil || put.Lease == 0 || put.Lease.String() == id {
		t.Fatalf("put --ttl: %+v %v", put, err)
	}
	if got := cli("lease", "info", addr, id); !strings.Contains(got, "ttl 30s") || !strings.HasSuffix(got, "\nsvc/a\n") {
		t.Errorf("lease info printed %q", got)
	}
	if got := cli("lease", "ls", addr); !strings.Contains(got, "\n"+id+" ") || !strings.Contains(got, "\n"+put.Lease.String()+" ") {
		t.Errorf("lease ls printed %q, want %s and %s", got, id, put.Lease)
	}
	if got := cli("lease", "revoke", addr, id); !strings.Contains(got, `"deleted":1`) {
		t.Errorf("lease revoke printed %q", got)
	}
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"lease", "info", addr, id}, nil, &bytes.Buffer{}, &errOut)
	if code := exitCode(err, &errOut); code != 1 || !strings.Contains(errOut.String(), "not found") {
		t.Errorf("lease info of the revoked lease: exit %d, %q", code, errOut.String())
	}

	// lock runs the command with the token; a later holder gets a larger one.
	first := strings.TrimSpace(cli("lock", addr, "--ttl", "5s", "jobs", "--", "sh", "-c", "echo $RAFTKV_LOCK_TOKEN"))
	second := strings.TrimSpace(cli("lock", addr, "jobs", "sh", "-c", "echo $RAFTKV_LOCK_TOKEN $RAFTKV_LOCK_KEY"))
	t1, err1 := strconv.ParseUint(first, 10, 64)
	tok2, key2, _ := strings.Cut(second, " ")
	t2, err2 := strconv.ParseUint(tok2, 10, 64)
	if err1 != nil || err2 != nil || t2 <= t1 || !strings.HasPrefix(key2, kv.LockPrefix+"jobs/") {
		t.Fatalf("lock printed %q, then %q: want increasing tokens and the key", first, second)
	}
	// The command's status passes through; the lock is released either way.
	err = run(context.Background(), []string{"lock", addr, "jobs", "sh", "-c", "exit 3"}, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if code := exitCode(err, &bytes.Buffer{}); code != 3 {
		t.Errorf("lock of a command that exits 3: exit %d (%v)", code, err)
	}
	// A write fenced with a token of a released lock is refused.
	errOut.Reset()
	err = run(context.Background(), []string{"put", addr, "--lock", "jobs", "--fence-token", first, "jobs/x", "y"}, nil, &bytes.Buffer{}, &errOut)
	if code := exitCode(err, &errOut); code != 1 || !errors.Is(err, kv.ErrPreconditionFailed) {
		t.Errorf("put with a stale token: exit %d, %v", code, err)
	}

	// elect leads until Ctrl-C; elect --observe sees it, then its resignation.
	ectx, ecancel := context.WithCancel(context.Background())
	defer ecancel()
	eout, oout := &syncBuffer{}, &syncBuffer{}
	elected, observed := make(chan error, 1), make(chan error, 1)
	go func() { elected <- run(ectx, []string{"elect", addr, "sched", "host-a"}, nil, eout, &syncBuffer{}) }()
	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	go func() {
		observed <- run(octx, []string{"elect", "--addr=" + c.URL(c.Leader()), "--observe", "sched"}, nil, oout, &syncBuffer{})
	}()
	if err := testkit.Eventually(30*time.Second, func() error {
		if !strings.HasPrefix(eout.String(), "elected sched (token ") || !strings.Contains(oout.String(), "leader host-a (token ") {
			return fmt.Errorf("elect printed %q, elect --observe %q", eout.String(), oout.String())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ecancel()
	if err := <-elected; err != nil {
		t.Errorf("elect after Ctrl-C: %v", err)
	}
	if err := testkit.Eventually(30*time.Second, func() error {
		if !strings.HasSuffix(oout.String(), "no leader\n") {
			return fmt.Errorf("elect --observe printed %q", oout.String())
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	ocancel()
	if err := <-observed; err != nil {
		t.Errorf("elect --observe after Ctrl-C: %v", err)
	}
}
