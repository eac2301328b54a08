package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

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
