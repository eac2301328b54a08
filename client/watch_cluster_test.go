package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// event is one delivered or expected event, as a line to compare.
func event(index uint64, e kv.Event) string {
	if e.Type == kv.EventDelete {
		return fmt.Sprintf("%d delete %s", index, e.Key)
	}
	return fmt.Sprintf("%d put %s=%s v%d", index, e.Key, e.Value, e.Version)
}

// watchers reads node i's raftkv_watchers gauge: the watches and blocking
// reads it serves.
func watchers(c *testkit.Cluster, i int) (int, error) {
	_, body := c.Do(http.MethodGet, c.URL(i)+"/metrics", nil, nil)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, "raftkv_watchers "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(n), err
		}
	}
	return 0, errors.New("no raftkv_watchers in /metrics")
}

// newClusterClient is a client of the cluster whose first endpoint is
// node first (the one its calls start at), with the others after it.
func newClusterClient(t *testing.T, c *testkit.Cluster, first int) *client.Client {
	t.Helper()
	eps := []string{c.URL(first)}
	for i := range c.Size() {
		if i != first {
			eps = append(eps, c.URL(i))
		}
	}
	cl, err := client.New(client.Config{Endpoints: eps, AttemptTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// A prefix watch on a follower receives, in order, every change under the
// prefix written through the leader: puts, deletes, a transaction's
// writes, a prefix delete's deletes; nothing else.
func TestWatchOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	f := c.Follower()
	watcher, writer := newClusterClient(t, c, f), newClusterClient(t, c, c.Leader())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var want []string
	put := func(k, v string) uint64 {
		t.Helper()
		res, err := writer.Put(ctx, []byte(k), []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(k, "app/") {
			want = append(want, event(res.ModIndex, kv.Event{Type: kv.EventPut, Record: kv.Record{Key: res.Key, Value: []byte(v), Version: res.Version}}))
		}
		return res.ModIndex
	}
	from := put("app/a", "1")
	put("app/b", "1")
	put("other/x", "1")
	put("app/a", "2")
	res, err := writer.Delete(ctx, []byte("app/b"))
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, event(res.Index, kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: []byte("app/b")}}))
	tr, err := writer.Txn(ctx, kv.Txn{Success: []kv.TxnOp{
		{Type: kv.TxnPut, Key: []byte("app/c"), Value: []byte("t")},
		{Type: kv.TxnPut, Key: []byte("other/y"), Value: []byte("t")},
		{Type: kv.TxnDelete, Key: []byte("app/a")},
	}})
	if err != nil || !tr.Succeeded {
		t.Fatalf("txn: %+v, %v", tr, err)
	}
	want = append(want,
		event(tr.Index, kv.Event{Type: kv.EventPut, Record: kv.Record{Key: []byte("app/c"), Value: []byte("t"), Version: 1}}),
		event(tr.Index, kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: []byte("app/a")}}))
	put("app/d", "1")
	put("app/e", "1")
	dp, err := writer.DeletePrefix(ctx, []byte("app/"))
	if err != nil || dp.Deleted != 3 {
		t.Fatalf("delete prefix: %+v, %v", dp, err)
	}
	for _, k := range []string{"app/c", "app/d", "app/e"} { // in key order
		want = append(want, event(dp.Index, kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: []byte(k)}}))
	}

	var got []string
	for resp, err := range watcher.Watch(ctx, kv.WatchOptions{Key: []byte("app/"), Prefix: true, FromIndex: from}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Events {
			if e.ModIndex != resp.Index {
				t.Errorf("index %d: event %+v has mod_index %d", resp.Index, e, e.ModIndex)
			}
			got = append(got, event(resp.Index, e))
		}
		if resp.Index >= dp.Index {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("watch delivered\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A watch whose node stops resumes on another node: it delivers every
// write under its prefix exactly once, in order, with no gap, while a
// writer keeps writing through the leader, across the stop and the
// restart of the node it read from, twice.
func TestWatchResumesOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	f := c.Follower()
	watcher, writer := newClusterClient(t, c, f), newClusterClient(t, c, c.Leader())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first, err := writer.Put(ctx, []byte("w/0"), []byte("0"))
	if err != nil {
		t.Fatal(err)
	}

	// The watcher: every response, in order.
	var (
		mu        sync.Mutex
		delivered []kv.WatchResponse
		werr      error
	)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for resp, err := range watcher.Watch(wctx, kv.WatchOptions{Key: []byte("w/"), Prefix: true, FromIndex: first.ModIndex}) {
			mu.Lock()
			if err != nil {
				werr = err
			} else {
				delivered = append(delivered, resp)
			}
			mu.Unlock()
		}
	}()
	// The writer: unique keys, so that each event names its write.
	var (
		wmu      sync.Mutex
		acked    = map[string]uint64{"w/0": first.ModIndex} // key -> mod_index
		unknown  []string
		lastAck  uint64
		stopW    = make(chan struct{})
		writerWG sync.WaitGroup
	)
	writerWG.Add(1)
	go func() {
		defer writerWG.Done()
		for i := 1; ; i++ {
			select {
			case <-stopW:
				return
			default:
			}
			k := fmt.Sprintf("w/%d", i)
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			res, err := writer.Put(pctx, []byte(k), []byte(k))
			pcancel()
			wmu.Lock()
			if err != nil {
				unknown = append(unknown, k)
			} else {
				acked[k], lastAck = res.ModIndex, res.ModIndex
			}
			wmu.Unlock()
		}
	}()
	deliveredPast := func(what string, n int) {
		t.Helper()
		wmu.Lock()
		target := lastAck + uint64(n)
		wmu.Unlock()
		if err := testkit.Eventually(30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if werr != nil {
				return fmt.Errorf("the watch ended: %w", werr)
			}
			if len(delivered) == 0 || delivered[len(delivered)-1].Index < target {
				return fmt.Errorf("watch not past index %d %s", target, what)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	servedBy := func(want ...int) (at int) {
		t.Helper()
		counts := map[int]int{}
		for i := range c.Size() {
			if c.Node(i) == nil {
				continue
			}
			n, err := watchers(c, i)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				counts[i] = n
			}
		}
		if len(counts) != 1 {
			t.Fatalf("watches per node %v; want the one watch on one of %v", counts, want)
		}
		for i, n := range counts {
			if n != 1 || !slices.Contains(want, i) {
				t.Fatalf("watches per node %v; want the one watch on one of %v", counts, want)
			}
			at = i
		}
		return at
	}
	deliveredPast("at the start", 10)
	servedBy(f)
	c.Stop(f) // the watch's node
	deliveredPast("after its node stopped", 10)
	var others []int
	for i := range c.Size() {
		if i != f {
			others = append(others, i)
		}
	}
	g := servedBy(others...)
	c.Restart(f)
	c.WaitReady()
	deliveredPast("after the node came back", 10)
	// Again, from the node it moved to (the leader, maybe).
	c.Stop(g)
	deliveredPast("after its second node stopped", 10)
	c.Restart(g)
	c.WaitReady()
	deliveredPast("after the second node came back", 10)
	close(stopW)
	writerWG.Wait()
	deliveredPast("after the last write", 0)
	stopWatch()
	<-watchDone

	// Every event once, in index order; every acknowledged write among
	// them at its index; nothing else but writes whose outcome the writer
	// did not learn; and the store agrees (a key listed is a key seen).
	mu.Lock()
	defer mu.Unlock()
	if werr != nil && !errors.Is(werr, context.Canceled) {
		t.Errorf("the watch ended with %v", werr)
	}
	seen := map[string]uint64{}
	var prev uint64
	for _, r := range delivered {
		if r.Index < prev || (!r.IsProgress() && r.Index == prev) {
			t.Errorf("index %d delivered after %d", r.Index, prev)
		}
		prev = r.Index
		for _, e := range r.Events {
			k := string(e.Key)
			if _, dup := seen[k]; dup {
				t.Errorf("%s delivered twice", k)
			}
			seen[k] = r.Index
		}
	}
	for k, idx := range acked {
		if seen[k] != idx {
			t.Errorf("acknowledged write %s at %d: delivered at %d", k, idx, seen[k])
		}
	}
	for k := range seen {
		if _, ok := acked[k]; !ok && !slices.Contains(unknown, k) {
			t.Errorf("%s delivered, never written", k)
		}
	}
	list, err := writer.List(ctx, kv.ListOptions{Prefix: []byte("w/"), Limit: kv.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range list.Items {
		if seen[string(rec.Key)] != rec.ModIndex {
			t.Errorf("%s is in the store at %d, delivered at %d", rec.Key, rec.ModIndex, seen[string(rec.Key)])
		}
	}
	if len(list.Items) != len(seen) {
		t.Errorf("%d keys in the store, %d delivered", len(list.Items), len(seen))
	}
	t.Logf("%d writes delivered across two stops and restarts (%d with an unknown outcome)", len(seen), len(unknown))
}

// Breaking out of a watch's loop leaves no goroutine behind, in the
// client or in the node that served it.
func TestWatchBreakOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	f := c.Follower()
	cl := newClusterClient(t, c, f)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := cl.Put(ctx, []byte("b/k"), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if err := testkit.Eventually(10*time.Second, func() error { // the refresh of the members is done
		if n := len(client.KnownEndpoints(cl)); n != 3 {
			return fmt.Errorf("%d endpoints", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	for range 10 {
		for resp, err := range cl.Watch(ctx, kv.WatchOptions{Key: []byte("b/k"), FromIndex: res.ModIndex}) {
			if err != nil || resp.Index != res.ModIndex {
				t.Fatalf("watch: %+v, %v", resp, err)
			}
			break
		}
	}
	if err := testkit.Eventually(20*time.Second, func() error {
		if n, err := watchers(c, f); err != nil || n != 0 {
			return fmt.Errorf("node %d serves %d watches (%v)", f, n, err)
		}
		if n := runtime.NumGoroutine(); n > base {
			return fmt.Errorf("%d goroutines, %d before the watches", n, base)
		}
		return nil
	}); err != nil {
		buf := make([]byte, 1<<20)
		t.Errorf("%v\n%s", err, buf[:runtime.Stack(buf, true)])
	}
}

// A blocking Get answers when the key changes, with the new record; with
// no change it answers when its wait runs out, with the record unchanged.
// A blocking List answers when a key under the prefix changes.
func TestBlockingReadOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	f := c.Follower()
	reader, writer := newClusterClient(t, c, f), newClusterClient(t, c, c.Leader())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v1, err := writer.Put(ctx, []byte("cfg/a"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}

	const wait = 300 * time.Millisecond
	start := time.Now()
	rec, err := reader.Get(ctx, []byte("cfg/a"), kv.ReadOptions{WaitIndex: v1.ModIndex, WaitTime: wait})
	if err != nil || rec.Version != 1 {
		t.Fatalf("blocking Get without a change: %+v, %v", rec, err)
	}
	if took := time.Since(start); took < wait/2 {
		t.Errorf("blocking Get without a change answered after %s, before its wait (%s) ran out", took, wait)
	}

	type result struct {
		rec  kv.Record
		list kv.ListResult
		err  error
	}
	got := make(chan result, 2)
	go func() {
		r, err := reader.Get(ctx, []byte("cfg/a"), kv.ReadOptions{WaitIndex: v1.ModIndex, WaitTime: time.Minute})
		got <- result{rec: r, err: err}
	}()
	list, err := reader.List(ctx, kv.ListOptions{Prefix: []byte("cfg/")})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		l, err := reader.List(ctx, kv.ListOptions{Prefix: []byte("cfg/"), ReadOptions: kv.ReadOptions{WaitIndex: list.Index, WaitTime: time.Minute}})
		got <- result{list: l, err: err}
	}()
	// Both wait on the follower: the write comes after they started.
	if err := testkit.Eventually(30*time.Second, func() error {
		if n, err := watchers(c, f); err != nil || n != 2 {
			return fmt.Errorf("node %d serves %d blocking reads (%v), want 2", f, n, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	v2, err := writer.Put(ctx, []byte("cfg/a"), []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-got
		switch {
		case r.err != nil:
			t.Errorf("blocking read: %v", r.err)
		case r.list.Index == 0 && (r.rec.Version != 2 || r.rec.ModIndex != v2.ModIndex):
			t.Errorf("blocking Get answered %+v, want version 2 at %d", r.rec, v2.ModIndex)
		case r.list.Index != 0 && (len(r.list.Items) != 1 || r.list.Items[0].Version != 2):
			t.Errorf("blocking List answered %+v, want cfg/a at version 2", r.list)
		}
	}
}

// A watch from an index older than the history the nodes keep fails with a
// *kv.CompactedError that says which indexes they keep.
func TestWatchCompactedOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) { cfg.WatchHistory = 10 }})
	cl := newClusterClient(t, c, c.Follower())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var last kv.PutResult
	for i := range 30 {
		var err error
		if last, err = cl.Put(ctx, []byte("k"), fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil { // the follower applied them all
		t.Fatal(err)
	}
	var got []kv.WatchResponse
	var werr error
	for resp, err := range cl.Watch(ctx, kv.WatchOptions{Key: []byte("k"), FromIndex: 1}) {
		if err != nil {
			werr = err
			continue // the sequence ends after an error
		}
		got = append(got, resp)
	}
	var ce *kv.CompactedError
	if !errors.As(werr, &ce) || !errors.Is(werr, kv.ErrCompacted) {
		t.Fatalf("watch from 1: %v (%T) after %d responses, want a *kv.CompactedError", werr, werr, len(got))
	}
	if len(got) != 0 || ce.FromIndex != 1 || ce.OldestIndex <= 1 || ce.OldestIndex > last.ModIndex || ce.CurrentIndex < last.ModIndex {
		t.Errorf("%d responses, then %+v; want none, then the history kept, ending at or after %d", len(got), ce, last.ModIndex)
	}
	// From the oldest index kept, the watch works.
	for resp, err := range cl.Watch(ctx, kv.WatchOptions{Key: []byte("k"), FromIndex: ce.OldestIndex}) {
		if err != nil {
			t.Fatalf("watch from %d: %v", ce.OldestIndex, err)
		}
		if resp.Index >= last.ModIndex {
			break
		}
	}
}

// A client that only watches keeps its member list fresh: a member that
// joins while the stream runs is learned, at RefreshInterval, with no
// other call, so the watch can resume on it even once every member the
// client knew before is gone (the members turned over while it watched).
func TestWatchLearnsMembersWhileStreaming(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	cl, err := client.New(client.Config{Endpoints: []string{c.URL(0)}, AttemptTimeout: 2 * time.Second, RefreshInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	writer := newClusterClient(t, c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	// The stream stays busy (a write every 20 ms), so it is never lost and
	// never reopened: only the stream itself can have the client refresh.
	wg.Go(func() {
		for i := 0; wctx.Err() == nil; i++ {
			_, _ = writer.Put(wctx, []byte("m/k"), []byte(strconv.Itoa(i)))
			if sleepCtx(wctx, 20*time.Millisecond) != nil {
				return
			}
		}
	})
	events := 0
	var watchErr error
	wg.Go(func() {
		for _, err := range cl.Watch(wctx, kv.WatchOptions{Key: []byte("m/"), Prefix: true}) {
			if err != nil {
				watchErr = err
				return
			}
			events++
		}
	})
	if err := testkit.Eventually(10*time.Second, func() error { // the first refresh, when the watch opened
		if n := len(client.KnownEndpoints(cl)); n != 3 {
			return fmt.Errorf("%d endpoints: %v", n, client.KnownEndpoints(cl))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	added := c.AddNode()
	if err := testkit.Eventually(20*time.Second, func() error {
		if eps := client.KnownEndpoints(cl); !slices.Contains(eps, c.URL(added)) {
			return fmt.Errorf("the watching client knows %v, not the new member %s", eps, c.URL(added))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop()
	wg.Wait()
	if watchErr != nil && !errors.Is(watchErr, context.Canceled) {
		t.Fatalf("watch: %v", watchErr)
	}
	if events == 0 {
		t.Fatal("the watch delivered nothing")
	}
}

// sleepCtx waits d or until ctx ends (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C: // the pause between two writes
		return nil
	}
}
