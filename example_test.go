package raftkv_test

import (
	"context"
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
