package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The tests of the watch route's HTTP framing, against a Backend whose
// watches follow a script, served over loopback by net/http. The watches
// themselves (history, selection, progress) are the node's; the root
// package's tests drive them end to end on a real cluster.

// step is what one Watcher.Next returns.
type step struct {
	rs  []kv.WatchResponse
	err error
}

// scriptWatcher hands out the steps the test sends, one per Next, and
// blocks in between (until the request's context ends).
type scriptWatcher struct {
	steps  chan step
	closed chan struct{}
	once   sync.Once
}

func newScriptWatcher() *scriptWatcher {
	return &scriptWatcher{steps: make(chan step), closed: make(chan struct{})}
}

func (s *scriptWatcher) Next(ctx context.Context) ([]kv.WatchResponse, error) {
	select {
	case st := <-s.steps:
		return st.rs, st.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *scriptWatcher) Close() { s.once.Do(func() { close(s.closed) }) }

// Start is what a watch from index 41 says.
func (s *scriptWatcher) Start() uint64 { return 41 }

// send hands the watch its next step; it fails the test if the handler
// does not ask for one in time.
func (s *scriptWatcher) send(t *testing.T, st step) {
	t.Helper()
	select {
	case s.steps <- st:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not call Next")
	}
}

// waitClosed fails the test unless the handler closes the watcher in time.
func (s *scriptWatcher) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-s.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher was not closed")
	}
}

// watchBackend serves watches from a script: Watch fails with openErr, or
// opens w and records the options. The rest of Backend is not used by the
// watch route (nil: a call would panic the test).
type watchBackend struct {
	Backend
	openErr error
	w       *scriptWatcher

	mu   sync.Mutex
	opts []kv.WatchOptions
}

func (*watchBackend) ID() string           { return "n7" }
func (*watchBackend) AppliedIndex() uint64 { return 40 }

func (b *watchBackend) Watch(_ context.Context, opts kv.WatchOptions) (Watcher, error) {
	b.mu.Lock()
	b.opts = append(b.opts, opts)
	b.mu.Unlock()
	if b.openErr != nil {
		return nil, b.openErr
	}
	return b.w, nil
}

// serveWatch serves b's API on loopback, as a node does.
func serveWatch(t *testing.T, b Backend, configure func(*http.Server)) string {
	t.Helper()
	h, err := New(Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	if configure != nil {
		configure(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// openWatch sends a watch request and returns the response once its header
// has arrived (the body still streaming).
func openWatch(t *testing.T, ctx context.Context, url string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// readLine reads one line of the stream, failing the test if none comes.
func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the stream: %q, %v", line, err)
	}
	return line
}

var (
	putA = kv.Event{Type: kv.EventPut, Record: kv.Record{Key: []byte("app/a"), Value: []byte("1"), CreateIndex: 41, ModIndex: 41, Version: 1}}
	putB = kv.Event{Type: kv.EventPut, Record: kv.Record{Key: []byte("app/\xff"), Value: []byte{0xfe}, CreateIndex: 30, ModIndex: 42, Version: 3},
		Prev: &kv.Record{Key: []byte("app/\xff"), Value: []byte("old"), CreateIndex: 30, ModIndex: 35, Version: 2}}
	delA = kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: []byte("app/a"), ModIndex: 42}}
)

// An NDJSON stream: its header is flushed before any event exists, every
// batch Next returns is on the wire before the next Next, each line is one
// whole JSON object, and a shutdown ends it with a shutting_down line.
func TestWatchNDJSON(t *testing.T) {
	b := &watchBackend{w: newScriptWatcher()}
	url := serveWatch(t, b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The watcher has nothing yet: the header must arrive anyway.
	resp := openWatch(t, ctx, url+"/v1/watch/app%2F?prefix&from_index=41&prev_value")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for name, want := range map[string]string{"Content-Type": "application/x-ndjson", HeaderIndex: "40", HeaderNode: "n7", "Cache-Control": "no-cache"} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	b.mu.Lock()
	if want := (kv.WatchOptions{Key: []byte("app/"), Prefix: true, FromIndex: 41, PrevValue: true}); len(b.opts) != 1 || !equalWatchOptions(b.opts[0], want) {
		t.Errorf("Watch got %+v, want %+v", b.opts, want)
	}
	b.mu.Unlock()

	br := bufio.NewReader(resp.Body)
	steps := []struct {
		st    step
		lines []string
	}{
		{step{rs: []kv.WatchResponse{{Index: 41, Events: []kv.Event{putA}}}},
			[]string{`{"index":41,"events":[{"type":"put","key":"app/a","value":"1","create_index":41,"mod_index":41,"version":1}]}`}},
		// Two indexes in one batch: two lines, a non-UTF-8 key and value in
		// base64, a previous record without its key.
		{step{rs: []kv.WatchResponse{{Index: 42, Events: []kv.Event{delA, putB}}, {Index: 43}}},
			[]string{
				`{"index":42,"events":[{"type":"delete","key":"app/a","create_index":0,"mod_index":42,"version":0},` +
					`{"type":"put","key_base64":"YXBwL/8=","value_base64":"/g==","create_index":30,"mod_index":42,"version":3,"prev":{"value":"old","create_index":30,"mod_index":35,"version":2}}]}`,
				`{"index":43,"events":[]}`,
			}},
		// A progress notification.
		{step{rs: []kv.WatchResponse{{Index: 50}}}, []string{`{"index":50,"events":[]}`}},
		{step{err: fmt.Errorf("watch: %w", kv.ErrClosed)},
			[]string{`{"error":{"code":"shutting_down","message":"watch: ` + kv.ErrClosed.Error() + `"}}`}},
	}
	for _, s := range steps {
		b.w.send(t, s.st)
		for _, want := range s.lines {
			got := readLine(t, br)
			if got != want+"\n" {
				t.Fatalf("line\n%s\nwant\n%s", got, want)
			}
			var line kv.WatchLineJSON
			if err := json.Unmarshal([]byte(got), &line); err != nil {
				t.Fatalf("line %q is not a JSON object: %v", got, err)
			}
			if line.Error == nil {
				if _, err := (kv.WatchResponseJSON{Index: line.Index, Events: line.Events}).WatchResponse(); err != nil {
					t.Fatalf("line %q does not decode: %v", got, err)
				}
			}
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the last line: %q, %v", rest, err)
	}
	b.w.waitClosed(t)
}

func equalWatchOptions(a, b kv.WatchOptions) bool {
	return string(a.Key) == string(b.Key) && a.Prefix == b.Prefix && a.FromIndex == b.FromIndex && a.PrevValue == b.PrevValue && a.ProgressInterval == b.ProgressInterval
}

// Server-sent events: id is the index, data the same JSON; an ending error
// is an "error" event without an id.
func TestWatchSSE(t *testing.T) {
	b := &watchBackend{w: newScriptWatcher()}
	url := serveWatch(t, b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := openWatch(t, ctx, url+"/v1/watch/app%2Fa", "Accept", "text/event-stream", "Last-Event-ID", "40")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	b.mu.Lock()
	if len(b.opts) != 1 || b.opts[0].FromIndex != 41 || string(b.opts[0].Key) != "app/a" || b.opts[0].Prefix {
		t.Errorf("Watch got %+v, want key app/a from index 41 (Last-Event-ID 40)", b.opts)
	}
	b.mu.Unlock()

	b.w.send(t, step{rs: []kv.WatchResponse{{Index: 41, Events: []kv.Event{putA}}, {Index: 45}}})
	b.w.send(t, step{err: &kv.CompactedError{FromIndex: 46, OldestIndex: 60, CurrentIndex: 90}})
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := "id: 41\ndata: " + `{"index":41,"events":[{"type":"put","key":"app/a","value":"1","create_index":41,"mod_index":41,"version":1}]}` + "\n\n" +
		"id: 45\ndata: " + `{"index":45,"events":[]}` + "\n\n" +
		"event: error\ndata: " + `{"error":{"code":"compacted","message":"` + (&kv.CompactedError{FromIndex: 46, OldestIndex: 60, CurrentIndex: 90}).Error() +
		`","oldest_index":60,"current_index":90}}` + "\n\n"
	if string(body) != want {
		t.Fatalf("stream\n%s\nwant\n%s", body, want)
	}
	b.w.waitClosed(t)
}

// A compacted stream ends with an NDJSON error line carrying the history
// the node keeps, and any other failure of the watcher with its own code:
// never a silent end.
func TestWatchEndingLines(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want kv.ErrorBody
	}{
		{"compacted", fmt.Errorf("watch: %w", &kv.CompactedError{FromIndex: 3, OldestIndex: 10, CurrentIndex: 20}), kv.ErrorBody{Code: "compacted", OldestIndex: 10, CurrentIndex: 20}},
		{"shutting down", kv.ErrClosed, kv.ErrorBody{Code: "shutting_down"}},
		{"anything else", errors.New("disk on fire"), kv.ErrorBody{Code: "internal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &watchBackend{w: newScriptWatcher()}
			url := serveWatch(t, b, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp := openWatch(t, ctx, url+"/v1/watch/k")
			b.w.send(t, step{err: tt.err})
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			var line kv.WatchLineJSON
			if err := json.Unmarshal(body, &line); err != nil || line.Error == nil || strings.Count(string(body), "\n") != 1 {
				t.Fatalf("stream %q is not one error line: %v", body, err)
			}
			got := *line.Error
			if got.Message != tt.err.Error() {
				t.Errorf("message %q, want %q", got.Message, tt.err.Error())
			}
			got.Message = ""
			if got != tt.want {
				t.Errorf("error %+v, want %+v", got, tt.want)
			}
			if ce := (*kv.CompactedError)(nil); errors.As(kv.ErrorFromBody(*line.Error), &ce) != (tt.want.Code == "compacted") {
				t.Errorf("error line %+v decodes to %v", line.Error, kv.ErrorFromBody(*line.Error))
			}
			b.w.waitClosed(t)
		})
	}
}

// A client that goes away ends the stream: the handler returns and closes
// the watcher.
func TestWatchClientGone(t *testing.T) {
	b := &watchBackend{w: newScriptWatcher()}
	url := serveWatch(t, b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	resp := openWatch(t, ctx, url+"/v1/watch/k")
	b.w.send(t, step{rs: []kv.WatchResponse{{Index: 41, Events: []kv.Event{putA}}}})
	readLine(t, bufio.NewReader(resp.Body))
	cancel()
	b.w.waitClosed(t)
}

// No write timeout cuts a stream: on a server with a WriteTimeout, an
// event that comes after it has passed still reaches the client.
func TestWatchOutlivesWriteTimeout(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	b := &watchBackend{w: newScriptWatcher()}
	url := serveWatch(t, b, func(s *http.Server) { s.WriteTimeout = writeTimeout })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := openWatch(t, ctx, url+"/v1/watch/k")
	// Let the server's write deadline pass: this wait is the subject of
	// the test, not a wait for state.
	time.Sleep(3 * writeTimeout)
	b.w.send(t, step{rs: []kv.WatchResponse{{Index: 41, Events: []kv.Event{putA}}}})
	if line := readLine(t, bufio.NewReader(resp.Body)); !strings.HasPrefix(line, `{"index":41,`) {
		t.Fatalf("line %q", line)
	}
}

// A watch that cannot open is an ordinary error answer, before any stream:
// 410 with the history kept, 503 with Retry-After at the watcher limit or
// while shutting down, 400 for options the node refuses.
func TestWatchOpenErrors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		want   kv.ErrorBody // Message not compared
	}{
		{"compacted", &kv.CompactedError{FromIndex: 2, OldestIndex: 10, CurrentIndex: 20}, 410, kv.ErrorBody{Code: "compacted", OldestIndex: 10, CurrentIndex: 20}},
		{"too many watchers", fmt.Errorf("node n7: %w", kv.ErrTooManyWatchers), 503, kv.ErrorBody{Code: "too_many_watchers"}},
		{"shutting down", kv.ErrClosed, 503, kv.ErrorBody{Code: "shutting_down"}},
		{"bad options", fmt.Errorf("%w: no", kv.ErrBadRequest), 400, kv.ErrorBody{Code: "bad_request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &watchBackend{openErr: tt.err}
			url := serveWatch(t, b, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp := openWatch(t, ctx, url+"/v1/watch/k?from_index=2", "Accept", "text/event-stream")
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, Content-Type %q, want %d JSON: %s", resp.StatusCode, resp.Header.Get("Content-Type"), tt.status, body)
			}
			if (resp.StatusCode == 503) != (resp.Header.Get("Retry-After") == "1") {
				t.Errorf("status %d with Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			var er kv.ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil || er.Error.Message == "" {
				t.Fatalf("body %q: %v", body, err)
			}
			er.Error.Message = ""
			if er.Error != tt.want {
				t.Errorf("error %+v, want %+v", er.Error, tt.want)
			}
		})
	}
}

// Bad requests are refused before a watch opens.
func TestWatchBadRequests(t *testing.T) {
	tests := []struct {
		name, method, target string
		header               []string
		status               int
		code                 string
	}{
		{"from_index not a number", "GET", "/v1/watch/k?from_index=soon", nil, 400, "bad_request"},
		{"from_index negative", "GET", "/v1/watch/k?from_index=-3", nil, 400, "bad_request"},
		{"unknown parameter", "GET", "/v1/watch/k?recursive=1", nil, 400, "bad_request"},
		{"bad Last-Event-ID", "GET", "/v1/watch/k", []string{"Last-Event-ID", "x"}, 400, "bad_request"},
		{"no key", "GET", "/v1/watch/", nil, 400, "invalid_key"},
		{"POST", "POST", "/v1/watch/k", nil, 405, "method_not_allowed"},
		{"PUT", "PUT", "/v1/watch/k", nil, 405, "method_not_allowed"},
		{"HEAD", "HEAD", "/v1/watch/k", nil, 405, "method_not_allowed"},
		{"no trailing slash", "GET", "/v1/watch", nil, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &watchBackend{w: newScriptWatcher()}
			h, err := New(Config{Backend: b})
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, request(t, tt.method, tt.target, tt.header...))
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status == 405 && w.Header().Get("Allow") != "GET" {
				t.Errorf("Allow %q, want GET", w.Header().Get("Allow"))
			}
			var er kv.ErrorResponse
			if err := json.Unmarshal(w.Body.Bytes(), &er); err != nil || er.Error.Code != tt.code {
				t.Errorf("body %s, want code %q", w.Body, tt.code)
			}
			if len(b.opts) != 0 {
				t.Errorf("a watch was opened: %+v", b.opts)
			}
		})
	}
}

func TestWantsSSE(t *testing.T) {
	tests := []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"text/event-stream"}, true},
		{[]string{"Text/Event-Stream"}, true},
		{[]string{" text/event-stream ; charset=utf-8"}, true},
		{[]string{"application/json, text/event-stream"}, true},
		{[]string{"application/json", "text/event-stream"}, true},
		{[]string{"text/event-stream;q=0.5"}, true},
		{[]string{"text/event-stream;Q=0.5, application/x-ndjson;q=0.4"}, true},
		{[]string{"application/x-ndjson"}, false},
		{[]string{"application/x-ndjson, text/event-stream"}, false}, // a tie: the default
		{[]string{"text/event-stream;q=0.5, application/x-ndjson"}, false},
		{[]string{"text/event-stream;q=0"}, false},
		{[]string{"text/event-stream;q=x"}, false},
		{[]string{"text/event-stream;q=2"}, false},
		{[]string{"text/event-stream;q=NaN"}, false},
		{[]string{"*/*"}, false},
		{[]string{"text/*"}, false},
		{[]string{"application/json"}, false},
		{[]string{",,;;=,"}, false},
	}
	for _, tt := range tests {
		if got := wantsSSE(tt.accept); got != tt.want {
			t.Errorf("Accept %q: SSE %v, want %v", tt.accept, got, tt.want)
		}
	}
}
