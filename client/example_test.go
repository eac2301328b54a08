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
