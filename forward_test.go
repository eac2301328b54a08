package raftkv_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/forward"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Concurrent writes on a follower reach the leader in shared batches, and
// each client gets its own answer from the follower: its own index, the
// follower's name, its own failed condition.
func TestFollowerWritesTravelInBatches(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	put(t, c, l, "cas", "v0")
	const writers = 64
	var wg sync.WaitGroup
	errs := make([]error, writers)
	indexes := make([]uint64, writers)
	for i := range writers {
		wg.Go(func() {
			url := fmt.Sprintf("%s/v1/kv/batch/%02d", c.URL(f), i)
			hdr := map[string]string(nil)
			if i == 0 {
				url, hdr = c.URL(f)+"/v1/kv/cas", map[string]string{"If-Match": `"1"`} // stale: fails
			}
			resp, body := c.Do(http.MethodPut, url, strings.NewReader(strconv.Itoa(i)), hdr)
			if i == 0 {
				if resp.StatusCode != http.StatusPreconditionFailed || resp.Header.Get("ETag") == "" {
					errs[i] = fmt.Errorf("stale CAS through a follower: %d %s %v", resp.StatusCode, body, resp.Header)
				}
				return
			}
			var pr kv.PutResponse
			if err := json.Unmarshal(body, &pr); err != nil || resp.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("put %d: %d %s", i, resp.StatusCode, body)
				return
			}
			if got := resp.Header.Get("X-Raft-Node"); got != fmt.Sprintf("n%d", f+1) {
				errs[i] = fmt.Errorf("put %d answered by %s, want the follower", i, got)
			}
			if resp.Header.Get("X-Raft-Index") != strconv.FormatUint(pr.ModIndex, 10) || pr.Key != fmt.Sprintf("batch/%02d", i) || pr.Version != 1 {
				errs[i] = fmt.Errorf("put %d: %+v with X-Raft-Index %s", i, pr, resp.Header.Get("X-Raft-Index"))
			}
			indexes[i] = pr.ModIndex
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every write is on the leader, under the index it was answered with.
	for i := 1; i < writers; i++ {
		resp, body := get(t, c, l, fmt.Sprintf("batch/%02d", i), "")
		if resp.StatusCode != http.StatusOK || body != strconv.Itoa(i) || resp.Header.Get("X-Mod-Index") != strconv.FormatUint(indexes[i], 10) {
			t.Fatalf("batch/%02d on the leader: %d %q mod %s, want mod %d", i, resp.StatusCode, body, resp.Header.Get("X-Mod-Index"), indexes[i])
		}
	}
	writes, _ := strconv.Atoi(metricValue(t, c, f, "raftkv_forward_batch_writes_sum"))
	batches, _ := strconv.Atoi(metricValue(t, c, f, "raftkv_forward_batch_writes_count"))
	if writes != writers || batches == 0 || batches >= writers {
		t.Fatalf("%d writes forwarded in %d batches, want %d writes in fewer batches", writes, batches, writers)
	}
}

// POST /v1/internal/apply is the leader's alone, checks what it applies as
// the public API does, and refuses what it cannot decode.
func TestInternalApplyEndpoint(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{MaxValueSize: 1024})
	l, f := c.Leader(), c.Follower()
	batch := func(cmds ...*store.Command) io.Reader {
		return strings.NewReader(string(forward.AppendRequest(nil, cmds, make([]time.Duration, len(cmds)))))
	}
	hdr := map[string]string{"Content-Type": httpapi.ApplyContentType}
	ok := &store.Command{Op: store.OpPut, Key: []byte("internal"), Value: []byte("v")}

	resp, body := c.Do(http.MethodPost, c.URL(f)+httpapi.ApplyPath, batch(ok), hdr)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"no_leader"`) {
		t.Fatalf("batch to a follower: %d %s", resp.StatusCode, body)
	}
	resp, body = c.Do(http.MethodPost, c.URL(l)+httpapi.ApplyPath, strings.NewReader("garbage"), hdr)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"bad_request"`) {
		t.Fatalf("garbage batch: %d %s", resp.StatusCode, body)
	}
	resp, body = c.Do(http.MethodGet, c.URL(l)+httpapi.ApplyPath, nil, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}

	cmds := []*store.Command{
		{Op: store.OpSetNode, Key: []byte("n9"), Value: []byte("127.0.0.1:1")}, // not a client's command
		{Op: store.OpPut, Key: []byte("big"), Value: make([]byte, 1025)},       // over MaxValueSize
		ok,
		{Op: store.OpLeaseGrant, TTL: 100}, // below twice the election timeout
	}
	resp, body = c.Do(http.MethodPost, c.URL(l)+httpapi.ApplyPath, batch(cmds...), hdr)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != httpapi.ApplyContentType {
		t.Fatalf("batch: %d %s", resp.StatusCode, body)
	}
	outs, err := forward.DecodeResponse(body, len(cmds))
	if err != nil {
		t.Fatal(err)
	}
	for i, code := range map[int]string{0: "bad_request", 1: "too_large", 3: "bad_request"} {
		if outs[i].Err == nil || kv.Code(outs[i].Err) != code {
			t.Errorf("command %d: %+v, want %s", i, outs[i], code)
		}
	}
	if outs[2].Err != nil || outs[2].Res == nil || outs[2].Res.Put.Version != 1 {
		t.Fatalf("valid put: %+v", outs[2])
	}
	if r, b := get(t, c, l, "internal", ""); r.StatusCode != http.StatusOK || b != "v" {
		t.Fatalf("applied put: %d %q", r.StatusCode, b)
	}

	// Every op in the store's table: the leader applies a forwarded one
	// exactly when the table says a follower may forward it.
	for op := store.OpNoop; op.Valid(); op++ {
		var cmd *store.Command
		switch op {
		case store.OpNoop:
			cmd = &store.Command{Op: op}
		case store.OpPut:
			cmd = &store.Command{Op: op, Key: []byte("op/put"), Value: []byte("v")}
		case store.OpDelete:
			cmd = &store.Command{Op: op, Key: []byte("op/put")}
		case store.OpDeletePrefix:
			cmd = &store.Command{Op: op, Key: []byte("op/none/")}
		case store.OpSetNode:
			cmd = &store.Command{Op: op, Key: []byte("n9"), Value: []byte("127.0.0.1:1")}
		case store.OpTxn:
			cmd = &store.Command{Op: op, Txn: &kv.Txn{Success: []kv.TxnOp{{Type: kv.TxnGet, Key: []byte("op/put")}}}}
		case store.OpLeaseGrant: // the cluster's first lease: id 1
			cmd = &store.Command{Op: op, TTL: 5000}
		case store.OpLeaseKeepalive:
			cmd = &store.Command{Op: op, Lease: 1}
		case store.OpLeaseRevoke:
			cmd = &store.Command{Op: op, Lease: 1}
		case store.OpLeaseCheckpoint:
			cmd = &store.Command{Op: op, Checkpoints: []store.LeaseCheckpoint{{Lease: 1, Remaining: 1}}}
		case store.OpSetCluster:
			cmd = &store.Command{Op: op, Value: []byte("forwarded")}
		case store.OpACLBootstrap:
			h := kv.SecretHash("forwarded-root")
			cmd = &store.Command{Op: op, Key: h[:], Value: make([]byte, store.MemberSecretSize)}
		case store.OpACLTokenCreate: // the cluster's first token: id 1
			h := kv.SecretHash("forwarded-token")
			cmd = &store.Command{Op: op, Key: h[:], Value: store.EncodeACLToken("", kv.ACLRules{Read: []string{"op/"}})}
		case store.OpACLTokenDelete:
			cmd = &store.Command{Op: op, Token: 1}
		default:
			t.Fatalf("op %s has no forwarding example here: add one", op)
		}
		resp, body := c.Do(http.MethodPost, c.URL(l)+httpapi.ApplyPath, batch(cmd), hdr)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", op, resp.StatusCode, body)
		}
		outs, err := forward.DecodeResponse(body, 1)
		if err != nil {
			t.Fatal(err)
		}
		applied := outs[0].Err == nil && outs[0].Res != nil && outs[0].Res.Err == nil
		if applied != op.Forwardable() || !applied && kv.Code(outs[0].Err) != "bad_request" {
			t.Errorf("%s forwarded: %+v, forwardable %v", op, outs[0], op.Forwardable())
		}
	}
}
