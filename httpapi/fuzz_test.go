package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/forward"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// FuzzHandler drives the HTTP API of a real single-node raftkv.Node with
// arbitrary methods, paths, queries, headers and bodies, as Go's HTTP
// server would hand them over (requests the server itself refuses are
// skipped). Whatever comes in, the handler must not panic, must answer 5xx
// only with 503/504 of leadership or time, must give every error a JSON
// body with a code, and must stamp X-Raft-Node; a watch that opens must
// stream whole lines of its framing (checkWatchStream), and so must an
// election's observe stream (checkObserveStream). The lease, lock and
// election routes are among the seeds.
func FuzzHandler(f *testing.F) {
	seeds := []struct {
		method, path, query, headers string
		body                         string
	}{
		{"GET", "/v1/kv/a", "", "", ""},
		{"PUT", "/v1/kv/a", "", "", "hello"},
		{"PUT", "/v1/kv/a", "", "If-None-Match: *", "v"},
		{"PUT", "/v1/kv/a", "", "If-Match: \"3\"", "x"},
		{"PUT", "/v1/kv/a", "", "If-Match: W/\"3\"\nIf-None-Match: *", "x"},
		{"PUT", "/v1/kv/a", "", "If-Match: 7", "x"},
		{"PUT", "/v1/kv/a", "redirect", "", "x"},
		{"PUT", "/v1/kv/k", "", "Idempotency-Key: abc-1", "v"},
		{"DELETE", "/v1/kv/a", "", "If-Match: \"1\"", ""},
		{"DELETE", "/v1/kv/", "prefix", "", ""},
		{"DELETE", "/v1/kv/a", "prefix=maybe", "", ""},
		{"GET", "/v1/kv/", "prefix&limit=2&keys_only", "", ""},
		{"GET", "/v1/kv/a/", "prefix&after=a%2Fb&limit=0", "", ""},
		{"GET", "/v1/kv/a", "consistency=stale&max_stale=1s", "", ""},
		{"GET", "/v1/kv/a", "consistency=bogus", "", ""},
		{"GET", "/v1/kv/a", "min_index=3&wait=10ms", "", ""},
		{"GET", "/v1/kv/a", "min_index=99999999&wait=20ms", "", ""},
		{"GET", "/v1/kv/a%2Fb%00c", "format=json", "", ""},
		{"GET", "/v1/kv/a", "limit=1", "", ""},
		{"GET", "/v1/kv/a", "format=json&format=raw", "", ""},
		{"GET", "/v1/kv/" + strings.Repeat("k", kv.MaxKeySize+1), "", "", ""},
		{"POST", "/v1/txn", "", "Content-Type: application/json",
			`{"compare":[{"key":"a","target":"mod_index","op":"=","value":1}],"success":[{"op":"put","key":"a","value":"t"}],"failure":[{"op":"get","key":"a"}]}`},
		{"POST", "/v1/txn", "", "", `{"compare":[{"key":"a","target":"nope"}]}`},
		{"POST", "/v1/txn", "", "", `[`},
		{"GET", "/v1/cluster", "", "", ""},
		{"GET", "/v1/cluster", "x=1", "", ""},
		{"GET", "/v1/debug/hash", "", "", ""},
		{"GET", httpapi.ReadIndexPath, "", "", ""},
		{"POST", httpapi.ApplyPath, "", "Content-Type: " + httpapi.ApplyContentType, string(forward.AppendRequest(nil,
			[]*store.Command{{Op: store.OpPut, Key: []byte("f"), Value: []byte("v")}}, []time.Duration{time.Second}))},
		{"POST", httpapi.ApplyPath, "", "", "\x01\x01\x00\x02\x01\x05\x00"},
		{"GET", "/readyz", "", "", ""},
		{"GET", "/livez", "", "", ""},
		{"GET", "/metrics", "", "", ""},
		{"PATCH", "/v1/kv/a", "", "", ""},
		{"HEAD", "/v1/kv/a", "", "", ""},
		{"GET", "/nope", "", "", ""},
		{"GET", "/v1/kv/a", "", "X-Raft-Forwarded-By: n9", ""},
		{"PUT", "/v1/kv/a", "", "Content-Length: 5", "toolongbody"},
		{"GET", "/v1/kv/a", "wait_index=1&wait=10ms", "", ""},
		{"GET", "/v1/kv/", "prefix&wait_index=99999999&wait=10ms", "", ""},
		{"GET", "/v1/kv/a", "wait_index=abc", "", ""},
		{"GET", "/v1/watch/a", "", "", ""},
		{"GET", "/v1/watch/", "prefix&from_index=1&prev_value", "", ""},
		{"GET", "/v1/watch/a%2Fb%00", "from_index=0&prefix=false", "", ""},
		{"GET", "/v1/watch/a", "from_index=-1", "", ""},
		{"GET", "/v1/watch/a", "from_index=99999999", "", ""},
		{"GET", "/v1/watch/", "", "", ""},
		{"GET", "/v1/watch/a", "wait=1s", "", ""},
		{"GET", "/v1/watch/a", "", "Accept: text/event-stream\nLast-Event-ID: 3", ""},
		{"GET", "/v1/watch/a", "prefix", "Accept: text/event-stream;q=0.5, application/x-ndjson\nLast-Event-ID: x", ""},
		{"POST", "/v1/watch/a", "", "", "x"},
		// Leases, TTL keys, fenced writes, locks, elections.
		{"POST", "/v1/lease", "", "", `{"ttl":"10s"}`},
		{"POST", "/v1/lease", "", "", `{"ttl":3}`},
		{"POST", "/v1/lease", "", "", `{"ttl":"-1s"}`},
		{"POST", "/v1/lease", "", "", `{"ttl":"1ms"}`},
		{"POST", "/v1/lease", "", "", `{}`},
		{"GET", "/v1/lease", "", "", ""},
		{"GET", "/v1/lease/1", "", "", ""},
		{"POST", "/v1/lease/1/keepalive", "", "", ""},
		{"POST", "/v1/lease/abc/keepalive", "", "", ""},
		{"DELETE", "/v1/lease/1", "", "", ""},
		{"DELETE", "/v1/lease/0", "", "", ""},
		{"PUT", "/v1/lease/1", "", "", ""},
		{"PUT", "/v1/kv/svc/a", "ttl=10s", "", "v"},
		{"PUT", "/v1/kv/svc/a", "lease=1", "", "v"},
		{"PUT", "/v1/kv/svc/a", "lease=1&ttl=10s", "", "v"},
		{"PUT", "/v1/kv/svc/a", "lock=jobs&token=1", "", "v"},
		{"DELETE", "/v1/kv/svc/a", "lock=jobs&token=1", "", ""},
		{"DELETE", "/v1/kv/svc/", "prefix&lock=jobs&token=1", "", ""},
		{"POST", "/v1/txn", "", "", `{"compare":[{"key":"jobs","target":"lock","op":"=","value":1}],"success":[{"op":"put","key":"a","value":"v","lease":"1"}]}`},
		{"POST", "/v1/lock/jobs", "wait=100ms", "", `{"ttl":"10s"}`},
		{"POST", "/v1/lock/jobs", "", "", `{"lease":"1"}`},
		{"POST", "/v1/lock/", "", "", `{"ttl":"10s","lease":"1"}`},
		{"POST", "/v1/lock/a%2Fb", "", "", `{"ttl":"10s"}`},
		{"DELETE", "/v1/lock/jobs", "token=1", "", ""},
		{"DELETE", "/v1/lock/jobs", "", "", ""},
		{"POST", "/v1/election/sched", "wait=100ms", "", `{"value":"n1","ttl":"10s"}`},
		{"POST", "/v1/election/sched", "", "", `{"value_base64":"AP8=","lease":"1"}`},
		{"DELETE", "/v1/election/sched", "token=1", "", ""},
		{"GET", "/v1/election/sched", "", "", ""},
		{"GET", "/v1/election/sched", "observe", "", ""},
		{"GET", "/v1/election/sched", "observe", "Accept: text/event-stream", ""},
		{"GET", "/v1/election/", "observe=1", "", ""},
		// Access tokens (the node runs without ACLs: the routes still work,
		// and a header is ignored).
		{"POST", "/v1/acl/tokens", "", "", `{"rules":{"read":["app/"],"admin":true}}`},
		{"POST", "/v1/acl/tokens", "", "", `{"rules":{"read":"x"}}`},
		{"GET", "/v1/acl/tokens", "", "Authorization: Bearer abc", ""},
		{"DELETE", "/v1/acl/tokens/1", "", "", ""},
		{"DELETE", "/v1/acl/tokens/x", "", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.headers, []byte(s.body))
	}

	node, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: f.TempDir(), MaxValueSize: 1 << 10})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		f.Fatal(err)
	}
	h := node.Handler()

	f.Fuzz(func(t *testing.T, method, path, query, headers string, body []byte) {
		req := buildRequest(method, path, query, headers, body)
		if req == nil {
			return // Go's HTTP server would refuse it before the handler
		}
		if mutatesMembership(req) {
			return // would take the only node's cluster apart
		}
		// A watch and a blocking read last until their context ends: give
		// them less time, so that the fuzzer gets on.
		bound := 2 * time.Second
		if isWatch(req) || isObserve(req) || req.URL.Query().Has("wait_index") {
			bound = 200 * time.Millisecond
		}
		if isHoldPost(req) {
			bound = 500 * time.Millisecond // a lock or a campaign blocks while the name is held
		}
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		req = req.WithContext(ctx)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkResponse(t, req, rec)
	})
}

// isWatch reports whether r is on the watch route.
func isWatch(r *http.Request) bool { return strings.HasPrefix(r.URL.EscapedPath(), "/v1/watch/") }

// isObserve reports whether r may be an election's observe stream.
func isObserve(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasPrefix(r.URL.EscapedPath(), "/v1/election/") && r.URL.Query().Has("observe")
}

// isHoldPost reports whether r may wait for a lock or an election.
func isHoldPost(r *http.Request) bool {
	p := r.URL.EscapedPath()
	return r.Method == http.MethodPost && (strings.HasPrefix(p, "/v1/lock/") || strings.HasPrefix(p, "/v1/election/"))
}

// checkObserveStream checks the body of an election's observe stream
// that opened: every NDJSON line (SSE event data) one whole
// kv.ElectionLineJSON with an index, or an error with a code.
func checkObserveStream(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	body := rec.Body.String()
	if body != "" && !strings.HasSuffix(body, "\n") {
		t.Fatalf("%s: stream does not end with a whole line: %q", what, body)
	}
	checkLine := func(data string) {
		var line struct {
			kv.ElectionLineJSON
			Error *kv.ErrorBody `json:"error"`
		}
		dec := json.NewDecoder(strings.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&line); err != nil || dec.More() {
			t.Fatalf("%s: line %q is not one election line: %v", what, data, err)
		}
		if line.Error != nil {
			if line.Error.Code == "" {
				t.Fatalf("%s: error line without a code: %q", what, data)
			}
			return
		}
		if line.Index == 0 {
			t.Fatalf("%s: line %q without an index", what, data)
		}
		if line.Leader != nil {
			if _, err := line.Leader.Hold(); err != nil || line.Leader.Token == 0 {
				t.Fatalf("%s: line %q: leader does not decode: %v", what, data, err)
			}
		}
	}
	switch ct := rec.Header().Get("Content-Type"); ct {
	case "application/x-ndjson":
		for l := range strings.Lines(body) {
			checkLine(strings.TrimSuffix(l, "\n"))
		}
	case "text/event-stream":
		for ev := range strings.SplitSeq(strings.TrimSuffix(body, "\n\n"), "\n\n") {
			if ev == "" {
				continue
			}
			if data, ok := strings.CutPrefix(ev, "event: error\ndata: "); ok {
				checkLine(data)
				continue
			}
			_, data, ok := strings.Cut(ev, "\ndata: ")
			if !ok || !strings.HasPrefix(ev, "id: ") {
				t.Fatalf("%s: malformed event %q", what, ev)
			}
			checkLine(data)
		}
	default:
		t.Fatalf("%s: observe stream with Content-Type %q", what, ct)
	}
}

// checkWatchStream checks the body of a watch that opened: every NDJSON
// line one whole JSON object, a response that decodes or an error with a
// code; in SSE every event an id (the index) and such data, or an error
// event.
func checkWatchStream(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	body := rec.Body.String()
	if body != "" && !strings.HasSuffix(body, "\n") {
		t.Fatalf("%s: stream does not end with a whole line: %q", what, body)
	}
	checkLine := func(data string) (index uint64, isErr bool) {
		var line kv.WatchLineJSON
		dec := json.NewDecoder(strings.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&line); err != nil || dec.More() {
			t.Fatalf("%s: line %q is not one watch object: %v", what, data, err)
		}
		if line.Error != nil {
			if line.Error.Code == "" {
				t.Fatalf("%s: error line without a code: %q", what, data)
			}
			return 0, true
		}
		if _, err := (kv.WatchResponseJSON{Index: line.Index, Events: line.Events}).WatchResponse(); err != nil || line.Index == 0 || line.Events == nil {
			t.Fatalf("%s: line %q does not decode to a response: %v", what, data, err)
		}
		return line.Index, false
	}
	switch ct := rec.Header().Get("Content-Type"); ct {
	case "application/x-ndjson":
		for l := range strings.Lines(body) {
			checkLine(strings.TrimSuffix(l, "\n"))
		}
	case "text/event-stream":
		if body != "" && !strings.HasSuffix(body, "\n\n") {
			t.Fatalf("%s: stream does not end with a whole event: %q", what, body)
		}
		for ev := range strings.SplitSeq(strings.TrimSuffix(body, "\n\n"), "\n\n") {
			if ev == "" {
				continue
			}
			if data, ok := strings.CutPrefix(ev, "event: error\ndata: "); ok {
				if _, isErr := checkLine(data); !isErr {
					t.Fatalf("%s: error event without an error: %q", what, ev)
				}
				continue
			}
			id, data, ok := strings.Cut(strings.TrimPrefix(ev, "id: "), "\ndata: ")
			if !ok || !strings.HasPrefix(ev, "id: ") {
				t.Fatalf("%s: malformed event %q", what, ev)
			}
			if index, isErr := checkLine(data); isErr || strconv.FormatUint(index, 10) != id {
				t.Fatalf("%s: event id %s for %q", what, id, data)
			}
		}
	default:
		t.Fatalf("%s: watch stream with Content-Type %q", what, ct)
	}
}

// buildRequest makes the request Go's server would pass to a handler, or
// nil when the server would answer 400 itself.
func buildRequest(method, path, query, headers string, body []byte) *http.Request {
	if !isToken(method) || !strings.HasPrefix(path, "/") {
		return nil
	}
	target := path
	if query != "" {
		target += "?" + query
	}
	if strings.ContainsAny(target, " \r\n\x00#") {
		return nil
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	hdr := http.Header{}
	for line := range strings.SplitSeq(headers, "\n") {
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		if !ok || !isToken(name) || !validHeaderValue(value) {
			return nil
		}
		name = textproto.CanonicalMIMEHeaderKey(name)
		if name == "Content-Length" || name == "Transfer-Encoding" || name == "Host" {
			continue // framing: the server sets these from the wire
		}
		hdr.Add(name, value)
	}
	return &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          "127.0.0.1:8001",
		RemoteAddr:    "127.0.0.1:40000",
		RequestURI:    target,
	}
}

// mutatesMembership reports requests that change the cluster itself
// (remove the node, add a phantom voter, hand leadership away): fuzzing
// them would leave a single-node cluster without a quorum.
func mutatesMembership(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return false
	}
	p, err := url.PathUnescape(r.URL.EscapedPath())
	if err != nil {
		p = r.URL.Path
	}
	return strings.Contains(p, "cluster")
}

// The 5xx answers a healthy node may give: no leader or shutting down
// (503), and deadlines (504): the fuzz request's own 2 s, or a write whose
// outcome the deadline left unknown.
var allowed5xx = map[string]bool{"no_leader": true, "shutting_down": true, "too_stale": true, "timeout": true, "outcome_unknown": true}

func checkResponse(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	what := req.Method + " " + req.RequestURI
	if got := rec.Header().Get(httpapi.HeaderNode); got != "n1" {
		t.Errorf("%s: %s = %q, want n1", what, httpapi.HeaderNode, got)
	}
	if rec.Code == http.StatusOK && isWatch(req) {
		checkWatchStream(t, what, rec)
		return
	}
	if rec.Code == http.StatusOK && isObserve(req) && rec.Header().Get("Content-Type") != "application/json" {
		checkObserveStream(t, what, rec)
		return
	}
	if rec.Code < 400 {
		return
	}
	var er kv.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Error.Code == "" {
		t.Fatalf("%s: status %d without a JSON error body with a code: %q", what, rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: error with Content-Type %q", what, ct)
	}
	if rec.Code >= 500 && (rec.Code != http.StatusServiceUnavailable && rec.Code != http.StatusGatewayTimeout || !allowed5xx[er.Error.Code]) {
		t.Fatalf("%s: %d %s", what, rec.Code, rec.Body.String())
	}
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
