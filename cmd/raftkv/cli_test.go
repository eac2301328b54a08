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
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
		{"watch"},
		{"watch", "a", "b"},
		{"watch", ""},
		{"watch", "--from-index", "-1", "k"},
		{"put", "--lease", "7", "--ttl", "30s", "k", "v"},
		{"put", "--lease", "abc", "k", "v"},
		{"put", "--lease", "0", "k", "v"},
		{"put", "--ttl", "-1s", "k", "v"},
		{"put", "--lock", "l", "k", "v"},
		{"put", "--fence-token", "3", "k", "v"},
		{"del", "--lock", "a/b", "--fence-token", "3", "k"},
		{"lease"},
		{"lease", "bogus"},
		{"lease", "grant"},
		{"lease", "grant", "soon"},
		{"lease", "grant", "-5s"},
		{"lease", "grant", "0s"},
		{"lease", "revoke", "-1"},
		{"lease", "revoke", "abc"},
		{"lease", "keepalive"},
		{"lease", "info", "0"},
		{"lease", "ls", "extra"},
		{"lock"},
		{"lock", "name"},
		{"lock", "--", "name"},
		{"lock", "a/b", "true"},
		{"lock", "--ttl", "0s", "n", "true"},
		{"lock", "--wait", "-1s", "n", "true"},
		{"elect", "n"},
		{"elect", "n", "v", "extra"},
		{"elect", "--observe", "n", "v"},
		{"elect", "", "v"},
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
	for _, cmd := range []string{"serve", "get", "put", "del", "ls", "cluster", "member", "txn", "watch", "lease", "lock", "elect", "recover", "health"} {
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

// raftkv watch against a scripted stream: the lines it prints, --json, and
// its exit on Ctrl-C (ctx canceled) and on compacted history.
func TestWatchCommand(t *testing.T) {
	stream := []kv.WatchResponse{
		{Index: 7, Events: []kv.Event{
			{Type: kv.EventPut, Record: kv.Record{Key: []byte("app/a b"), Value: []byte("1"), CreateIndex: 7, ModIndex: 7, Version: 1}},
			{Type: kv.EventPut, Record: kv.Record{Key: []byte("app/bin\xff"), Value: []byte("x\ny"), CreateIndex: 7, ModIndex: 7, Version: 1},
				Prev: &kv.Record{Value: []byte("old")}},
		}},
		{Index: 8},
		{Index: 9, Events: []kv.Event{{Type: kv.EventDelete, Record: kv.Record{Key: []byte("app/a b"), ModIndex: 9}}}},
	}
	var lines []byte
	for _, r := range stream {
		b, _ := json.Marshal(kv.EncodeWatchResponse(r))
		lines = append(append(lines, b...), '\n')
	}
	served := make(chan url.Values, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/watch/") { // the client's discovery
			reply(w, http.StatusNotFound, kv.ErrorResponse{Error: kv.ErrorBody{Code: "not_found"}})
			return
		}
		served <- r.URL.Query()
		if r.URL.Query().Get("from_index") == "1" {
			reply(w, http.StatusGone, kv.ErrorResponse{Error: kv.ErrorBody{Code: "compacted", Message: "compacted (test)", OldestIndex: 5, CurrentIndex: 9}})
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("X-Raft-Index", "6")
		_, _ = w.Write(lines)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a stream stays open
	}))
	defer srv.Close()

	watch := func(lines int, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := &syncBuffer{}
		done := make(chan error, 1)
		go func() { done <- run(ctx, append([]string{"watch", "--addr", srv.URL}, args...), nil, out, io.Discard) }()
		select {
		case q := <-served:
			if q.Has("prefix") != slices.Contains(args, "--prefix") || q.Has("prev_value") != slices.Contains(args, "--prev") {
				t.Errorf("watch %q sent %v", args, q)
			}
		case err := <-done:
			return out.String(), err
		}
		if lines == 0 {
			return out.String(), <-done
		}
		// Ctrl-C once the stream's last line is printed.
		if err := testkitEventually(func() bool { return strings.Count(out.String(), "\n") >= lines }); err != nil {
			t.Errorf("watch %q printed %q", args, out.String())
		}
		cancel()
		return out.String(), <-done
	}
	out, err := watch(3, "--prefix", "--prev", "app/")
	if want := "PUT app/a b 1\nPUT \"app/bin\\xff\" \"x\\ny\" (prev old)\nDELETE app/a b\n"; err != nil || out != want {
		t.Errorf("watch = %q, %v; want %q", out, err, want)
	}
	out, err = watch(3, "app/a b", "--json")
	if err != nil || out != string(lines) {
		t.Errorf("watch --json = %q, %v; want %q", out, err, lines)
	}
	_, err = watch(0, "--from-index", "1", "k")
	if err == nil || !strings.Contains(err.Error(), "no longer kept") || !strings.Contains(err.Error(), "keeps indexes 5 to 9") || exitCode(err, io.Discard) != 1 {
		t.Errorf("watch from a compacted index: %v", err)
	}
}

// testkitEventually polls f for up to 10s.
func testkitEventually(f func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(5 * time.Millisecond) // a poll interval; f is re-checked
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lock's command line: flags before NAME and between NAME and COMMAND are
// raftkv's; from the first other argument after NAME, or after --, they
// are the command's.
func TestLockCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		want []string // NAME, COMMAND, ARGS...
		ttl  time.Duration
	}{
		{[]string{"n", "true"}, []string{"n", "true"}, 10 * time.Second},
		{[]string{"n", "sh", "-c", "echo $X"}, []string{"n", "sh", "-c", "echo $X"}, 10 * time.Second},
		{[]string{"--ttl", "5s", "n", "--", "ls", "-l"}, []string{"n", "ls", "-l"}, 5 * time.Second},
		{[]string{"n", "--ttl=7s", "ls", "--ttl", "1s"}, []string{"n", "ls", "--ttl", "1s"}, 7 * time.Second},
		{[]string{"n", "--", "--odd-command"}, []string{"n", "--odd-command"}, 10 * time.Second},
	}
	for _, tt := range tests {
		c := newCommand("lock", "NAME COMMAND", "", io.Discard)
		ttl := c.fs.Duration("ttl", 10*time.Second, "")
		got, err := c.parseCommand(tt.args)
		if err != nil || !slices.Equal(got, tt.want) || *ttl != tt.ttl {
			t.Errorf("parseCommand(%q) = %q, %v, ttl %s; want %q, ttl %s", tt.args, got, err, *ttl, tt.want, tt.ttl)
		}
	}
}

// A command's exit status passes through raftkv's exit code, silently.
func TestCommandStatus(t *testing.T) {
	for _, tt := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 3", 3}, {"kill -TERM $$", 128 + 15}} {
		err := commandStatus(exec.Command("sh", "-c", tt.script).Run())
		var stderr bytes.Buffer
		if got := exitCode(err, &stderr); got != tt.want || stderr.Len() != 0 {
			t.Errorf("sh -c %q: exit %d (%q), want %d", tt.script, got, stderr.String(), tt.want)
		}
	}
}
