package raftkv_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// The watch route and blocking reads over HTTP, as curl and a browser's
// EventSource use them, on real clusters over loopback.

// stream is an open watch: its response and a reader of its lines.
type stream struct {
	t    *testing.T
	resp *http.Response
	br   *bufio.Reader
}

// openStream sends GET url (a watch) with the given headers and returns
// the stream once its header has arrived, with a status of 200, or fails
// the test. ctx bounds the whole stream.
func openStream(t *testing.T, ctx context.Context, url string, header map[string]string) *stream {
	t.Helper()
	resp := sendWatch(t, ctx, url, header)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return &stream{t: t, resp: resp, br: bufio.NewReader(resp.Body)}
}

// sendWatch sends GET url and returns the response as soon as its header
// has arrived; the test closes its body at cleanup.
func sendWatch(t *testing.T, ctx context.Context, url string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// A client of its own, with no timeout: a stream lasts.
	cl := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(cl.CloseIdleConnections)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// line reads the next NDJSON line, failing the test if the stream ends.
func (s *stream) line() kv.WatchLineJSON {
	s.t.Helper()
	raw, err := s.br.ReadString('\n')
	if err != nil {
		s.t.Fatalf("reading the stream: %q, %v", raw, err)
	}
	var l kv.WatchLineJSON
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil || dec.More() {
		s.t.Fatalf("line %q is not one JSON object: %v", raw, err)
	}
	return l
}

// response reads lines until one with events (progress notifications are
// skipped) and decodes it.
func (s *stream) response() kv.WatchResponse {
	s.t.Helper()
	for {
		l := s.line()
		if l.Error != nil {
			s.t.Fatalf("stream ended: %+v", *l.Error)
		}
		r, err := kv.WatchResponseJSON{Index: l.Index, Events: l.Events}.WatchResponse()
		if err != nil {
			s.t.Fatalf("line %+v: %v", l, err)
		}
		if !r.IsProgress() {
			return r
		}
	}
}

// event is what a test expects of one event.
type event struct {
	typ      kv.EventType
	key, val string
	index    uint64 // mod_index
	prev     string // the previous value; "" for none
}

func (e event) String() string {
	return fmt.Sprintf("%s %s=%q @%d prev %q", e.typ, e.key, e.val, e.index, e.prev)
}

func eventOf(e kv.Event) event {
	out := event{typ: e.Type, key: string(e.Key), val: string(e.Value), index: e.ModIndex}
	if e.Prev != nil {
		out.prev = string(e.Prev.Value)
	}
	return out
}

// expect reads responses until it has seen want, in order, and fails on
// any other event: a watch delivers what it selects and nothing else.
func (s *stream) expect(want ...event) {
	s.t.Helper()
	var last uint64
	for len(want) > 0 {
		r := s.response()
		if r.Index <= last {
			s.t.Fatalf("response at index %d after index %d", r.Index, last)
		}
		last = r.Index
		for _, e := range r.Events {
			got := eventOf(e)
			if len(want) == 0 {
				s.t.Fatalf("unexpected event %v at index %d", got, r.Index)
			}
			if got != want[0] || e.ModIndex != r.Index {
				s.t.Fatalf("event %v in the response at index %d, want %v", got, r.Index, want[0])
			}
			want = want[1:]
		}
	}
}

// deleteKey deletes key through node i and returns the delete's index.
func deleteKey(t *testing.T, c *testkit.Cluster, i int, key string) uint64 {
	t.Helper()
	resp, body := c.Do(http.MethodDelete, c.URL(i)+"/v1/kv/"+key, nil, nil)
	var out kv.DeleteResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil {
		t.Fatalf("DELETE %s: %d %s", key, resp.StatusCode, body)
	}
	return out.Index
}

// The watch route and blocking reads on one cluster; each part uses keys
// of its own.
func TestHTTPWatch(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	for _, tt := range []struct {
		name string
		run  func(*testing.T, *testkit.Cluster)
	}{
		{"prefix on a follower", httpWatchPrefixOnFollower},
		{"from_index", httpWatchFromIndex},
		{"server-sent events", httpWatchSSE},
		{"blocking read", httpBlockingRead},
		{"bad input", httpWatchBadInput},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, c) })
	}
}

// curl -N http://follower/v1/watch/app/?prefix: the changes under app/
// written through another node, in order, and nothing else.
func httpWatchPrefixOnFollower(t *testing.T, c *testkit.Cluster) {
	l := c.Leader()
	f := c.Follower()
	other := 3 - l - f // the third node: writes go through it
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	before := put(t, c, l, "app/early", "0") // before the watch: not delivered
	waitValue(t, c, f, "app/early", "0")
	s := openStream(t, ctx, c.URL(f)+"/v1/watch/app/?prefix", nil)
	if ct := s.resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type %q", ct)
	}
	start, err := strconv.ParseUint(s.resp.Header.Get("X-Raft-Index"), 10, 64)
	if err != nil || start < before.ModIndex {
		t.Errorf("X-Raft-Index %q, want at least the index of the write before the watch, %d", s.resp.Header.Get("X-Raft-Index"), before.ModIndex)
	}
	if got := s.resp.Header.Get("X-Raft-Node"); got != c.Node(f).ID() {
		t.Errorf("X-Raft-Node %q, want the follower %s", got, c.Node(f).ID())
	}

	a := put(t, c, other, "app/a", "1")
	put(t, c, other, "elsewhere", "x") // not under app/
	b := put(t, c, l, "app/b", "2")
	d := deleteKey(t, c, other, "app/a")
	resp, out := txnOver(t, c, other, `{"success":[{"op":"put","key":"app/c","value":"3"},{"op":"delete_prefix","key":"app/b"},{"op":"put","key":"zzz","value":"4"}]}`, nil)
	var txn kv.TxnResponse
	if resp.StatusCode != 200 || json.Unmarshal([]byte(out), &txn) != nil {
		t.Fatalf("txn: %d %s", resp.StatusCode, out)
	}
	s.expect(
		event{typ: kv.EventPut, key: "app/a", val: "1", index: a.ModIndex},
		event{typ: kv.EventPut, key: "app/b", val: "2", index: b.ModIndex},
		event{typ: kv.EventDelete, key: "app/a", index: d},
		event{typ: kv.EventPut, key: "app/c", val: "3", index: txn.Index},
		event{typ: kv.EventDelete, key: "app/b", index: txn.Index},
	)
}

// from_index replays the history, then follows; prev_value gives each
// event the value it replaced. Every node replays the same history.
func httpWatchFromIndex(t *testing.T, c *testkit.Cluster) {
	l := c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v1 := put(t, c, l, "cfg/x", "1")
	put(t, c, l, "cfg/y", "other key")
	v2 := put(t, c, l, "cfg/x", "2")
	d := deleteKey(t, c, l, "cfg/x")

	for i := range c.Size() {
		s := openStream(t, ctx, fmt.Sprintf("%s/v1/watch/cfg/x?from_index=%d&prev_value", c.URL(i), v1.ModIndex), nil)
		s.expect(
			event{typ: kv.EventPut, key: "cfg/x", val: "1", index: v1.ModIndex},
			event{typ: kv.EventPut, key: "cfg/x", val: "2", index: v2.ModIndex, prev: "1"},
			event{typ: kv.EventDelete, key: "cfg/x", index: d, prev: "2"},
		)
	}
	// And then what comes next, live, from a replay that starts later.
	s := openStream(t, ctx, fmt.Sprintf("%s/v1/watch/cfg/x?from_index=%d", c.URL(c.Follower()), v2.ModIndex+1), nil)
	v3 := put(t, c, l, "cfg/x", "3")
	s.expect(
		event{typ: kv.EventDelete, key: "cfg/x", index: d},
		event{typ: kv.EventPut, key: "cfg/x", val: "3", index: v3.ModIndex},
	)
}

// The limits of a node, on nodes that keep little history and serve one
// watcher: a from_index older than the history is a 410 with the history
// in the body; past the watcher limit, watches and blocking reads are 503
// too_many_watchers, until a watch closes.
func TestHTTPWatchLimits(t *testing.T) {
	const history = 5
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) {
		cfg.WatchHistory = history
		cfg.MaxWatchers = 1
	}})
	l := c.Leader()
	var last kv.PutResponse
	for i := range 4 * history {
		last = put(t, c, l, "k", strconv.Itoa(i))
	}
	f := c.Follower()
	waitValue(t, c, f, "k", strconv.Itoa(4*history-1))
	for _, i := range []int{l, f} {
		resp, body := c.Do(http.MethodGet, c.URL(i)+"/v1/watch/k?from_index=1", nil, map[string]string{"Accept": "text/event-stream"})
		var er kv.ErrorResponse
		if resp.StatusCode != http.StatusGone || json.Unmarshal(body, &er) != nil {
			t.Fatalf("node %d: %d %s, want 410", i, resp.StatusCode, body)
		}
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("node %d: Content-Type %q", i, resp.Header.Get("Content-Type"))
		}
		e := er.Error
		if e.Code != "compacted" || e.Message == "" || e.OldestIndex <= 1 || e.CurrentIndex < last.ModIndex || e.OldestIndex > e.CurrentIndex {
			t.Fatalf("node %d: %+v, want compacted with the history kept (last write at %d)", i, e, last.ModIndex)
		}
		// The history the node says it keeps can be watched from.
		if last.ModIndex < e.OldestIndex {
			t.Fatalf("node %d: the last write, at %d, is older than the history kept: %+v", i, last.ModIndex, e)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s := openStream(t, ctx, fmt.Sprintf("%s/v1/watch/k?from_index=%d", c.URL(i), last.ModIndex), nil)
		s.expect(event{typ: kv.EventPut, key: "k", val: strconv.Itoa(4*history - 1), index: last.ModIndex})
		cancel()
	}

	// The leader's one slot: taken by a stream (once the streams above
	// have let theirs go), then refused to a second watch and to a
	// blocking read, then free again when the stream ends.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, closeFirst := context.WithCancel(ctx)
	var held *http.Response
	err := testkit.Eventually(10*time.Second, func() error {
		resp := sendWatch(t, first, c.URL(l)+"/v1/watch/k", nil)
		if resp.StatusCode != http.StatusOK {
			_ = resp.Body.Close()
			return fmt.Errorf("watch: %d", resp.StatusCode)
		}
		held = resp
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/watch/?prefix", fmt.Sprintf("/v1/kv/k?wait_index=%d&wait=1m", last.ModIndex)} {
		resp, body := c.Do(http.MethodGet, c.URL(l)+path, nil, nil)
		var er kv.ErrorResponse
		if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &er) != nil || er.Error.Code != "too_many_watchers" || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("GET %s past the limit: %d %v %s", path, resp.StatusCode, resp.Header, body)
		}
	}
	closeFirst()
	_ = held.Body.Close()
	err = testkit.Eventually(10*time.Second, func() error {
		resp, body := c.Do(http.MethodGet, c.URL(l)+fmt.Sprintf("/v1/kv/k?wait_index=%d&wait=1ms", last.ModIndex), nil, nil)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("blocking read: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Server-sent events: id is the index, data the NDJSON line; an
// EventSource that reconnects (to any node) with Last-Event-ID resumes
// after it, missing nothing and repeating nothing.
func httpWatchSSE(t *testing.T, c *testkit.Cluster) {
	l := c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sse := map[string]string{"Accept": "text/event-stream"}
	a := put(t, c, l, "ev", "a")
	b := put(t, c, l, "ev", "b")

	first, cancelFirst := context.WithCancel(ctx)
	s := openStream(t, first, fmt.Sprintf("%s/v1/watch/ev?from_index=%d", c.URL(c.Follower()), a.ModIndex), sse)
	if ct := s.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	for _, want := range []struct {
		res   kv.PutResponse
		value string
	}{{a, "a"}, {b, "b"}} {
		id, data := s.event()
		if id != strconv.FormatUint(want.res.ModIndex, 10) {
			t.Fatalf("event id %q, want %d", id, want.res.ModIndex)
		}
		wantData := fmt.Sprintf(`{"index":%d,"events":[{"type":"put","key":"ev","value":%q,"create_index":%d,"mod_index":%d,"version":%d}]}`,
			want.res.ModIndex, want.value, want.res.CreateIndex, want.res.ModIndex, want.res.Version)
		if data != wantData {
			t.Fatalf("data %s, want %s", data, wantData)
		}
	}
	cancelFirst() // the connection is lost
	c3 := put(t, c, l, "ev", "c")
	s = openStream(t, ctx, c.URL(l)+"/v1/watch/ev", map[string]string{"Accept": "text/event-stream", "Last-Event-ID": strconv.FormatUint(b.ModIndex, 10)})
	if id, data := s.event(); id != strconv.FormatUint(c3.ModIndex, 10) || !strings.Contains(data, `"value":"c"`) {
		t.Fatalf("after resuming: event %s %s, want index %d", id, data, c3.ModIndex)
	}
}

// event reads the next server-sent event that is not a progress
// notification and returns its id and data.
func (s *stream) event() (id, data string) {
	s.t.Helper()
	for {
		var fields []string
		for {
			raw, err := s.br.ReadString('\n')
			if err != nil {
				s.t.Fatalf("reading the stream: %q, %v", raw, err)
			}
			if raw == "\n" {
				break
			}
			fields = append(fields, strings.TrimSuffix(raw, "\n"))
		}
		if len(fields) != 2 || !strings.HasPrefix(fields[0], "id: ") || !strings.HasPrefix(fields[1], "data: ") {
			s.t.Fatalf("event %q: want an id and data", fields)
		}
		id, data = strings.TrimPrefix(fields[0], "id: "), strings.TrimPrefix(fields[1], "data: ")
		if !strings.HasSuffix(data, `"events":[]}`) {
			return id, data
		}
	}
}

// A node that shuts down ends its streams with a shutting_down line.
func TestHTTPWatchShutdown(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	f := c.Follower()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := openStream(t, ctx, c.URL(f)+"/v1/watch/?prefix", nil)
	sse := openStream(t, ctx, c.URL(f)+"/v1/watch/?prefix", map[string]string{"Accept": "text/event-stream"})
	p := put(t, c, c.Leader(), "any", "1")
	s.expect(event{typ: kv.EventPut, key: "any", val: "1", index: p.ModIndex})

	stopped := make(chan struct{})
	go func() { defer close(stopped); c.Stop(f) }()
	var end kv.WatchLineJSON
	for end = s.line(); end.Error == nil; end = s.line() {
		if len(end.Events) > 0 {
			t.Fatalf("unexpected events %+v", end)
		}
	}
	if end.Error.Code != "shutting_down" || end.Error.Message == "" {
		t.Fatalf("last line %+v, want shutting_down", *end.Error)
	}
	if rest, err := io.ReadAll(s.br); err != nil || len(rest) != 0 {
		t.Fatalf("after the last line: %q, %v", rest, err)
	}
	all, err := io.ReadAll(sse.br)
	const errEvent = "event: error\ndata: "
	at := strings.LastIndex(string(all), errEvent)
	if err != nil || at < 0 || !strings.HasSuffix(string(all), "\n\n") {
		t.Fatalf("SSE stream ended with %q, %v", all, err)
	}
	var er kv.ErrorResponse
	if err := json.Unmarshal(all[at+len(errEvent):], &er); err != nil || er.Error.Code != "shutting_down" {
		t.Fatalf("SSE stream ended with %q: %v", all[at:], err)
	}
	<-stopped
}

// Blocking reads: GET ?wait_index=N answers when the key (or prefix)
// changes after N, with the new state and the next wait_index; or, when
// ?wait runs out, with the state as it is.
func httpBlockingRead(t *testing.T, c *testkit.Cluster) {
	l, f := c.Leader(), c.Follower()
	v1 := put(t, c, l, "blk/a", "1")
	resp, body := get(t, c, f, "blk/a", fmt.Sprintf("?min_index=%d", v1.ModIndex))
	if resp.StatusCode != 200 || body != "1" {
		t.Fatalf("read: %d %q", resp.StatusCode, body)
	}
	index := resp.Header.Get("X-Raft-Index")

	// Nothing changes: the read waits out ?wait, then answers as it is.
	const wait = 500 * time.Millisecond
	start := time.Now()
	resp, body = get(t, c, f, "blk/a", "?wait_index="+index+"&wait="+wait.String())
	if took := time.Since(start); resp.StatusCode != 200 || body != "1" || took < wait {
		t.Fatalf("blocking read without a change: %d %q after %s, want the value after %s", resp.StatusCode, body, took, wait)
	}

	// A change: the read answers with it, long before ?wait runs out.
	type answer struct {
		status      int
		body, index string
	}
	for _, tt := range []struct {
		name, key, query string
		write            func() uint64
		check            func(answer) error
	}{
		{"one key", "blk/a", "", func() uint64 {
			put(t, c, l, "blk/b", "not this key")
			return put(t, c, l, "blk/a", "2").ModIndex
		}, func(a answer) error {
			if a.body != "2" {
				return fmt.Errorf("value %q, want 2", a.body)
			}
			return nil
		}},
		{"prefix", "blk/", "&prefix", func() uint64 {
			put(t, c, l, "other", "not this prefix")
			return put(t, c, l, "blk/new", "3").ModIndex
		}, func(a answer) error {
			var lr kv.ListResponse
			if err := json.Unmarshal([]byte(a.body), &lr); err != nil {
				return err
			}
			if len(lr.Items) != 3 || lr.Items[2].Key != "blk/new" || strconv.FormatUint(lr.Index, 10) != a.index {
				return fmt.Errorf("listing %s, X-Raft-Index %s", a.body, a.index)
			}
			return nil
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := get(t, c, f, tt.key, "?format=json"+tt.query)
			from := resp.Header.Get("X-Raft-Index")
			sent := make(chan struct{})
			got := make(chan answer, 1)
			var once sync.Once
			go func() {
				trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(sent) }) }}
				ctx := httptrace.WithClientTrace(context.Background(), trace)
				url := fmt.Sprintf("%s/v1/kv/%s?wait_index=%s&wait=1m%s", c.URL(f), tt.key, from, tt.query)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				cl := &http.Client{Timeout: 2 * time.Minute}
				resp, err := cl.Do(req)
				if err != nil {
					once.Do(func() { close(sent) })
					got <- answer{status: -1, body: err.Error()}
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				got <- answer{resp.StatusCode, string(b), resp.Header.Get("X-Raft-Index")}
			}()
			<-sent
			changed := tt.write()
			a := <-got
			if a.status != 200 {
				t.Fatalf("blocking read: %d %s", a.status, a.body)
			}
			if n, err := strconv.ParseUint(a.index, 10, 64); err != nil || n < changed {
				t.Errorf("X-Raft-Index %q, want at least the change's index %d", a.index, changed)
			}
			if err := tt.check(a); err != nil {
				t.Error(err)
			}
		})
	}
}

// Bad watch and blocking-read requests are refused on every node, with
// their codes.
func httpWatchBadInput(t *testing.T, c *testkit.Cluster) {
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		code               string
	}{
		{"from_index not a number", "GET", "/v1/watch/k?from_index=later", nil, 400, "bad_request"},
		{"negative from_index", "GET", "/v1/watch/k?from_index=-1", nil, 400, "bad_request"},
		{"unknown parameter", "GET", "/v1/watch/k?recursive", nil, 400, "bad_request"},
		{"bad Last-Event-ID", "GET", "/v1/watch/k", map[string]string{"Last-Event-ID": "abc"}, 400, "bad_request"},
		{"no key", "GET", "/v1/watch/", nil, 400, "invalid_key"},
		{"wrong method", "DELETE", "/v1/watch/k", nil, 405, "method_not_allowed"},
		{"wait_index without a number", "GET", "/v1/kv/k?wait_index", nil, 400, "bad_request"},
		{"wait_index not a number", "GET", "/v1/kv/?prefix&wait_index=soon", nil, 400, "bad_request"},
	}
	for _, tt := range tests {
		for i := range c.Size() {
			t.Run(fmt.Sprintf("%s/node%d", tt.name, i), func(t *testing.T) {
				resp, body := c.Do(tt.method, c.URL(i)+tt.path, nil, tt.header)
				var e kv.ErrorResponse
				if resp.StatusCode != tt.status || json.Unmarshal(body, &e) != nil || e.Error.Code != tt.code {
					t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
				}
				if resp.Header.Get("X-Raft-Node") == "" || resp.Header.Get("X-Raft-Index") == "" {
					t.Errorf("missing X-Raft-Node / X-Raft-Index: %v", resp.Header)
				}
			})
		}
	}
}
