package raftkv_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// watchLog is what one watcher received: its events as lines, and the
// index of every response, checked to be increasing as they arrive.
type watchLog struct {
	mu       sync.Mutex
	events   []string
	progress []uint64
	last     uint64
	err      error
}

func (l *watchLog) snapshot() ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events), l.err
}

func watchLine(index uint64, e kv.Event) string {
	s := fmt.Sprintf("%d %s %s", index, e.Type, e.Key)
	if e.Type == kv.EventPut {
		s += fmt.Sprintf("=%s c=%d m=%d v=%d", e.Value, e.CreateIndex, e.ModIndex, e.Version)
	}
	if e.Prev != nil {
		s += fmt.Sprintf(" prev=%s", e.Prev.Value)
	}
	return s
}

// startWatch runs n.Watch until ctx ends, recording into the log.
func startWatch(ctx context.Context, t *testing.T, n *raftkv.Node, opts kv.WatchOptions) *watchLog {
	t.Helper()
	l := &watchLog{}
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		for r, err := range n.Watch(ctx, opts) {
			l.mu.Lock()
			switch {
			case err != nil:
				l.err = err
			case r.Index < l.last, r.Index == l.last && !r.IsProgress():
				l.err = fmt.Errorf("index %d after %d", r.Index, l.last)
			case r.IsProgress():
				l.progress = append(l.progress, r.Index)
				l.last = r.Index
			default:
				for _, e := range r.Events {
					l.events = append(l.events, watchLine(r.Index, e))
				}
				l.last = r.Index
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// waitEvents polls until the log holds want (and fails on an error or on
// events that differ).
func waitEvents(t *testing.T, l *watchLog, want []string) {
	t.Helper()
	err := testkit.Eventually(10*time.Second, func() error {
		got, err := l.snapshot()
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("events:\n got %q\nwant %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Watches on every node, opened through the Go API, see every change of
// their keys in index order, whichever node the writes went through; a
// watch from a write's mod_index, opened on any node, delivers that write.
func TestWatchOnEveryNode(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctxb := context.Background()
	var logs, keyLogs []*watchLog
	for i := range 3 {
		logs = append(logs, startWatch(ctx, t, c.Node(i), kv.WatchOptions{Key: []byte("app/"), Prefix: true, PrevValue: true}))
		keyLogs = append(keyLogs, startWatch(ctx, t, c.Node(i), kv.WatchOptions{Key: []byte("app/x")}))
	}
	// The watches start after the applied index; make sure each has begun
	// before writing, with a write every watch must see.
	var want []string
	r0, err := c.Node(0).Put(ctxb, []byte("app/start"), []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	_ = r0
	want = append(want, fmt.Sprintf("%d put app/start=0 c=%d m=%d v=1", r0.ModIndex, r0.ModIndex, r0.ModIndex))

	var keyWant []string
	for i := range 6 {
		n := c.Node(i % 3)
		r, err := n.Put(ctxb, []byte("app/x"), []byte(strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("%d put app/x=%d c=%d m=%d v=%d", r.ModIndex, i, r.CreateIndex, r.ModIndex, r.Version)
		if i > 0 {
			line += fmt.Sprintf(" prev=%d", i-1)
		}
		want = append(want, line)
		keyWant = append(keyWant, fmt.Sprintf("%d put app/x=%d c=%d m=%d v=%d", r.ModIndex, i, r.CreateIndex, r.ModIndex, r.Version))
		if _, err := n.Put(ctxb, []byte("other/y"), []byte("not watched")); err != nil {
			t.Fatal(err)
		}
	}
	d, err := c.Node(1).Delete(ctxb, []byte("app/x"))
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, fmt.Sprintf("%d delete app/x prev=5", d.Index))
	keyWant = append(keyWant, fmt.Sprintf("%d delete app/x", d.Index))
	dp, err := c.Node(2).DeletePrefix(ctxb, []byte("app/"))
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, fmt.Sprintf("%d delete app/start prev=0", dp.Index))
	for i := range 3 {
		waitEvents(t, logs[i], want)
		// A key watch starts wherever the prefix watch started: it may
		// have begun before app/start, so compare from its first event.
		waitEvents(t, keyLogs[i], keyWant)
	}

	// From a write's mod_index, on a follower, the write is delivered.
	r, err := c.Node(c.Leader()).Put(ctxb, []byte("late/k"), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	for r, err := range c.Node(c.Follower()).Watch(ctxb, kv.WatchOptions{Key: []byte("late/k"), FromIndex: r.ModIndex}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Index == 0 || len(r.Events) != 1 || string(r.Events[0].Value) != "v" {
			t.Fatalf("first response %+v, want the put at its mod_index", r)
		}
		break
	}
}

// A watch without events sends progress notifications carrying the
// applied index; MaxWatchers refuses the watch past the limit, and a
// blocking read counts as one; closing the node ends every watch.
func TestWatchProgressLimitsAndClose(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(i int, cfg *raftkv.Config) { cfg.MaxWatchers = 2 }})
	f := c.Follower()
	n := c.Node(f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := startWatch(ctx, t, n, kv.WatchOptions{Key: []byte("quiet"), ProgressInterval: 50 * time.Millisecond})
	if _, err := c.Node(c.Leader()).Put(context.Background(), []byte("noise"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	err := testkit.Eventually(10*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err != nil {
			return l.err
		}
		if len(l.progress) == 0 || l.progress[len(l.progress)-1] < n.AppliedIndex() {
			return fmt.Errorf("progress %v, applied %d", l.progress, n.AppliedIndex())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The second slot: a blocking read on another key, waiting.
	blocked := make(chan error, 1)
	go func() {
		_, err := n.Get(ctx, []byte("quiet"), kv.ReadOptions{WaitIndex: n.AppliedIndex() + 1000, WaitTime: time.Minute})
		blocked <- err
	}()
	// Once it holds its slot (the gauge says so), a third watch is refused.
	err = testkit.Eventually(10*time.Second, func() error {
		select {
		case err := <-blocked:
			t.Fatalf("the blocking read returned: %v", err)
		default:
		}
		_, body := c.Do("GET", c.URL(f)+"/metrics", nil, nil)
		if !strings.Contains(string(body), "\nraftkv_watchers 2\n") {
			return errors.New("raftkv_watchers is not 2 yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range n.Watch(ctx, kv.WatchOptions{Key: []byte("k")}) {
		if !errors.Is(err, kv.ErrTooManyWatchers) {
			t.Fatalf("third watch: %v, want too many watchers", err)
		}
		break
	}

	// Closing the node ends the watch and the blocking read.
	c.Stop(f)
	select {
	case err := <-blocked:
		if !errors.Is(err, kv.ErrClosed) {
			t.Fatalf("blocking read on a closed node: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking read did not end with the node")
	}
	err = testkit.Eventually(10*time.Second, func() error {
		_, err := l.snapshot()
		if !errors.Is(err, kv.ErrClosed) {
			return fmt.Errorf("watch error %v, want closed", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A blocking read returns as soon as its key changes past the index it
// names, and with the current state when its wait runs out.
func TestBlockingRead(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	ctx := context.Background()
	l := c.Node(c.Leader())
	r, err := l.Put(ctx, []byte("cfg"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Node(c.Follower())
	type answer struct {
		rec kv.Record
		err error
	}
	got := make(chan answer, 1)
	go func() {
		rec, err := f.Get(ctx, []byte("cfg"), kv.ReadOptions{WaitIndex: r.ModIndex, WaitTime: time.Minute})
		got <- answer{rec, err}
	}()
	// Writes to other keys do not end it.
	if _, err := l.Put(ctx, []byte("other"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		t.Fatalf("blocking read returned before its key changed: %+v", a)
	default:
	}
	r2, err := l.Put(ctx, []byte("cfg"), []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.err != nil || string(a.rec.Value) != "2" || a.rec.ModIndex != r2.ModIndex {
			t.Fatalf("blocking read: %+v, want value 2 at %d", a, r2.ModIndex)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking read did not return after the change")
	}
	// A prefix listing blocks the same way; a short wait returns the
	// current state.
	start := time.Now()
	res, err := f.List(ctx, kv.ListOptions{Prefix: []byte("cf"), ReadOptions: kv.ReadOptions{WaitIndex: r2.ModIndex, WaitTime: 200 * time.Millisecond}})
	if err != nil || len(res.Items) != 1 || string(res.Items[0].Value) != "2" {
		t.Fatalf("list after wait: %+v, %v", res, err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("a blocking list with no change returned after %s, before its wait", took)
	}
	// An index the key already changed after returns at once.
	rec, err := f.Get(ctx, []byte("cfg"), kv.ReadOptions{WaitIndex: r.ModIndex, WaitTime: time.Minute})
	if err != nil || string(rec.Value) != "2" {
		t.Fatalf("blocking read of an old index: %+v, %v", rec, err)
	}
}

// A node that caught up through a snapshot serves, for the same
// from_index, the same events as the leader that applied every entry; a
// from_index below the history kept is compacted on every node.
func TestWatchHistoryAfterSnapshotInstall(t *testing.T) {
	tuning := testkit.FastTuning
	tuning.SnapshotThreshold = 64
	tuning.SnapshotInterval = 100 * time.Millisecond
	tuning.TrailingLogs = 8
	c := testkit.NewCluster(t, 3, testkit.Options{Tuning: tuning, Configure: func(i int, cfg *raftkv.Config) { cfg.WatchHistory = 250 }})
	ctx := context.Background()
	f := c.Follower()
	c.Stop(f)
	var first uint64
	for i := range 300 {
		r, err := c.Node(c.Leader()).Put(ctx, []byte(fmt.Sprintf("bulk/%d", i%7)), []byte(strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 200 {
			first = r.ModIndex
		}
	}
	l := c.Leader()
	if err := c.Node(l).Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.Restart(f)
	waitValue(t, c, f, "bulk/5", "299")
	stats := raftkv.RaftStats(c.Node(f))
	if idx, _ := strconv.ParseUint(stats["last_snapshot_index"], 10, 64); idx == 0 {
		t.Fatalf("follower reports no installed snapshot: %v", stats)
	}
	through := c.Node(l).AppliedIndex()
	if err := testkit.Eventually(10*time.Second, func() error {
		if a := c.Node(f).AppliedIndex(); a < through {
			return fmt.Errorf("follower at %d, leader at %d", a, through)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	read := func(n *raftkv.Node) []string {
		var out []string
		for r, err := range n.Watch(ctx, kv.WatchOptions{Key: []byte("bulk/"), Prefix: true, FromIndex: first, PrevValue: true, ProgressInterval: 50 * time.Millisecond}) {
			if err != nil {
				t.Fatalf("watch on %s: %v", n.ID(), err)
			}
			for _, e := range r.Events {
				out = append(out, watchLine(r.Index, e))
			}
			if r.Index >= through {
				break
			}
		}
		return out
	}
	want, got := read(c.Node(l)), read(c.Node(f))
	if len(want) < 99 || !slices.Equal(got, want) {
		t.Fatalf("the snapshot-installed follower's history (%d events) differs from the leader's (%d):\n got %q\nwant %q", len(got), len(want), got, want)
	}
	for i := range 3 {
		for _, err := range c.Node(i).Watch(ctx, kv.WatchOptions{Key: []byte("bulk/"), Prefix: true, FromIndex: 2}) {
			var ce *kv.CompactedError
			if !errors.As(err, &ce) || ce.OldestIndex <= 2 || ce.CurrentIndex < ce.OldestIndex {
				t.Fatalf("node %d: watch from 2: %v, want compacted", i, err)
			}
			break
		}
	}
}
