package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// TestDelayBooks drives the watch-delay bookkeeping by hand: every kind of
// event a watcher can receive, and the tally.
func TestDelayBooks(t *testing.T) {
	const total, warm = 10, 2
	b := newDelayBook(total, warm, []byte("p/"))
	at := func(ms int) time.Time { return b.base.Add(time.Duration(ms) * time.Millisecond) }
	ns := func(ms int) int64 { return int64(time.Duration(ms) * time.Millisecond) }
	ev := func(s int, mod uint64) watchEvent {
		return watchEvent{Put: true, Key: appendKey([]byte("p/"), s), ModIndex: mod}
	}
	// Writes 2-7 are answered (write s at s*10 ms, index 100+s); 8 and 9
	// never are; 0 and 1 are warm-up.
	for s := 0; s < 8; s++ {
		if s == 5 {
			continue // answered late, below
		}
		b.ack(s, at(10*s), uint64(100+s))
	}
	w1, w2 := newWatcherBook(total), newWatcherBook(total)
	w1.record(b, ev(0, 100), ns(5))                                            // warm-up: not counted
	w1.record(b, ev(2, 102), ns(23))                                           // 3 ms
	w1.record(b, ev(3, 103), ns(29))                                           // before its answer (30): 0, early
	w1.record(b, ev(4, 104), ns(47))                                           // 7 ms
	w1.record(b, ev(4, 104), ns(48))                                           // duplicate
	w1.record(b, ev(5, 105), ns(49))                                           // not answered yet: pending
	w1.record(b, ev(6, 999), ns(61))                                           // mod_index other than the answer's
	w1.record(b, ev(8, 108), ns(90))                                           // of a write never answered
	w1.record(b, watchEvent{Key: []byte("p/00000007"), ModIndex: 107}, ns(71)) // a delete: not ours
	for _, key := range []string{"q/00000007", "p/7", "p/0000000x", "p/00000010", "p/"} {
		w1.record(b, watchEvent{Put: true, Key: []byte(key), ModIndex: 1}, ns(1)) // other keys
	}
	// w2 receives only write 7, 100 ms after its answer; 2-6 are missing.
	w2.record(b, ev(7, 107), ns(170))
	b.ack(5, at(50), 105)

	if got := b.newestAck(); got != 107 {
		t.Errorf("newest acknowledged index = %d, want 107", got)
	}
	r := &WatchDelayResult{Writes: 6, Watchers: 2, Opened: 2}
	b.tally(r, []*watcherBook{w1, w2})
	want := WatchDelayResult{Writes: 6, Watchers: 2, Opened: 2,
		EventsExpected: 12, EventsReceived: 6, EventsMissing: 6, EventsEarly: 2, EventsDuplicate: 1,
		EventsMismatched: 1, EventsUnacknowledged: 1, EventsForeign: 6}
	got := *r
	got.Delay = LatencyMS{}
	if !equalJSON(got, want) {
		t.Errorf("tally = %+v,\nwant %+v", got, want)
	}
	// Delays: w1 3, 0, 7, 0 (pending), 1 (mismatched, still a delay) ms;
	// w2 100 ms. Quantiles are within 0.8% above the true value.
	if d := r.Delay; d.P50 < 1 || d.P50 > 1.008 || d.Max != 100 || d.Mean != 111.0/6 {
		t.Errorf("delay = %+v, want p50 1 ms, max 100 ms, mean 18.5 ms", d)
	}
	if err := r.Check(); !errors.Is(err, ErrWatchIncomplete) || !strings.Contains(err.Error(), "6 events missing, 1 duplicated, 1 with a mod_index") {
		t.Errorf("Check = %v", err)
	}
	if err := (&WatchDelayResult{Watchers: 3, Opened: 3, EventsExpected: 3, EventsReceived: 3, EventsEarly: 1, EventsForeign: 2}).Check(); err != nil {
		t.Errorf("Check of a complete run = %v", err)
	}
	for _, r := range []WatchDelayResult{{Watchers: 3, Opened: 2}, {Watchers: 1, Opened: 1, WatchersEnded: 1}} {
		if err := r.Check(); !errors.Is(err, ErrWatchIncomplete) {
			t.Errorf("Check of %+v = %v, want ErrWatchIncomplete", r, err)
		}
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// fakeNode serves what the watch workloads use of a node, with faults to
// inject: PUT /v1/kv/{key} (each put its own index), GET
// /v1/watch/{prefix}?prefix (NDJSON, every put under the prefix after the
// watch opened), /metrics and /debug/pprof/heap.
type fakeNode struct {
	// skip, when set, drops the event of key for stream number i.
	skip func(i int, key string) bool
	// twice, when set, sends the event of key twice on stream number i.
	twice func(i int, key string) bool
	// perWatcher is how much each open stream adds to the memory metrics.
	perWatcher int64
	// maxWatchers refuses streams past it (503 too_many_watchers).
	maxWatchers int
	// putDelay holds every put's answer back.
	putDelay time.Duration

	mu      sync.Mutex
	index   uint64
	streams []chan kv.WatchResponse
	open    int
	opened  int
	gcs     int
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/kv/"):
		value, _ := io.ReadAll(r.Body)
		key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
		f.mu.Lock()
		f.index++
		resp := kv.WatchResponse{Index: f.index, Events: []kv.Event{put(key, string(value), f.index)}}
		for _, ch := range f.streams {
			ch <- resp
		}
		f.mu.Unlock()
		time.Sleep(f.putDelay)
		// Answered after the events are out: some arrive first.
		_, _ = fmt.Fprintf(w, `{"key":%q,"create_index":1,"mod_index":%d,"version":1}`, key, resp.Index)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/watch/"):
		f.watch(w, r)
	case r.URL.Path == "/debug/pprof/heap":
		f.mu.Lock()
		f.gcs++
		f.mu.Unlock()
	case r.URL.Path == "/metrics":
		f.mu.Lock()
		open := int64(f.open)
		f.mu.Unlock()
		_, _ = fmt.Fprintf(w, "go_goroutines %d\ngo_memstats_heap_inuse_bytes %d\ngo_memstats_stack_inuse_bytes %d\nprocess_resident_memory_bytes %d\nraftkv_watchers %d\n",
			10+2*open, 1000+open*f.perWatcher/2, 100+open*f.perWatcher/2, 5000+open*f.perWatcher, open)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeNode) watch(w http.ResponseWriter, r *http.Request) {
	prefix := strings.TrimPrefix(r.URL.Path, "/v1/watch/")
	f.mu.Lock()
	if f.maxWatchers > 0 && f.open >= f.maxWatchers {
		f.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"too_many_watchers","message":"full"}}`)
		return
	}
	i := f.opened
	f.opened++
	f.open++
	ch := make(chan kv.WatchResponse, 100000)
	f.streams = append(f.streams, ch)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.open--
		for j, c := range f.streams {
			if c == ch {
				f.streams = append(f.streams[:j], f.streams[j+1:]...)
			}
		}
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case resp := <-ch:
			key := string(resp.Events[0].Key)
			if !strings.HasPrefix(key, prefix) || (f.skip != nil && f.skip(i, key)) {
				continue
			}
			line, _ := json.Marshal(kv.EncodeWatchResponse(resp))
			n := 1
			if f.twice != nil && f.twice(i, key) {
				n = 2
			}
			for range n {
				_, _ = w.Write(append(line, '\n'))
			}
			_ = rc.Flush()
		}
	}
}

func TestRunWatchDelay(t *testing.T) {
	tests := []struct {
		name    string
		node    *fakeNode
		check   func(t *testing.T, r *WatchDelayResult)
		wantErr bool // Check fails
	}{
		{"every event", &fakeNode{}, func(t *testing.T, r *WatchDelayResult) {
			if r.EventsMissing != 0 || r.EventsReceived != r.EventsExpected || r.EventsExpected != r.Writes*4 {
				t.Errorf("events: %+v", r)
			}
		}, false},
		{"one event missing", &fakeNode{skip: func(i int, key string) bool { return i == 2 && key == "w/00000030" }}, func(t *testing.T, r *WatchDelayResult) {
			if r.EventsMissing != 1 || r.EventsReceived != r.EventsExpected-1 {
				t.Errorf("events: %+v, want one missing", r)
			}
		}, true},
		{"one event twice", &fakeNode{twice: func(i int, key string) bool { return i == 1 && key == "w/00000031" }}, func(t *testing.T, r *WatchDelayResult) {
			if r.EventsDuplicate != 1 || r.EventsMissing != 0 {
				t.Errorf("events: %+v, want one duplicate", r)
			}
		}, true},
		{"a watch refused", &fakeNode{maxWatchers: 3}, func(t *testing.T, r *WatchDelayResult) {
			if r.Opened != 3 || r.ErrorsTotal != 1 || r.Errors[0].Kind != "http 503 too_many_watchers" || r.EventsExpected != r.Writes*3 {
				t.Errorf("%+v, want 3 opened and one refusal", r)
			}
		}, true},
	}
	for _, tc := range tests {
		srv := httptest.NewServer(tc.node)
		g := generator(t, Options{Endpoints: []string{srv.URL, srv.URL}, Workload: WatchDelay, Connections: 2, Keys: 1,
			KeyPrefix: "w/", Watchers: 4, Rate: 200, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, ValueSize: 10})
		r, err := g.RunWatchDelay(context.Background())
		srv.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// 200/s: 10 warm-up writes, 60 measured.
		if r.Writes != 60 || r.WritesUnsent != 0 || r.Watchers != 4 || r.Rate != 200 || r.Connections != 2 || r.ValueSize != 10 || r.Warmup != 0.05 || r.Seconds < 0.29 {
			t.Errorf("%s: result does not echo the run: %+v", tc.name, r)
		}
		if r.WritesPerSec <= 0 || r.WriteLatency.P50 <= 0 || r.Delay.Max < r.Delay.P99 || r.EventsForeign != 0 || r.EventsUnacknowledged != 0 || r.LoadCPU <= 0 {
			t.Errorf("%s: implausible figures %+v", tc.name, r)
		}
		tc.check(t, r)
		if err := r.Check(); (err != nil) != tc.wantErr {
			t.Errorf("%s: Check = %v, want an error: %v", tc.name, err, tc.wantErr)
		}
	}
}

// TestRunWatchDelayBehind runs writes against a node too slow for the
// rate: the run still ends on time, and says how far behind it fell.
func TestRunWatchDelayBehind(t *testing.T) {
	srv := httptest.NewServer(&fakeNode{putDelay: 40 * time.Millisecond})
	defer srv.Close()
	start := time.Now()
	r, err := generator(t, Options{Endpoints: []string{srv.URL}, Workload: WatchDelay, Connections: 2, Keys: 1,
		Watchers: 2, Rate: 200, Duration: 500 * time.Millisecond}).RunWatchDelay(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the run took %s for 500ms of writes", took)
	}
	// Two writers at 40 ms a write: about 25 of the 100 writes go out.
	if r.Writes < 10 || r.Writes > 40 || r.Writes+r.WritesUnsent != 100 || r.WritesLate < r.Writes/2 || r.WritesPerSec > 80 {
		t.Errorf("writes %d (%.0f/s), late %d, unsent %d; want about 25 of 100 at 50/s, the rest unsent", r.Writes, r.WritesPerSec, r.WritesLate, r.WritesUnsent)
	}
	if err := r.Check(); err != nil || r.EventsReceived != 2*r.Writes {
		t.Errorf("events %d of %d: %v", r.EventsReceived, r.EventsExpected, err)
	}
}

func TestRunWatchIdle(t *testing.T) {
	f := &fakeNode{perWatcher: 20000, maxWatchers: 45}
	srv := httptest.NewServer(f)
	defer srv.Close()
	g := generator(t, Options{Endpoints: []string{srv.URL}, Workload: WatchIdle, Connections: 1, Keys: 1, Watchers: 50})
	r, err := g.RunWatchIdle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Opened != 45 || r.ErrorsTotal != 5 || r.Errors[0].Kind != "http 503 too_many_watchers" {
		t.Errorf("opened %d, errors %+v; want 45 and 5 refused", r.Opened, r.Errors)
	}
	if r.Before.Watchers != 0 || r.Open.Watchers != 45 || r.Closed.Watchers != 0 || r.Events != 0 {
		t.Errorf("samples %+v", r)
	}
	want := PerWatcher{RSSBytes: 20000, HeapStackBytes: 20000, HeapBytes: 10000, StackBytes: 10000, Goroutines: 2}
	if r.PerWatcher != want {
		t.Errorf("per watcher = %+v, want %+v", r.PerWatcher, want)
	}
	f.mu.Lock()
	gcs := f.gcs
	f.mu.Unlock()
	if gcs != 6 {
		t.Errorf("%d forced collections, want two before each of three samples", gcs)
	}

	// A node without /debug/pprof cannot be measured.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			f.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	defer plain.Close()
	_, err = generator(t, Options{Endpoints: []string{plain.URL}, Workload: WatchIdle, Connections: 1, Keys: 1, Watchers: 1}).RunWatchIdle(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--pprof") {
		t.Errorf("without pprof: %v, want an error naming --pprof", err)
	}
	// Two endpoints are refused.
	_, err = generator(t, Options{Endpoints: []string{srv.URL, srv.URL}, Workload: WatchIdle, Connections: 1, Keys: 1, Watchers: 1}).RunWatchIdle(context.Background())
	if err == nil {
		t.Error("watch-idle over two endpoints ran")
	}
}

// TestWatchRunsNeedTheirWorkload checks that each run refuses the other
// workloads.
func TestWatchRunsNeedTheirWorkload(t *testing.T) {
	g := generator(t, Options{Endpoints: []string{"127.0.0.1:1"}, Workload: Put, Connections: 1, Keys: 1, Duration: time.Second})
	if _, err := g.RunWatchIdle(context.Background()); err == nil {
		t.Error("RunWatchIdle ran put")
	}
	if _, err := g.RunWatchDelay(context.Background()); err == nil {
		t.Error("RunWatchDelay ran put")
	}
	g = generator(t, Options{Endpoints: []string{"127.0.0.1:1"}, Workload: WatchDelay, Connections: 1, Keys: 1, Duration: time.Second, Watchers: 1, Rate: 1})
	if _, err := g.Run(context.Background()); err == nil {
		t.Error("Run ran watch-delay")
	}
}

// TestWatchCluster runs both watch workloads against a real three-node
// cluster. The nodes run in the test's process, so their memory figures
// include the load generator's side of every stream: only their shape is
// checked here; make bench measures separate processes.
func TestWatchCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) { cfg.Pprof = true }})
	eps := []string{c.URL(0), c.URL(1), c.URL(2)}

	idle, err := generator(t, Options{Endpoints: eps[1:2], Workload: WatchIdle, Connections: 1, Keys: 1, Watchers: 50}).
		RunWatchIdle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if idle.Opened != 50 || idle.ErrorsTotal != 0 || idle.Events != 0 {
		t.Errorf("watch-idle: %+v, want 50 watchers open without error or event", idle)
	}
	if idle.Before.Watchers != 0 || idle.Open.Watchers != 50 || idle.Closed.Watchers != 0 {
		t.Errorf("watch-idle: the node counted %d, %d, %d watchers; want 0, 50, 0", idle.Before.Watchers, idle.Open.Watchers, idle.Closed.Watchers)
	}
	if p := idle.PerWatcher; p.Goroutines < 1 || p.HeapBytes <= 0 || p.StackBytes <= 0 || math.Abs(p.HeapStackBytes-(p.HeapBytes+p.StackBytes)) > 1e-6*p.HeapStackBytes {
		t.Errorf("watch-idle per watcher: %+v", p)
	}

	const rate, warmup, duration = 200, 100 * time.Millisecond, time.Second
	r, err := generator(t, Options{Endpoints: eps, Workload: WatchDelay, Connections: 4, Keys: 1, KeyPrefix: "wd/", ValueSize: 100,
		Watchers: 12, Rate: rate, Warmup: warmup, Duration: duration}).RunWatchDelay(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(); err != nil {
		t.Errorf("watch-delay: %v", err)
	}
	// On a loaded machine the writers may not keep the rate: a write still
	// waiting when the time is up is not sent (WritesUnsent). Every one is
	// accounted for, and every one sent reaches every watcher.
	if r.ErrorsTotal != 0 || r.Writes < 1 || r.Writes+r.WritesUnsent != rate || r.EventsExpected != 12*r.Writes || r.EventsReceived != r.EventsExpected ||
		r.EventsForeign != 0 || r.EventsUnacknowledged != 0 || r.Delay.Max <= 0 || r.WriteLatency.P50 <= 0 {
		t.Errorf("watch-delay: %+v; want %d writes sent or unsent, each sent one received by the 12 watchers", r, rate)
	}
	// What the books say was written is what the cluster holds: one key
	// per write, warm-up included.
	cl, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := cl.List(ctx, kv.ListOptions{Prefix: []byte("wd/"), KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := int(r.Writes) + rate*int(warmup/time.Millisecond)/1000; len(page.Items) != want {
		t.Errorf("the cluster holds %d keys under wd/, want %d (the measured writes and the warm-up's)", len(page.Items), want)
	}
}
