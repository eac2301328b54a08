package concurrency_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/concurrency"
	"github.com/raftkv/raftkv/kv"
)

// A lock guarding writes: the lock's fencing token goes with each write,
// so that a holder that lost the lock (paused past its TTL) cannot write.
func ExampleMutex() {
	c, done := exampleClient()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := concurrency.NewSession(ctx, c, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = s.Close(ctx) }()
	m := concurrency.NewMutex(s, "backup")
	if err := m.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = c.Put(ctx, []byte("backup/last"), []byte("now"), kv.WithFence(m.Name(), m.Token()))
	fmt.Println("fenced write:", err)
	if err := m.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = c.Put(ctx, []byte("backup/last"), []byte("later"), kv.WithFence("backup", m.Token()+1000))
	fmt.Println("write with a token that does not hold the lock refused:", errors.Is(err, kv.ErrPreconditionFailed))
	// Output:
	// fenced write: <nil>
	// write with a token that does not hold the lock refused: true
}

// A leader election: campaign, read the leader, resign.
func ExampleElection() {
	c, done := exampleClient()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := concurrency.NewSession(ctx, c, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = s.Close(ctx) }()
	e := concurrency.NewElection(s, "scheduler")
	if err := e.Campaign(ctx, []byte("host-a")); err != nil {
		log.Fatal(err)
	}
	leader, err := e.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leader %s, ours: %v\n", leader.Value, leader.Token == e.Token())
	if err := e.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = e.Leader(ctx)
	fmt.Println("after resigning:", errors.Is(err, kv.ErrNoElectionLeader))
	// Output:
	// leader host-a, ours: true
	// after resigning: true
}

// A service registration: a key attached to a lease that lives as long as
// the process keeps it alive.
func ExampleKeepAlive() {
	c, done := exampleClient()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	l, err := c.Grant(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("svc/web/10.0.0.5"), []byte("up"), kv.WithLease(l.ID)); err != nil {
		log.Fatal(err)
	}
	k := concurrency.KeepAlive(ctx, c, l.ID, l.TTL)
	ack := <-k.Acks()
	fmt.Println("kept alive, ttl", ack.TTL)
	select {
	case <-k.Done():
		log.Fatal("lease lost: ", k.Err())
	default:
	}
	// Deregister: stop the keepalives and revoke, which deletes the key.
	k.Stop()
	res, err := c.Revoke(ctx, l.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("revoked, keys deleted:", res.Deleted)
	// Output:
	// kept alive, ttl 10s
	// revoked, keys deleted: 1
}

// exampleClient opens a ready single-node cluster in a temporary
// directory and a client of it; done closes both and removes the
// directory.
func exampleClient() (*client.Client, func()) {
	dir, err := os.MkdirTemp("", "raftkv-concurrency-example")
	if err != nil {
		log.Fatal(err)
	}
	node, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: dir, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	c, err := client.New(client.Config{Endpoints: []string{node.HTTPAddr()}})
	if err != nil {
		log.Fatal(err)
	}
	return c, func() {
		c.Close()
		_ = node.Close()
		_ = os.RemoveAll(dir)
	}
}
