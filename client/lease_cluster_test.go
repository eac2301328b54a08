package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// Grant, keepalive, info, list and revoke through a follower of a real
// three-node cluster; a key attached to the lease goes with it.
func TestLeasesOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	cl, err := client.New(client.Config{Endpoints: []string{c.URL(c.Follower())}, RefreshInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	l, err := cl.Grant(ctx, 30*time.Second)
	if err != nil || l.ID == 0 || l.TTL != 30*time.Second || l.Index == 0 {
		t.Fatalf("Grant = %+v, %v", l, err)
	}
	put, err := cl.Put(ctx, []byte("svc/a"), []byte("up"), kv.WithLease(l.ID))
	if err != nil || put.Lease != l.ID {
		t.Fatalf("Put with the lease = %+v, %v", put, err)
	}
	if rec, err := cl.Get(ctx, []byte("svc/a"), kv.ReadOptions{}); err != nil || rec.Lease != l.ID {
		t.Fatalf("Get = %+v, %v", rec, err)
	}
	ka, err := cl.KeepAliveOnce(ctx, l.ID)
	if err != nil || ka.ID != l.ID || ka.TTL != 30*time.Second || ka.Index <= l.Index {
		t.Fatalf("KeepAliveOnce = %+v, %v", ka, err)
	}
	info, err := cl.LeaseInfo(ctx, l.ID)
	if err != nil || info.TTL != 30*time.Second || info.Remaining <= 0 || info.Remaining > 30*time.Second ||
		len(info.Keys) != 1 || string(info.Keys[0]) != "svc/a" {
		t.Fatalf("LeaseInfo = %+v, %v", info, err)
	}
	ttlPut, err := cl.Put(ctx, []byte("svc/b"), []byte("up"), kv.WithTTL(20*time.Second))
	if err != nil || ttlPut.Lease == 0 || ttlPut.Lease == l.ID {
		t.Fatalf("Put with a ttl = %+v, %v", ttlPut, err)
	}
	ls, err := cl.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]kv.LeaseID, 0, len(ls))
	for _, x := range ls {
		ids = append(ids, x.ID)
	}
	if !slices.Contains(ids, l.ID) || !slices.Contains(ids, ttlPut.Lease) {
		t.Fatalf("Leases = %+v, want %s and %s", ls, l.ID, ttlPut.Lease)
	}
	rr, err := cl.Revoke(ctx, l.ID)
	if err != nil || rr.ID != l.ID || rr.Deleted != 1 {
		t.Fatalf("Revoke = %+v, %v", rr, err)
	}
	if _, err := cl.Get(ctx, []byte("svc/a"), kv.ReadOptions{}); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("the revoked lease's key: %v, want not found", err)
	}
	for name, call := range map[string]func() error{
		"keepalive": func() error { _, err := cl.KeepAliveOnce(ctx, l.ID); return err },
		"info":      func() error { _, err := cl.LeaseInfo(ctx, l.ID); return err },
		"revoke":    func() error { _, err := cl.Revoke(ctx, l.ID); return err },
		"put":       func() error { _, err := cl.Put(ctx, []byte("k"), nil, kv.WithLease(l.ID)); return err },
	} {
		if err := call(); !errors.Is(err, kv.ErrLeaseNotFound) {
			t.Errorf("%s of the revoked lease: %v, want kv.ErrLeaseNotFound", name, err)
		}
	}
	if _, err := cl.Grant(ctx, time.Millisecond*100); !errors.Is(err, kv.ErrBadRequest) {
		t.Errorf("Grant below the minimum TTL: %v, want kv.ErrBadRequest", err)
	}
}
