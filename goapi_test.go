package raftkv_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// store is the method set the embedded Node and the remote client share.
type kvAPI interface {
	Put(ctx context.Context, key, value []byte, opts ...kv.WriteOption) (kv.PutResult, error)
	Get(ctx context.Context, key []byte, opts kv.ReadOptions) (kv.Record, error)
	Delete(ctx context.Context, key []byte, opts ...kv.WriteOption) (kv.DeleteResult, error)
	DeletePrefix(ctx context.Context, prefix []byte, opts ...kv.WriteOption) (kv.DeleteResult, error)
	Txn(ctx context.Context, t kv.Txn, opts ...kv.WriteOption) (kv.TxnResult, error)
	List(ctx context.Context, opts kv.ListOptions) (kv.ListResult, error)
	Cluster(ctx context.Context) (kv.ClusterInfo, error)
}

// The same scenario through every way a program talks to the store: the
// Node embedded on the leader and on a follower, and the remote client.
func TestGoAPI(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	cl, err := client.New(client.Config{Endpoints: []string{c.URL(f), c.URL(l)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	apis := []struct {
		name string
		api  kvAPI
	}{
		{"leader node", c.Node(l)},
		{"follower node", c.Node(f)},
		{"client", cl},
	}
	for _, a := range apis {
		t.Run(a.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			p := "api/" + a.name + "/"
			k := []byte(p + "k")
			r1, err := a.api.Put(ctx, k, []byte("v1"))
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			// Compare-and-swap: the stale token loses, the current one wins.
			r2, err := a.api.Put(ctx, k, []byte("v2"), kv.IfModIndex(r1.ModIndex))
			if err != nil || r2.Version != 2 {
				t.Fatalf("cas with current token: %+v %v", r2, err)
			}
			_, err = a.api.Put(ctx, k, []byte("v3"), kv.IfModIndex(r1.ModIndex))
			if !errors.Is(err, kv.ErrPreconditionFailed) {
				t.Fatalf("cas with stale token: %v, want precondition failed", err)
			}
			if _, err := a.api.Put(ctx, k, []byte("v3"), kv.IfAbsent()); !errors.Is(err, kv.ErrPreconditionFailed) {
				t.Fatalf("create-only on existing key: %v", err)
			}
			rec, err := a.api.Get(ctx, k, kv.ReadOptions{})
			if err != nil || string(rec.Value) != "v2" || rec.ModIndex != r2.ModIndex || rec.CreateIndex != r1.CreateIndex {
				t.Fatalf("get: %+v %v", rec, err)
			}
			for i := range 5 {
				if _, err := a.api.Put(ctx, []byte(p+"list/"+strconv.Itoa(i)), []byte{byte(i), 0xff}); err != nil {
					t.Fatal(err)
				}
			}
			page, err := a.api.List(ctx, kv.ListOptions{Prefix: []byte(p + "list/"), Limit: 3})
			if err != nil || len(page.Items) != 3 || !page.More || string(page.Next) != p+"list/2" {
				t.Fatalf("list page 1: %+v %v", page, err)
			}
			page, err = a.api.List(ctx, kv.ListOptions{Prefix: []byte(p + "list/"), After: page.Next, Limit: 3})
			if err != nil || len(page.Items) != 2 || page.More || page.Items[1].Value[0] != 4 || page.Items[1].Value[1] != 0xff {
				t.Fatalf("list page 2: %+v %v", page, err)
			}
			d, err := a.api.DeletePrefix(ctx, []byte(p+"list/"))
			if err != nil || d.Deleted != 5 {
				t.Fatalf("delete prefix: %+v %v", d, err)
			}
			if _, err := a.api.Delete(ctx, k, kv.IfModIndex(r1.ModIndex)); !errors.Is(err, kv.ErrPreconditionFailed) {
				t.Fatalf("conditional delete with stale token: %v", err)
			}
			d, err = a.api.Delete(ctx, k)
			if err != nil || d.Deleted != 1 || d.Index <= r2.ModIndex {
				t.Fatalf("delete: %+v %v", d, err)
			}
			if _, err := a.api.Get(ctx, k, kv.ReadOptions{}); !errors.Is(err, kv.ErrNotFound) {
				t.Fatalf("get after delete: %v, want not found", err)
			}
			// Write options: an idempotency key makes a retry answer the
			// first result; a condition on a multi-key write is refused.
			i1, err := a.api.Put(ctx, k, []byte("once"), kv.Idempotent(p+"idem"))
			if err != nil {
				t.Fatalf("idempotent put: %v", err)
			}
			i2, err := a.api.Put(ctx, k, []byte("once"), kv.Idempotent(p+"idem"))
			if err != nil || i2.ModIndex != i1.ModIndex || i2.Version != 1 {
				t.Fatalf("idempotent retry: %+v %v, first %+v", i2, err, i1)
			}
			if _, err := a.api.Put(ctx, k, []byte("other"), kv.Idempotent(p+"idem")); !errors.Is(err, kv.ErrIdempotencyKeyReused) {
				t.Fatalf("reused idempotency key: %v", err)
			}
			if _, err := a.api.DeletePrefix(ctx, []byte(p), kv.IfAbsent()); !errors.Is(err, kv.ErrBadRequest) {
				t.Fatalf("conditional prefix delete: %v, want bad request", err)
			}
			if _, err := a.api.Txn(ctx, kv.Txn{}, kv.IfModIndex(1)); !errors.Is(err, kv.ErrBadRequest) {
				t.Fatalf("conditional txn: %v, want bad request", err)
			}
			info, err := a.api.Cluster(ctx)
			if err != nil || len(info.Nodes) != 3 || info.LeaderID == "" {
				t.Fatalf("cluster: %+v %v", info, err)
			}
			for _, n := range info.Nodes {
				if n.APIAddr == "" || n.Suffrage != "voter" {
					t.Errorf("cluster node %+v lacks its API address or is not a voter", n)
				}
			}
		})
	}
}
