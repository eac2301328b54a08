package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

func TestEscapeKey(t *testing.T) {
	tests := []struct {
		key  string
		want string // "" means: only check the round trip
	}{
		{"a", "a"},
		{"a/b/c", "a/b/c"},
		{"a b", "a%20b"},
		{"100%", "100%25"},
		{"what?", "what%3F"},
		{"x#y", "x%23y"},
		{"a+b&c=d", "a%2Bb%26c%3Dd"},
		{"-._~", "-._~"},
		{"\x00\xff", "%00%FF"},
		{"ключ/日本", ""},
		{"a//b", "a/%2Fb"},
		{"/lead", "%2Flead"},
		{"trail/", "trail/"},
		{"..", "%2E%2E"},
		{"a/./b/../c", "a/%2E/b/%2E%2E/c"},
		{"a.b/.c/..d", "a.b/.c/..d"},
		{"///", "%2F%2F%2F"},
	}
	for _, tt := range tests {
		got := EscapeKey([]byte(tt.key))
		if tt.want != "" && got != tt.want {
			t.Errorf("EscapeKey(%q) = %q, want %q", tt.key, got, tt.want)
		}
		back, err := url.PathUnescape(got)
		if err != nil || back != tt.key {
			t.Errorf("PathUnescape(EscapeKey(%q)) = %q, %v", tt.key, back, err)
		}
	}
	// Every byte value round-trips.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	if back, err := url.PathUnescape(EscapeKey(all)); err != nil || back != string(all) {
		t.Errorf("all bytes: round trip failed: %v", err)
	}
}

// TestKeyThroughServeMux checks that escaped keys survive the path cleaning
// of a plain http.ServeMux (which would otherwise redirect "a//b" to "a/b").
func TestKeyThroughServeMux(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/kv/{key...}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, kv.EncodeRecord(kv.Record{Key: []byte(r.PathValue("key")), Value: []byte("v")}, false))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	c.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return errors.New("redirected") }
	for _, key := range []string{"a", "a//b", "/x", "a/../b", "./a", "..", "a/.", "sp ace?#%", "\x00\xff", "日本/語"} {
		rec, err := c.Get(context.Background(), []byte(key), kv.ReadOptions{})
		if err != nil {
			t.Errorf("Get(%q): %v", key, err)
			continue
		}
		if string(rec.Key) != key || string(rec.Value) != "v" {
			t.Errorf("Get(%q) = key %q value %q", key, rec.Key, rec.Value)
		}
	}
}

func TestDecodeError(t *testing.T) {
	resp := &http.Response{
		Status:     "412 Precondition Failed",
		StatusCode: http.StatusPreconditionFailed,
		Header:     http.Header{"Etag": {`"7"`}},
		Body:       io.NopCloser(strings.NewReader(`{"error":{"code":"precondition_failed","message":"mod_index is 7, not 5"}}`)),
	}
	err := DecodeError(resp)
	if !errors.Is(err, kv.ErrPreconditionFailed) {
		t.Fatalf("DecodeError = %v, want it to wrap kv.ErrPreconditionFailed", err)
	}
	var we *kv.WireError
	if !errors.As(err, &we) || we.ETag != `"7"` || we.Message != "mod_index is 7, not 5" || we.Code != "precondition_failed" {
		t.Errorf("DecodeError = %#v", err)
	}

	resp = &http.Response{
		Status:     "502 Bad Gateway",
		StatusCode: http.StatusBadGateway,
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader("<html>upstream down</html>\n")),
	}
	err = DecodeError(resp)
	if !errors.As(err, &we) || we.Code != kv.CodeInternal || !strings.Contains(we.Message, "502 Bad Gateway") {
		t.Errorf("DecodeError(non-JSON) = %#v", err)
	}
	if got := kv.Code(err); got != kv.CodeInternal {
		t.Errorf("kv.Code = %q, want %q", got, kv.CodeInternal)
	}
}

func TestWireFormat(t *testing.T) {
	var gotPath, gotQuery, gotIfMatch, gotIfNone, gotBody, gotExtra string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery = r.URL.EscapedPath(), r.URL.RawQuery
		gotIfMatch, gotIfNone = r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
		gotExtra = r.Header.Get("X-Extra")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		switch {
		case r.Method == http.MethodPut:
			writeJSON(w, http.StatusOK, kv.PutResponse{Key: "k", CreateIndex: 3, ModIndex: 9, Version: 2})
		case r.Method == http.MethodDelete:
			writeJSON(w, http.StatusOK, kv.DeleteResponse{Deleted: 4, Index: 10})
		case r.URL.Path == "/v1/cluster":
			writeJSON(w, http.StatusOK, kv.ClusterInfo{ID: "n1", LeaderID: "n1"})
		case r.URL.Path == "/v1/cluster/nodes":
			w.WriteHeader(http.StatusOK)
		case r.URL.Query().Has("prefix"):
			_, next := kv.EncodeBytes([]byte{0xff})
			writeJSON(w, http.StatusOK, kv.ListResponse{
				Items:      []kv.RecordJSON{kv.EncodeRecord(kv.Record{Key: []byte{'p', 0xff}, Value: []byte("x")}, false)},
				More:       true,
				NextBase64: next,
				Index:      11,
			})
		default:
			writeJSON(w, http.StatusNotFound, kv.ErrorResponse{Error: kv.ErrorBody{Code: "not_found", Message: `key "k" not found`}})
		}
	}))
	defer srv.Close()
	c, err := New(Config{Endpoints: []string{strings.TrimPrefix(srv.URL, "http://")}, Header: http.Header{"X-Extra": {"1"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	res, err := c.Put(ctx, []byte("k"), []byte("val"), kv.IfModIndex(5))
	if err != nil || string(res.Key) != "k" || res.ModIndex != 9 || res.Version != 2 {
		t.Errorf("PutIf = %+v, %v", res, err)
	}
	if gotPath != "/v1/kv/k" || gotIfMatch != `"5"` || gotBody != "val" || gotExtra != "1" {
		t.Errorf("PutIf sent path %q If-Match %q body %q X-Extra %q", gotPath, gotIfMatch, gotBody, gotExtra)
	}
	if _, err := c.Put(ctx, []byte("k"), nil, kv.IfAbsent()); err != nil || gotIfNone != "*" {
		t.Errorf("PutIf(IfAbsent): %v, If-None-Match %q", err, gotIfNone)
	}

	_, err = c.Get(ctx, []byte("k"), kv.ReadOptions{Consistency: kv.Stale, MaxStale: 2e9})
	if !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get = %v, want kv.ErrNotFound", err)
	}
	if gotQuery != "format=json&consistency=stale&max_stale=2s" {
		t.Errorf("Get query = %q", gotQuery)
	}

	dr, err := c.DeletePrefix(ctx, []byte("a b/"))
	if err != nil || dr.Deleted != 4 || dr.Index != 10 || gotPath != "/v1/kv/a%20b/" || gotQuery != "prefix" {
		t.Errorf("DeletePrefix = %+v, %v; sent %q ? %q", dr, err, gotPath, gotQuery)
	}

	lr, err := c.List(ctx, kv.ListOptions{Limit: 1, After: []byte("p/"), KeysOnly: true})
	if err != nil || len(lr.Items) != 1 || string(lr.Items[0].Key) != "p\xff" || !lr.More || string(lr.Next) != "\xff" || lr.Index != 11 {
		t.Errorf("List = %+v, %v", lr, err)
	}
	if gotPath != "/v1/kv/" || gotQuery != "prefix&limit=1&after=p%2F&keys_only" {
		t.Errorf("List sent %q ? %q", gotPath, gotQuery)
	}

	if info, err := c.Cluster(ctx); err != nil || info.LeaderID != "n1" {
		t.Errorf("Cluster = %+v, %v", info, err)
	}
	if err := c.Join(ctx, kv.JoinRequest{ID: "n4", RaftAddr: "h:9004", APIAddr: "h:8004"}); err != nil {
		t.Errorf("Join: %v", err)
	}
	var jr kv.JoinRequest
	if err := json.Unmarshal([]byte(gotBody), &jr); err != nil || jr.ID != "n4" {
		t.Errorf("Join sent %q", gotBody)
	}

	if _, err := c.Put(ctx, nil, []byte("v")); !errors.Is(err, kv.ErrInvalidKey) {
		t.Errorf("Put(empty key) = %v, want kv.ErrInvalidKey", err)
	}
}

// closedAddr returns the URL of a port nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// countingServer answers every request with a put response and counts them.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		writeJSON(w, http.StatusOK, kv.EncodeRecord(kv.Record{Key: []byte("k")}, false))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// abortingServer drops every connection after reading the request.
func abortingServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFailoverOnDialError(t *testing.T) {
	live, hits := countingServer(t)
	c := newTestClient(t, closedAddr(t), live.URL)
	ctx := context.Background()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got := c.current.Load(); got != 1 {
		t.Errorf("current endpoint = %d, want 1", got)
	}
	if _, err := c.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got := hits.Load(); got != 2 {
		t.Errorf("live server saw %d requests, want 2", got)
	}
}

func TestAllEndpointsRefuse(t *testing.T) {
	c := newTestClient(t, closedAddr(t), closedAddr(t))
	_, err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, ErrUnreachable) || errors.Is(err, kv.ErrOutcomeUnknown) {
		t.Errorf("Put = %v, want ErrUnreachable", err)
	}
	_, err = c.Get(context.Background(), []byte("k"), kv.ReadOptions{})
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("Get = %v, want ErrUnreachable", err)
	}
}

func TestWriteNotRetriedAfterSend(t *testing.T) {
	live, hits := countingServer(t)
	c := newTestClient(t, abortingServer(t).URL, live.URL)
	ctx := context.Background()
	for name, write := range map[string]func() error{
		"put":    func() error { _, err := c.Put(ctx, []byte("k"), []byte("v")); return err },
		"delete": func() error { _, err := c.Delete(ctx, []byte("k")); return err },
		"join":   func() error { return c.Join(ctx, kv.JoinRequest{ID: "n2"}) },
	} {
		if err := write(); !errors.Is(err, kv.ErrOutcomeUnknown) {
			t.Errorf("%s = %v, want kv.ErrOutcomeUnknown", name, err)
		}
	}
	if got := hits.Load(); got != 0 {
		t.Errorf("a write was retried: the second endpoint saw %d requests", got)
	}
	// A read may move on.
	if _, err := c.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil {
		t.Errorf("Get: %v", err)
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("second endpoint saw %d requests, want 1", got)
	}
}

func TestNewValidates(t *testing.T) {
	for _, eps := range [][]string{nil, {""}, {"ftp://h:1"}, {"http://h:1?x=1"}} {
		if _, err := New(Config{Endpoints: eps}); err == nil {
			t.Errorf("New(%q) succeeded", eps)
		}
	}
	c, err := New(Config{Endpoints: []string{"127.0.0.1:8001", "https://h:8002/"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(c.endpoints, " "), "http://127.0.0.1:8001 https://h:8002"; got != want {
		t.Errorf("endpoints = %q, want %q", got, want)
	}
}

func newTestClient(t *testing.T, endpoints ...string) *Client {
	t.Helper()
	c, err := New(Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
