package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// The token calls on a real three-node cluster with ACLs: the root token
// creates a token through a follower, which lists it; the new token works
// on the leader within its rights and is refused beyond them (403) and,
// once revoked, everywhere (401). A client without a token gets 401.
func TestTokensOnRealCluster(t *testing.T) {
	const root = "client-test-root-token-0123"
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) {
		cfg.ACL = &raftkv.ACLConfig{BootstrapToken: root}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	newClient := func(token string, i int) *client.Client {
		t.Helper()
		cl, err := client.New(client.Config{Endpoints: []string{c.URL(i)}, Token: token, RefreshInterval: -1, MaxAttempts: 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	l, f := c.Leader(), c.Follower()
	admin := newClient(root, f)
	if _, err := admin.Put(ctx, []byte("app/config/db"), []byte("db1")); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(ctx, kv.ACLTokenRequest{Description: "app", Rules: kv.ACLRules{Read: []string{"app/"}, Write: []string{"app/tmp/"}}})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := admin.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed bool
	for _, lt := range toks {
		if lt.Secret != "" {
			t.Errorf("token %d listed with its secret", lt.ID)
		}
		listed = listed || lt.ID == tok.ID && lt.Description == "app" && lt.CreateIndex == tok.CreateIndex
	}
	if !listed {
		t.Fatalf("Tokens = %+v, want token %d", toks, tok.ID)
	}

	app := newClient(tok.Secret, l)
	if rec, err := app.Get(ctx, []byte("app/config/db"), kv.ReadOptions{}); err != nil || string(rec.Value) != "db1" {
		t.Fatalf("app: Get = %q, %v", rec.Value, err)
	}
	if _, err := app.Put(ctx, []byte("app/tmp/x"), []byte("1")); err != nil {
		t.Fatalf("app: Put within its write prefix: %v", err)
	}
	_, err = app.Put(ctx, []byte("app/config/db"), []byte("db2"))
	if !errors.Is(err, kv.ErrPermissionDenied) || !strings.Contains(err.Error(), `write on "app/config/db"`) {
		t.Errorf("app: Put beyond its rights = %v, want permission denied naming the right", err)
	}
	if _, err := app.CreateToken(ctx, kv.ACLTokenRequest{Rules: kv.ACLRules{Admin: true}}); !errors.Is(err, kv.ErrPermissionDenied) {
		t.Errorf("app: CreateToken without admin = %v, want permission denied", err)
	}
	if _, err := newClient("", l).Get(ctx, []byte("app/config/db"), kv.ReadOptions{}); !errors.Is(err, kv.ErrUnauthenticated) {
		t.Errorf("no token: Get = %v, want unauthenticated", err)
	}

	if _, err := admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RevokeToken(ctx, tok.ID); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("second RevokeToken = %v, want not found", err)
	}
	for i := range c.Size() {
		cl := newClient(tok.Secret, i)
		if err := testkit.Eventually(5*time.Second, func() error {
			if _, err := cl.Get(ctx, []byte("app/config/db"), kv.ReadOptions{}); !errors.Is(err, kv.ErrUnauthenticated) {
				return fmt.Errorf("node %d: Get with the revoked token = %v, want unauthenticated", i, err)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
}
