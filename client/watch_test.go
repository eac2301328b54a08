package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The framing of watch streams against scripted servers: which lines the
// client delivers, where it resumes, and what ends a watch. The watch
// against a real cluster is in cluster_test.go.

// streamPlan is how a scripted server serves one watch request.
type streamPlan struct {
	status int    // non-zero: answer this error status with code instead of a stream
	code   string //
	replay int    // first resend this many responses from before from_index (duplicates)
	lines  int    // responses to send (-1: all there are)
	// progress, when set, follows the responses with a progress line at
	// this index.
	progress uint64
	// end is what ends the stream: "drop" (the connection breaks), "eof"
	// (the server ends it cleanly), "partial" (half a line, then a clean
	// end), "shutting_down" or "compacted" (an error line), "garbage" (a
	// line that is not JSON), "silent" (no byte until the client leaves).
	end string
}

type watchReq struct {
	server string
	path   string
	query  url.Values
	accept string
}

// watchScript serves watch streams from a history, one plan per request in
// order (the last plan repeats).
type watchScript struct {
	t       *testing.T
	history []kv.WatchResponse // in index order
	applied uint64             // X-Raft-Index
	nowFrom uint64             // where a watch without from_index starts (default applied+1)
	plans   []streamPlan
	mu      sync.Mutex
	reqs    []watchReq
	closed  []string // servers whose stream the client closed, in order
	done    chan struct{}
}

func newWatchScript(t *testing.T, history []kv.WatchResponse, plans ...streamPlan) *watchScript {
	s := &watchScript{t: t, history: history, plans: plans, done: make(chan struct{})}
	if len(history) > 0 {
		s.applied = history[len(history)-1].Index
	}
	t.Cleanup(func() { close(s.done) })
	return s
}

func (s *watchScript) server(name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/watch/") {
			writeJSON(w, http.StatusNotFound, kv.ErrorResponse{Error: kv.ErrorBody{Code: "not_found"}})
			return
		}
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, watchReq{server: name, path: r.URL.EscapedPath(), query: r.URL.Query(), accept: r.Header.Get("Accept")})
		p := s.plans[min(n, len(s.plans)-1)]
		s.mu.Unlock()
		s.serve(w, r, p, name)
	}))
	s.t.Cleanup(srv.Close)
	return srv.URL
}

func (s *watchScript) serve(w http.ResponseWriter, r *http.Request, p streamPlan, name string) {
	from := s.applied + 1
	if s.nowFrom > 0 {
		from = s.nowFrom
	}
	if v := r.URL.Query().Get("from_index"); v != "" {
		from, _ = strconv.ParseUint(v, 10, 64)
	}
	oldest := s.history[0].Index
	if p.status != 0 {
		if p.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		body := kv.ErrorBody{Code: p.code, Message: p.code + " (test)"}
		if p.code == "compacted" {
			body.OldestIndex, body.CurrentIndex = oldest, s.applied
		}
		writeJSON(w, p.status, kv.ErrorResponse{Error: body})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Raft-Index", strconv.FormatUint(s.applied, 10))
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	line := func(v any) {
		b, _ := json.Marshal(v)
		_, _ = w.Write(append(b, '\n'))
		fl.Flush()
	}
	i := max(slices.IndexFunc(s.history, func(r kv.WatchResponse) bool { return r.Index >= from }), 0)
	if from > s.history[len(s.history)-1].Index {
		i = len(s.history)
	}
	end := len(s.history)
	if p.lines >= 0 {
		end = min(i+p.lines, end)
	}
	for i = max(i-p.replay, 0); i < end; i++ {
		line(kv.EncodeWatchResponse(s.history[i]))
	}
	if p.progress > 0 {
		line(kv.EncodeWatchResponse(kv.WatchResponse{Index: p.progress}))
	}
	switch p.end {
	case "drop":
		panic(http.ErrAbortHandler)
	case "eof":
	case "partial":
		_, _ = w.Write([]byte(`{"index":99,"ev`))
	case "shutting_down", "compacted":
		line(kv.ErrorResponse{Error: kv.ErrorBody{Code: p.end, Message: p.end + " (test)", OldestIndex: oldest + 100, CurrentIndex: s.applied}})
	case "garbage":
		_, _ = w.Write([]byte("<html>\n"))
	case "silent":
		select {
		case <-r.Context().Done():
			s.mu.Lock()
			s.closed = append(s.closed, name)
			s.mu.Unlock()
		case <-s.done:
		}
	default:
		s.t.Errorf("plan end %q", p.end)
	}
}

func (s *watchScript) requests() []watchReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// fromIndexes lists the from_index of every request ("" when absent).
func (s *watchScript) fromIndexes() []string {
	var out []string
	for _, r := range s.requests() {
		out = append(out, r.query.Get("from_index"))
	}
	return out
}

func (s *watchScript) servers() string {
	var b strings.Builder
	for _, r := range s.requests() {
		b.WriteString(r.server)
	}
	return b.String()
}

// history makes one response per index in [from, to], each a put of key
// "app/<index>", and a delete of "app/x" at every index divisible by 3.
func history(from, to uint64) []kv.WatchResponse {
	var h []kv.WatchResponse
	for i := from; i <= to; i++ {
		r := kv.WatchResponse{Index: i, Events: []kv.Event{{Type: kv.EventPut, Record: kv.Record{
			Key: fmt.Appendf(nil, "app/%d", i), Value: []byte("v"), CreateIndex: i, ModIndex: i, Version: 1}}}}
		if i%3 == 0 {
			r.Events = append(r.Events, kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: []byte("app/x"), ModIndex: i}})
		}
		h = append(h, r)
	}
	return h
}

// collect ranges over seq until stop says so or an error ends it, and
// returns what it got.
func collect(t *testing.T, seq func(func(kv.WatchResponse, error) bool), stop func([]kv.WatchResponse) bool) ([]kv.WatchResponse, error) {
	t.Helper()
	var got []kv.WatchResponse
	var last error
	seq(func(r kv.WatchResponse, err error) bool {
		if last != nil {
			t.Fatalf("a value after the error %v", last)
		}
		if err != nil {
			last = err
			return true // the sequence must end by itself
		}
		got = append(got, r)
		return !stop(got)
	})
	return got, last
}

func indexes(rs []kv.WatchResponse) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.Index)
	}
	return out
}

func upTo(i uint64) func([]kv.WatchResponse) bool {
	return func(got []kv.WatchResponse) bool { return got[len(got)-1].Index >= i }
}

func watchCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Every way a stream ends that is not the watch's end makes the client
// reopen on the other endpoint from the index after the last it
// delivered: the caller gets each index once, in order, and the events
// intact.
func TestWatchResumes(t *testing.T) {
	h := history(5, 20)
	s := newWatchScript(t, h,
		streamPlan{lines: 3, end: "drop"},          // 5 6 7
		streamPlan{lines: 2, end: "shutting_down"}, // 8 9
		streamPlan{lines: 1, end: "partial"},       // 10
		streamPlan{status: http.StatusServiceUnavailable, code: "too_many_watchers"},
		streamPlan{lines: 0, end: "drop"},                  // nothing
		streamPlan{lines: 2, replay: 4, end: "eof"},        // 7..10 again (dropped), 11 12
		streamPlan{lines: 2, end: "silent"},                // 13 14, then nothing: lost after 3 progress intervals
		streamPlan{lines: -1, progress: 20, end: "silent"}, // 15..20, progress 20
	)
	a, b := s.server("A"), s.server("B")
	c := newClient(t, Config{Endpoints: []string{a, b}})
	got, err := collect(t, c.Watch(watchCtx(t), kv.WatchOptions{Key: []byte("app/"), Prefix: true, FromIndex: 5, ProgressInterval: 50 * time.Millisecond}),
		func(got []kv.WatchResponse) bool { return got[len(got)-1].IsProgress() })
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(h), kv.WatchResponse{Index: 20})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("delivered\n%v\nwant\n%v", got, want)
	}
	if got, want := s.fromIndexes(), []string{"5", "8", "10", "11", "11", "11", "13", "15"}; !slices.Equal(got, want) {
		t.Errorf("from_index of the streams %q, want %q", got, want)
	}
	if got := s.servers(); got != "ABABABAB" {
		t.Errorf("servers %s, want each stream on the other endpoint", got)
	}
	for _, r := range s.requests() {
		if r.path != "/v1/watch/app/" || !r.query.Has("prefix") || r.query.Has("prev_value") || r.accept != "application/x-ndjson" {
			t.Errorf("request %+v", r)
		}
	}
}

// A watch without FromIndex starts after the index the first stream's
// X-Raft-Index names, and resumes from there when it has delivered
// nothing; a progress notification at that index is delivered, one older
// than what was delivered is not.
func TestWatchFromNow(t *testing.T) {
	h := history(1, 12) // applied: 12
	s := newWatchScript(t, h,
		streamPlan{lines: 0, progress: 12, end: "drop"},
		streamPlan{lines: 0, progress: 11, end: "eof"}, // a node behind: its progress goes back
		streamPlan{lines: 0, end: "silent"},
	)
	a, b := s.server("A"), s.server("B")
	c := newClient(t, Config{Endpoints: []string{a, b}})
	ctx, cancel := context.WithCancel(watchCtx(t))
	defer cancel()
	var got []kv.WatchResponse
	for r, err := range c.Watch(ctx, kv.WatchOptions{Key: []byte("k"), PrevValue: true}) {
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			break
		}
		got = append(got, r)
		if len(got) == 1 {
			// Cancel once the third stream is open.
			go func() {
				_ = pollUntil(10*time.Second, func() bool { return len(s.requests()) == 3 })
				cancel()
			}()
		}
	}
	if fmt.Sprint(got) != fmt.Sprint([]kv.WatchResponse{{Index: 12}}) {
		t.Errorf("delivered %v, want the one progress notification at 12", got)
	}
	if got, want := s.fromIndexes(), []string{"", "13", "13"}; !slices.Equal(got, want) {
		t.Errorf("from_index %q, want %q", got, want)
	}
	for _, r := range s.requests() {
		if r.path != "/v1/watch/k" || r.query.Has("prefix") || !r.query.Has("prev_value") {
			t.Errorf("request %+v", r)
		}
	}
}

// A watch without FromIndex delivers what its first stream sends, even
// events at or before the stream's X-Raft-Index (the server sends none
// today), and resumes after the last of them.
func TestWatchFromNowEarlyEvents(t *testing.T) {
	s := newWatchScript(t, history(1, 12), // applied: 12
		streamPlan{lines: 1, end: "drop"}, // 11
		streamPlan{lines: -1, progress: 12, end: "silent"},
	)
	s.nowFrom = 11 // the watch opened at 10, and the node applied 11 and 12 before the header
	c := newClient(t, Config{Endpoints: []string{s.server("A"), s.server("B")}})
	got, err := collect(t, c.Watch(watchCtx(t), kv.WatchOptions{Key: []byte("k")}), func(got []kv.WatchResponse) bool { return got[len(got)-1].IsProgress() })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(indexes(got), []uint64{11, 12, 12}) || !got[2].IsProgress() {
		t.Errorf("delivered %v, want 11, 12 and progress at 12", got)
	}
	if got, want := s.fromIndexes(), []string{"", "12"}; !slices.Equal(got, want) {
		t.Errorf("from_index %q, want %q", got, want)
	}
}

func pollUntil(timeout time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond) // a poll interval; f is re-checked
	}
	return true
}

// What ends a watch: the error is delivered, then nothing more, and no
// stream is reopened.
func TestWatchEnds(t *testing.T) {
	h := history(10, 20)
	tests := []struct {
		name  string
		plan  streamPlan
		opts  kv.WatchOptions
		check func(error) bool
		want  []uint64 // indexes delivered before the error
		reqs  int
	}{
		{
			name:  "compacted answer",
			plan:  streamPlan{status: http.StatusGone, code: "compacted"},
			opts:  kv.WatchOptions{Key: []byte("k"), FromIndex: 3},
			check: compactedAt(3, 10, 20),
			reqs:  1,
		},
		{
			name:  "compacted line",
			plan:  streamPlan{lines: 2, end: "compacted"},
			opts:  kv.WatchOptions{Key: []byte("k"), FromIndex: 12},
			check: compactedAt(14, 110, 20),
			want:  []uint64{12, 13},
			reqs:  1,
		},
		{
			name:  "bad request",
			plan:  streamPlan{status: http.StatusBadRequest, code: "bad_request"},
			opts:  kv.WatchOptions{Key: []byte("k")},
			check: func(err error) bool { return errors.Is(err, kv.ErrBadRequest) },
			reqs:  1,
		},
		{
			name:  "malformed stream",
			plan:  streamPlan{lines: 1, end: "garbage"},
			opts:  kv.WatchOptions{Key: []byte("k"), FromIndex: 10},
			check: func(err error) bool { return err != nil && strings.Contains(err.Error(), "malformed") },
			want:  []uint64{10},
			reqs:  1,
		},
		{
			name:  "invalid key",
			opts:  kv.WatchOptions{},
			check: func(err error) bool { return errors.Is(err, kv.ErrInvalidKey) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newWatchScript(t, h, tt.plan)
			c := newClient(t, Config{Endpoints: []string{s.server("A"), s.server("B")}})
			got, err := collect(t, c.Watch(watchCtx(t), tt.opts), func([]kv.WatchResponse) bool { return false })
			if !tt.check(err) {
				t.Errorf("error %v (%T)", err, err)
			}
			if !slices.Equal(indexes(got), tt.want) {
				t.Errorf("delivered %v, want %v", indexes(got), tt.want)
			}
			if n := len(s.requests()); n != tt.reqs {
				t.Errorf("%d requests, want %d", n, tt.reqs)
			}
		})
	}
}

func compactedAt(from, oldest, current uint64) func(error) bool {
	return func(err error) bool {
		var ce *kv.CompactedError
		return errors.As(err, &ce) && errors.Is(err, kv.ErrCompacted) &&
			ce.FromIndex == from && ce.OldestIndex == oldest && ce.CurrentIndex == current
	}
}

// The context ending ends the watch with its error, while streaming and
// while reopening; MaxAttempts failed reopenings end it with the last
// failure.
func TestWatchContextAndAttempts(t *testing.T) {
	h := history(1, 5)
	s := newWatchScript(t, h, streamPlan{lines: -1, end: "silent"})
	c := newClient(t, Config{Endpoints: []string{s.server("A")}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	got, err := collect(t, c.Watch(ctx, kv.WatchOptions{Key: []byte("k"), FromIndex: 1}), func([]kv.WatchResponse) bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) || len(got) != 5 {
		t.Errorf("streaming: %d responses, error %v; want 5 and the context's", len(got), err)
	}

	s = newWatchScript(t, h, streamPlan{status: http.StatusServiceUnavailable, code: "shutting_down"})
	c = newClient(t, Config{Endpoints: []string{s.server("A")}})
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = collect(t, c.Watch(ctx, kv.WatchOptions{Key: []byte("k")}), func([]kv.WatchResponse) bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, kv.ErrClosed) {
		t.Errorf("reopening: error %v, want the context's and the last answer", err)
	}

	s = newWatchScript(t, h, streamPlan{status: http.StatusServiceUnavailable, code: "too_many_watchers"})
	c = newClient(t, Config{Endpoints: []string{s.server("A"), s.server("B")}, MaxAttempts: 3})
	_, err = collect(t, c.Watch(watchCtx(t), kv.WatchOptions{Key: []byte("k")}), func([]kv.WatchResponse) bool { return false })
	if !errors.Is(err, kv.ErrTooManyWatchers) || len(s.requests()) != 3 {
		t.Errorf("MaxAttempts 3: error %v after %d requests", err, len(s.requests()))
	}
}

// Breaking out of the range loop closes the stream: the server sees its
// client leave, and no goroutine of the watch is left.
func TestWatchBreakCloses(t *testing.T) {
	s := newWatchScript(t, history(1, 5), streamPlan{lines: 2, end: "silent"})
	c := newClient(t, Config{Endpoints: []string{s.server("A")}})
	base := runtime.NumGoroutine()
	for range 5 {
		for _, err := range c.Watch(watchCtx(t), kv.WatchOptions{Key: []byte("k"), FromIndex: 1}) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if !pollUntil(10*time.Second, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.closed) == 5 }) {
		t.Errorf("the server saw %d of 5 streams closed", len(s.closed))
	}
	// The server's handlers are gone too, so the count comes back to
	// where it was (the client's idle connections are none: every stream
	// closed its own).
	if !pollUntil(10*time.Second, func() bool { return runtime.NumGoroutine() <= base }) {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines, %d before the watches:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
	}
}

// Keys are escaped as for /v1/kv/, and the empty prefix watches
// everything.
func TestWatchPath(t *testing.T) {
	for _, tt := range []struct {
		opts kv.WatchOptions
		path string
	}{
		{kv.WatchOptions{Key: []byte("a b/?#"), Prefix: true}, "/v1/watch/a%20b/%3F%23"},
		{kv.WatchOptions{Key: []byte("//x/..")}, "/v1/watch/%2F%2Fx/%2E%2E"},
		{kv.WatchOptions{Prefix: true}, "/v1/watch/"},
	} {
		s := newWatchScript(t, history(1, 2), streamPlan{status: http.StatusBadRequest, code: "bad_request"})
		c := newClient(t, Config{Endpoints: []string{s.server("A")}})
		_, _ = collect(t, c.Watch(watchCtx(t), tt.opts), func([]kv.WatchResponse) bool { return false })
		if r := s.requests(); len(r) != 1 || r[0].path != tt.path || r[0].query.Has("prefix") != tt.opts.Prefix {
			t.Errorf("Watch(%q, prefix %v): requests %+v, want path %s", tt.opts.Key, tt.opts.Prefix, r, tt.path)
		}
	}
}

// Events come back as the server encoded them: non-UTF-8 keys and values,
// deletes, previous records.
func TestWatchDecodes(t *testing.T) {
	resp := kv.WatchResponse{Index: 9, Events: []kv.Event{
		{Type: kv.EventPut, Record: kv.Record{Key: []byte("k\xff"), Value: []byte{0, 1}, CreateIndex: 3, ModIndex: 9, Version: 2},
			Prev: &kv.Record{Key: []byte("k\xff"), Value: []byte("old"), CreateIndex: 3, ModIndex: 5, Version: 1}},
		{Type: kv.EventDelete, Record: kv.Record{Key: []byte("gone"), ModIndex: 9}},
		{Type: kv.EventPut, Record: kv.Record{Key: []byte("empty"), Value: []byte{}, CreateIndex: 9, ModIndex: 9, Version: 1}},
	}}
	s := newWatchScript(t, []kv.WatchResponse{resp}, streamPlan{lines: -1, end: "silent"})
	c := newClient(t, Config{Endpoints: []string{s.server("A")}})
	got, err := collect(t, c.Watch(watchCtx(t), kv.WatchOptions{Prefix: true, FromIndex: 9, PrevValue: true}), upTo(9))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], resp) {
		t.Errorf("got %#v\nwant %#v", got, resp)
	}
}

// A blocking read sends wait_index and its wait for a change as ?wait
// (within the context's deadline), and the attempt timeout does not cut
// the wait short.
func TestBlockingRead(t *testing.T) {
	var mu sync.Mutex
	var queries []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Query())
		mu.Unlock()
		if r.URL.Query().Has("wait_index") {
			time.Sleep(300 * time.Millisecond) // the server waiting for a change
		}
		if r.URL.Query().Has("prefix") {
			writeJSON(w, http.StatusOK, kv.ListResponse{Items: []kv.RecordJSON{}, Index: 8})
			return
		}
		writeJSON(w, http.StatusOK, kv.EncodeRecord(kv.Record{Key: []byte("k"), Value: []byte("v2"), ModIndex: 8, Version: 2}, false))
	}))
	defer srv.Close()
	c := newClient(t, Config{Endpoints: []string{srv.URL}, AttemptTimeout: 100 * time.Millisecond, MaxAttempts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if rec, err := c.Get(ctx, []byte("k"), kv.ReadOptions{WaitIndex: 7, WaitTime: 10 * time.Second}); err != nil || rec.Version != 2 {
		t.Fatalf("blocking Get: %+v, %v", rec, err)
	}
	if res, err := c.List(ctx, kv.ListOptions{Prefix: []byte("k"), ReadOptions: kv.ReadOptions{WaitIndex: 7}}); err != nil || res.Index != 8 {
		t.Fatalf("blocking List: %+v, %v", res, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := c.Get(short, []byte("k"), kv.ReadOptions{WaitIndex: 7}); err != nil {
		t.Fatalf("blocking Get within 2s: %v", err)
	}
	if _, err := c.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil {
		t.Fatalf("Get: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	waits := []struct{ lo, hi time.Duration }{
		{9 * time.Second, 10 * time.Second}, // WaitTime, less the time gone
		{4 * time.Minute, 5 * time.Minute},  // kv.DefaultBlockingWait
		{time.Second, 1800 * time.Millisecond},
		{time.Millisecond, 100 * time.Millisecond}, // a read's wait, within its attempt
	}
	for i, q := range queries {
		wantIndex := "7"
		if i == 3 {
			wantIndex = ""
		}
		w, err := time.ParseDuration(q.Get("wait"))
		if q.Get("wait_index") != wantIndex || err != nil || w < waits[i].lo || w > waits[i].hi {
			t.Errorf("request %d: %v, want wait_index %q and a wait in [%s, %s]", i, q, wantIndex, waits[i].lo, waits[i].hi)
		}
	}
}
