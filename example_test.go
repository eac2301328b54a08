package raftkv_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/kv"
)

// A single-node store embedded in a program: open it in a directory, write
// a key, read it back.
func Example() {
	dir, err := os.MkdirTemp("", "raftkv-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	node, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := node.Put(ctx, []byte("greeting"), []byte("hello")); err != nil {
		log.Fatal(err)
	}
	rec, err := node.Get(ctx, []byte("greeting"), kv.ReadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s (version %d)\n", rec.Key, rec.Value, rec.Version)
	// Output: greeting = hello (version 1)
}

// Writes take options: a compare-and-swap on the mod_index a write
// returned, and an idempotency key that makes a retry answer the first
// result instead of applying again.
func ExampleNode_Put_options() {
	node, done := openExampleNode() // as in the package example
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first, err := node.Put(ctx, []byte("config"), []byte("v1"))
	if err != nil {
		log.Fatal(err)
	}
	// Only if nobody changed it since: the mod_index is the token.
	if _, err := node.Put(ctx, []byte("config"), []byte("v2"), kv.IfModIndex(first.ModIndex)); err != nil {
		log.Fatal(err)
	}
	_, err = node.Put(ctx, []byte("config"), []byte("v3"), kv.IfModIndex(first.ModIndex))
	fmt.Println("stale token:", errors.Is(err, kv.ErrPreconditionFailed))

	// The same logical write sent twice applies once.
	a, _ := node.Put(ctx, []byte("orders/42"), []byte("paid"), kv.Idempotent("order-42-paid"))
	b, _ := node.Put(ctx, []byte("orders/42"), []byte("paid"), kv.Idempotent("order-42-paid"))
	fmt.Println("same answer:", a.ModIndex == b.ModIndex, "version", b.Version)
	// Output:
	// stale token: true
	// same answer: true version 1
}

// openExampleNode opens a ready single-node store in a temporary directory,
// as the package example does; done closes it and removes the directory.
func openExampleNode() (node *raftkv.Node, done func()) {
	dir, err := os.MkdirTemp("", "raftkv-example")
	if err != nil {
		log.Fatal(err)
	}
	node, err = raftkv.Open(raftkv.Config{ID: "n1", DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	return node, func() {
		_ = node.Close()
		_ = os.RemoveAll(dir)
	}
}

// A watch on a prefix: the list-then-watch pattern. List the keys, then
// watch from the listing's index + 1, so nothing is missed or seen twice.
func ExampleNode_Watch() {
	node, done := openExampleNode() // as in the package example
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := node.Put(ctx, []byte("app/color"), []byte("blue")); err != nil {
		log.Fatal(err)
	}
	list, err := node.List(ctx, kv.ListOptions{Prefix: []byte("app/")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("listed", len(list.Items), "key")
	go func() {
		_, _ = node.Put(ctx, []byte("app/color"), []byte("green"))
		_, _ = node.Delete(ctx, []byte("app/color"))
	}()
	seen := 0
	for resp, err := range node.Watch(ctx, kv.WatchOptions{Key: []byte("app/"), Prefix: true, FromIndex: list.Index + 1, PrevValue: true}) {
		if err != nil {
			log.Fatal(err)
		}
		for _, ev := range resp.Events {
			fmt.Printf("%s %s %q (was %q)\n", ev.Type, ev.Key, ev.Value, ev.Prev.Value)
			seen++
		}
		if seen == 2 {
			break
		}
	}
	// Output:
	// listed 1 key
	// put app/color "green" (was "blue")
	// delete app/color "" (was "green")
}
