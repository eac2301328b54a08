package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// A client of a one-node cluster (started here in-process; normally the
// nodes are `raftkv serve` processes). One endpoint is enough: the client
// learns the other members, and every write carries an idempotency key, so
// that the client can resend it after a failure without applying it twice.
func ExampleClient_Put() {
	dir, err := os.MkdirTemp("", "raftkv-client-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	node, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: dir, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}

	c, err := client.New(client.Config{Endpoints: []string{node.HTTPAddr()}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The client gives this write a key of its own and resends it, to any
	// node, until ctx ends: it applies at most once.
	res, err := c.Put(ctx, []byte("greeting"), []byte("hello"))
	switch {
	case errors.Is(err, kv.ErrOutcomeUnknown):
		log.Fatal("no answer settled whether the write applied; read the key to find out: ", err)
	case err != nil:
		log.Fatal("not applied: ", err)
	}
	fmt.Printf("greeting: version %d\n", res.Version)

	// A key of the caller's own names the logical write, across calls and
	// restarts of the program: the second call replays the first result.
	first, err := c.Put(ctx, []byte("order/42"), []byte("paid"), kv.Idempotent("order-42-paid"))
	if err != nil {
		log.Fatal(err)
	}
	second, err := c.Put(ctx, []byte("order/42"), []byte("paid"), kv.Idempotent("order-42-paid"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("order/42: version %d, the retry replayed it: %v\n", second.Version, second.ModIndex == first.ModIndex)
	// Output:
	// greeting: version 1
	// order/42: version 1, the retry replayed it: true
}

// A watch of a prefix from an index: every change from there on, one
// response per raft index, resumed on another node if the one it reads
// from goes away. A compacted error means the index is older than the
// history the nodes keep: list the keys instead and watch from the
// listing's Index + 1.
func ExampleClient_Watch() {
	addr, done := openExampleNode() // as in ExampleClient_Put
	defer done()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first, err := c.Put(ctx, []byte("app/a"), []byte("1"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("app/b"), []byte("2")); err != nil {
		log.Fatal(err)
	}
	last, err := c.DeletePrefix(ctx, []byte("app/"))
	if err != nil {
		log.Fatal(err)
	}

	opts := kv.WatchOptions{Key: []byte("app/"), Prefix: true, FromIndex: first.ModIndex}
	for resp, err := range c.Watch(ctx, opts) {
		if errors.Is(err, kv.ErrCompacted) {
			log.Fatal("too old: list app/ and watch from the listing's index + 1: ", err)
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range resp.Events {
			if e.Type == kv.EventPut {
				fmt.Printf("put %s=%s\n", e.Key, e.Value)
			} else {
				fmt.Printf("delete %s\n", e.Key)
			}
		}
		if resp.Index >= last.Index {
			break // closes the stream
		}
	}
	// Output:
	// put app/a=1
	// put app/b=2
	// delete app/a
	// delete app/b
}

// Tokens with rights on key prefixes, in a cluster run with ACLs (raftkv
// serve --acl): the root token, whose secret the founding members were
// given (--acl-bootstrap-token-file), creates a token that may only read
// app/ for an application. The secret is in the answer to the create
// only: the cluster keeps its hash.
func ExampleClient_CreateToken() {
	const rootSecret = "example-root-token-0123456789"
	addr, done := openExampleNodeWith(&raftkv.ACLConfig{BootstrapToken: rootSecret})
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	root, err := client.New(client.Config{Endpoints: []string{addr}, Token: rootSecret})
	if err != nil {
		log.Fatal(err)
	}
	defer root.Close()
	if _, err := root.Put(ctx, []byte("app/greeting"), []byte("hello")); err != nil {
		log.Fatal(err)
	}

	tok, err := root.CreateToken(ctx, kv.ACLTokenRequest{Description: "app reader", Rules: kv.ACLRules{Read: []string{"app/"}}})
	if err != nil {
		log.Fatal(err)
	}
	toks, err := root.Tokens(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range toks {
		if t.ID == tok.ID {
			fmt.Printf("listed: %q, read %q, no secret: %v\n", t.Description, t.Rules.Read, t.Secret == "")
		}
	}

	app, err := client.New(client.Config{Endpoints: []string{addr}, Token: tok.Secret})
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()
	rec, err := app.Get(ctx, []byte("app/greeting"), kv.ReadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("app reads app/greeting: %s\n", rec.Value)
	_, err = app.Put(ctx, []byte("app/greeting"), []byte("hi"))
	fmt.Println("app writes app/greeting: permission denied:", errors.Is(err, kv.ErrPermissionDenied))

	if _, err := root.RevokeToken(ctx, tok.ID); err != nil {
		log.Fatal(err)
	}
	_, err = app.Get(ctx, []byte("app/greeting"), kv.ReadOptions{})
	fmt.Println("after the revoke: unauthenticated:", errors.Is(err, kv.ErrUnauthenticated))
	// Output:
	// listed: "app reader", read ["app/"], no secret: true
	// app reads app/greeting: hello
	// app writes app/greeting: permission denied: true
	// after the revoke: unauthenticated: true
}

// openExampleNode opens a ready single-node cluster in a temporary
// directory, as ExampleClient_Put does, and returns its API address; done
// closes it and removes the directory.
func openExampleNode() (addr string, done func()) { return openExampleNodeWith(nil) }

// openExampleNodeWith is openExampleNode with access control acl (nil:
// none).
func openExampleNodeWith(acl *raftkv.ACLConfig) (addr string, done func()) {
	dir, err := os.MkdirTemp("", "raftkv-client-example")
	if err != nil {
		log.Fatal(err)
	}
	node, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: dir, HTTPAddr: "127.0.0.1:0", ACL: acl})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	return node.HTTPAddr(), func() {
		_ = node.Close()
		_ = os.RemoveAll(dir)
	}
}
