package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// On a real three-node cluster, a client configured with one node keeps
// writing while that node stops (it learned the others) and while the
// leader stops (it waits out the election); every write it acknowledged
// applied exactly once, in order.
func TestFailoverOnRealCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	only := c.Follower()
	cl, err := client.New(client.Config{Endpoints: []string{c.URL(only)}, AttemptTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Put(ctx, []byte("warm"), []byte("up")); err != nil {
		t.Fatal(err)
	}
	if err := testkit.Eventually(5*time.Second, func() error {
		for i := range c.Size() {
			if !slices.Contains(client.KnownEndpoints(cl), c.URL(i)) {
				return fmt.Errorf("endpoints %q lack %s", client.KnownEndpoints(cl), c.URL(i))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// One writer puts the same key over and over: each acknowledged put
	// must return the next version.
	var (
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		mu       sync.Mutex
		acked    uint64
		problems []string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			res, err := cl.Put(pctx, []byte("w"), fmt.Appendf(nil, "%d", acked+1))
			cancel()
			mu.Lock()
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("put %d: %v", acked+1, err))
			case res.Version != acked+1:
				problems = append(problems, fmt.Sprintf("put %d returned version %d", acked+1, res.Version))
				acked = res.Version
			default:
				acked++
			}
			mu.Unlock()
		}
	}()
	progress := func(what string) {
		t.Helper()
		mu.Lock()
		from := acked
		mu.Unlock()
		if err := testkit.Eventually(30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if acked < from+5 {
				return fmt.Errorf("%d puts acknowledged since %s", acked-from, what)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	progress("the start")
	c.Stop(only) // the one configured endpoint
	progress("the configured node stopped")
	c.Restart(only)
	c.WaitReady()
	l := c.Leader()
	c.Stop(l)
	progress("the leader stopped")
	c.Restart(l)
	c.WaitReady()
	progress("the leader came back")
	close(stop)
	wg.Wait()

	for _, p := range problems {
		t.Error(p)
	}
	rec, err := cl.Get(ctx, []byte("w"), kv.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != acked {
		t.Errorf("key w is at version %d after %d acknowledged puts", rec.Version, acked)
	}
	t.Logf("%d puts acknowledged, each applied once", acked)
}
