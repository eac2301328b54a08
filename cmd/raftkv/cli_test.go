package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

func TestUsageErrors(t *testing.T) {
	tests := [][]string{
		nil,
		{"bogus"},
		{"get"},
		{"get", "a", "b"},
		{"get", "--bogus", "k"},
		{"get", "--consistency", "eventual", "k"},
		{"put"},
		{"put", "--if-match", "x", "k", "v"},
		{"put", "--if-match", "3", "--if-absent", "k", "v"},
		{"del", "--prefix", ""},
		{"del", "--prefix", "--if-match", "2", "k"},
		{"ls", "a", "b"},
		{"ls", "--limit", "-1"},
		{"cluster", "extra"},
		{"get", "--addr", "ftp://x", "k"},
		{"help", "bogus"},
	}
	for _, args := range tests {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
			continue
		}
		if got := exitCode(err, io.Discard); got != 2 {
			t.Errorf("run(%q): exit code %d, want 2", args, got)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"help", "get"}, {"ls", "-h"}, {"version"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, nil, &stdout, &stderr); err != nil {
			t.Errorf("run(%q) = %v", args, err)
		}
		if stdout.Len()+stderr.Len() == 0 {
			t.Errorf("run(%q) printed nothing", args)
		}
	}
	var stdout bytes.Buffer
	_ = run(context.Background(), []string{"help"}, nil, &stdout, io.Discard)
	for _, cmd := range []string{"serve", "get", "put", "del", "ls", "cluster"} {
		if !strings.Contains(stdout.String(), "raftkv "+cmd) {
			t.Errorf("help does not mention %q", cmd)
		}
	}
}

func TestClientCommands(t *testing.T) {
	srv := httptest.NewServer(newFakeServer())
	defer srv.Close()
	cli := func(stdin string, args ...string) (string, error) {
		t.Helper()
		var stdout bytes.Buffer
		args = append([]string{args[0], "--addr", srv.URL}, args[1:]...)
		err := run(context.Background(), args, strings.NewReader(stdin), &stdout, io.Discard)
		return stdout.String(), err
	}

	out, err := cli("", "put", "a/b c", "v1", "--timeout", "5s") // flags may follow the arguments
	if err != nil || !strings.Contains(out, `"key":"a/b c"`) || !strings.HasSuffix(out, "}\n") {
		t.Fatalf("put = %q, %v", out, err)
	}
	if out, err := cli("line1\nline2", "put", "--if-absent", "a/n"); err != nil || !strings.Contains(out, `"version":1`) {
		t.Fatalf("put from stdin = %q, %v", out, err)
	}
	if _, err := cli("bin\x00", "put", "a/z", "-"); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("", "get", "a/b c"); err != nil || out != "v1" {
		t.Errorf("get = %q, %v; want %q", out, err, "v1")
	}
	if out, err := cli("", "get", "a/n", "--json"); err != nil || !strings.Contains(out, `"value":"line1\nline2"`) {
		t.Errorf("get --json = %q, %v", out, err)
	}
	if _, err := cli("", "get", "--", "-missing"); err == nil || err.Error() != "key not found" {
		t.Errorf("get missing = %v, want key not found", err)
	}

	// Pages of one key each.
	want := "a/b c\tv1\na/n\t\"line1\\nline2\"\na/z\t\"bin\\x00\"\n"
	if out, err := cli("", "ls", "a/", "--limit", "0"); err != nil || out != want {
		t.Errorf("ls = %q, %v; want %q", out, err, want)
	}
	if out, err := cli("", "ls", "--keys-only", "--limit", "2"); err != nil || out != "a/b c\na/n\n" {
		t.Errorf("ls --keys-only --limit 2 = %q, %v", out, err)
	}
	if out, err := cli("", "del", "--prefix", "a/"); err != nil || out != `{"deleted":3,"index":4}`+"\n" {
		t.Errorf("del --prefix = %q, %v", out, err)
	}
}

// fakeServer speaks just enough of the HTTP API for the CLI tests. It lists
// one key per page to exercise paging.
type fakeServer struct {
	mu    sync.Mutex
	data  map[string]kv.Record
	index uint64
}

func newFakeServer() *fakeServer { return &fakeServer{data: map[string]kv.Record{}} }

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/kv/"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPut:
		value, _ := io.ReadAll(r.Body)
		s.index++
		rec := kv.Record{Key: []byte(key), Value: value, CreateIndex: s.index, ModIndex: s.index, Version: 1}
		s.data[key] = rec
		reply(w, http.StatusOK, kv.PutResponse{Key: key, CreateIndex: rec.CreateIndex, ModIndex: rec.ModIndex, Version: rec.Version})
	case r.Method == http.MethodDelete && q.Has("prefix"):
		var n int64
		for k := range s.data {
			if strings.HasPrefix(k, key) {
				delete(s.data, k)
				n++
			}
		}
		s.index++
		reply(w, http.StatusOK, kv.DeleteResponse{Deleted: n, Index: s.index})
	case r.Method == http.MethodGet && q.Has("prefix"):
		var keys []string
		for k := range s.data {
			if strings.HasPrefix(k, key) && k > q.Get("after") {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		resp := kv.ListResponse{Items: []kv.RecordJSON{}, Index: s.index}
		if len(keys) > 0 {
			resp.Items = append(resp.Items, kv.EncodeRecord(s.data[keys[0]], q.Has("keys_only")))
			resp.More = len(keys) > 1
			resp.Next, resp.NextBase64 = kv.EncodeBytes([]byte(keys[0]))
		}
		reply(w, http.StatusOK, resp)
	case r.Method == http.MethodGet:
		rec, ok := s.data[key]
		if !ok {
			reply(w, http.StatusNotFound, kv.ErrorResponse{Error: kv.ErrorBody{Code: "not_found", Message: "key " + strconv.Quote(key) + " not found"}})
			return
		}
		reply(w, http.StatusOK, kv.EncodeRecord(rec, false))
	default:
		http.Error(w, "not implemented", http.StatusNotImplemented)
	}
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
