package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The wire form of the lease, lock and election calls and of the write
// options that carry leases and fences, against a server that records
// each request and answers from a table.

type wireReq struct {
	method, path, query, body, contentType string
}

// wireServer answers each request with answer(r), recording it.
type wireServer struct {
	mu   sync.Mutex
	reqs []wireReq
	srv  *httptest.Server
}

func newWireServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *wireServer {
	ws := &wireServer{}
	ws.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ws.mu.Lock()
		ws.reqs = append(ws.reqs, wireReq{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(body), r.Header.Get("Content-Type")})
		ws.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(ws.srv.Close)
	return ws
}

func (ws *wireServer) last() wireReq {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.reqs[len(ws.reqs)-1]
}

func (ws *wireServer) count() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.reqs)
}

func TestLeaseWire(t *testing.T) {
	ws := newWireServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/lease":
			writeJSON(w, 200, map[string]any{"id": "7", "ttl": "10s", "index": 11})
		case "POST /v1/lease/7/keepalive":
			writeJSON(w, 200, map[string]any{"id": "7", "ttl": "10s", "index": 12})
		case "GET /v1/lease/7":
			writeJSON(w, 200, map[string]any{"id": "7", "ttl": "10s", "remaining": "7.2s", "keys": []string{"svc/a"}, "keys_base64": []string{"AP8="}, "index": 13})
		case "GET /v1/lease":
			writeJSON(w, 200, map[string]any{"leases": []any{map[string]any{"id": "7", "ttl": 10, "remaining": "3s"}, map[string]any{"id": "9", "ttl": "1m", "remaining": "59s"}}, "index": 14})
		case "DELETE /v1/lease/7":
			writeJSON(w, 200, map[string]any{"id": "7", "deleted": 2, "index": 15})
		default:
			writeJSON(w, 404, kv.ErrorResponse{Error: kv.ErrorBody{Code: "lease_not_found", Message: "lease 8 not found"}})
		}
	})
	c := newTestClient(t, ws.srv.URL)
	ctx := context.Background()

	l, err := c.Grant(ctx, 10*time.Second)
	if err != nil || l.ID != 7 || l.TTL != 10*time.Second || l.Index != 11 {
		t.Fatalf("Grant = %+v, %v", l, err)
	}
	if r := ws.last(); r.body != `{"ttl":"10s"}` || r.contentType != "application/json" {
		t.Errorf("grant sent %+v", r)
	}
	if l, err = c.KeepAliveOnce(ctx, 7); err != nil || l.Index != 12 {
		t.Fatalf("KeepAliveOnce = %+v, %v", l, err)
	}
	l, err = c.LeaseInfo(ctx, 7)
	if err != nil || l.Remaining != 7200*time.Millisecond || len(l.Keys) != 2 || string(l.Keys[0]) != "svc/a" || string(l.Keys[1]) != "\x00\xff" || l.Index != 13 {
		t.Fatalf("LeaseInfo = %+v, %v", l, err)
	}
	ls, err := c.Leases(ctx)
	if err != nil || len(ls) != 2 || ls[0].ID != 7 || ls[0].TTL != 10*time.Second || ls[0].Remaining != 3*time.Second || ls[1].TTL != time.Minute || ls[1].Index != 14 {
		t.Fatalf("Leases = %+v, %v", ls, err)
	}
	rr, err := c.Revoke(ctx, 7)
	if err != nil || rr != (kv.RevokeResult{ID: 7, Deleted: 2, Index: 15}) {
		t.Fatalf("Revoke = %+v, %v", rr, err)
	}
	for name, call := range map[string]func() error{
		"keepalive": func() error { _, err := c.KeepAliveOnce(ctx, 8); return err },
		"info":      func() error { _, err := c.LeaseInfo(ctx, 8); return err },
		"revoke":    func() error { _, err := c.Revoke(ctx, 8); return err },
	} {
		if err := call(); !errors.Is(err, kv.ErrLeaseNotFound) {
			t.Errorf("%s of an unknown lease: %v, want kv.ErrLeaseNotFound", name, err)
		}
	}
	n := ws.count()
	for name, call := range map[string]func() error{
		"grant 0":     func() error { _, err := c.Grant(ctx, 0); return err },
		"keepalive 0": func() error { _, err := c.KeepAliveOnce(ctx, 0); return err },
		"revoke 0":    func() error { _, err := c.Revoke(ctx, 0); return err },
		"info 0":      func() error { _, err := c.LeaseInfo(ctx, 0); return err },
	} {
		if err := call(); !errors.Is(err, kv.ErrBadRequest) {
			t.Errorf("%s: %v, want kv.ErrBadRequest", name, err)
		}
	}
	if ws.count() != n {
		t.Errorf("refused calls reached the server")
	}
}

func TestWriteOptionsWire(t *testing.T) {
	ws := newWireServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "PUT" && r.URL.Query().Get("lock") != "":
			writeJSON(w, 412, kv.ErrorResponse{Error: kv.ErrorBody{Code: "precondition_failed", Message: "lock l is not held with token 3"}})
		case r.Method == "PUT":
			lease := r.URL.Query().Get("lease")
			if r.URL.Query().Get("ttl") != "" {
				lease = "21"
			}
			writeJSON(w, 200, map[string]any{"key": "k", "create_index": 5, "mod_index": 5, "version": 1, "lease": lease})
		case r.Method == "DELETE":
			writeJSON(w, 200, kv.DeleteResponse{Deleted: 1, Index: 6})
		default:
			writeJSON(w, 200, kv.TxnResponse{Succeeded: true, Index: 7, Results: []kv.TxnOpResultJSON{}})
		}
	})
	c := newTestClient(t, ws.srv.URL)
	ctx := context.Background()
	res, err := c.Put(ctx, []byte("k"), []byte("v"), kv.WithLease(9))
	if err != nil || res.Lease != 9 || ws.last().query != "lease=9" {
		t.Errorf("put with a lease: %+v, %v, query %q", res, err, ws.last().query)
	}
	res, err = c.Put(ctx, []byte("k"), []byte("v"), kv.WithTTL(90*time.Second))
	if err != nil || res.Lease != 21 || ws.last().query != "ttl=1m30s" {
		t.Errorf("put with a ttl: %+v, %v, query %q", res, err, ws.last().query)
	}
	_, err = c.Put(ctx, []byte("k"), []byte("v"), kv.WithFence("my lock", 3))
	var pe *kv.PreconditionError
	if !errors.Is(err, kv.ErrPreconditionFailed) || ws.last().query != "lock=my+lock&token=3" {
		t.Errorf("fenced put: %v (%T), query %q", err, pe, ws.last().query)
	}
	if _, err := c.Delete(ctx, []byte("k"), kv.WithFence("l", 4)); err != nil || ws.last().query != "lock=l&token=4" {
		t.Errorf("fenced delete: %v, query %q", err, ws.last().query)
	}
	txn := kv.Txn{
		Compare: []kv.Compare{kv.Fence{Lock: "l", Token: 4}.Compare()},
		Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("a"), Value: []byte("1"), Lease: 9}, {Type: kv.TxnPut, Key: []byte("b"), Value: []byte("2")}},
	}
	if _, err := c.Txn(ctx, txn, kv.WithFence("l", 4)); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Compare []map[string]any `json:"compare"`
		Success []map[string]any `json:"success"`
	}
	if err := json.Unmarshal([]byte(ws.last().body), &body); err != nil {
		t.Fatal(err)
	}
	if ws.last().query != "lock=l&token=4" || body.Success[0]["lease"] != "9" || body.Success[1]["lease"] != nil ||
		body.Compare[0]["target"] != "lock" || body.Compare[0]["key"] != "l" || body.Compare[0]["value"] != 4.0 {
		t.Errorf("txn sent %s ?%s", ws.last().body, ws.last().query)
	}

	n := ws.count()
	for name, call := range map[string]func() error{
		"lease and ttl": func() error {
			_, err := c.Put(ctx, []byte("k"), nil, kv.WithLease(1), kv.WithTTL(time.Minute))
			return err
		},
		"negative ttl":  func() error { _, err := c.Put(ctx, []byte("k"), nil, kv.WithTTL(-time.Second)); return err },
		"delete lease":  func() error { _, err := c.Delete(ctx, []byte("k"), kv.WithLease(1)); return err },
		"txn ttl":       func() error { _, err := c.Txn(ctx, kv.Txn{}, kv.WithTTL(time.Minute)); return err },
		"fence token 0": func() error { _, err := c.Put(ctx, []byte("k"), nil, kv.WithFence("l", 0)); return err },
		"fence a/b":     func() error { _, err := c.Put(ctx, []byte("k"), nil, kv.WithFence("a/b", 1)); return err },
	} {
		if err := call(); !errors.Is(err, kv.ErrBadRequest) {
			t.Errorf("%s: %v, want kv.ErrBadRequest", name, err)
		}
	}
	if ws.count() != n {
		t.Errorf("refused calls reached the server")
	}
}

func holdAnswer(w http.ResponseWriter, r *http.Request, token uint64) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	h := kv.Hold{Name: r.PathValue("name"), Token: token, Lease: 5}
	if strings.HasPrefix(r.URL.Path, "/v1/election/") {
		h.Key = []byte(kv.ElectionPrefix + h.Name + "/5")
		h.Value = []byte("v1")
		writeJSON(w, 200, kv.EncodeHold(h, true))
		return
	}
	h.Key = []byte(kv.LockPrefix + h.Name + "/5")
	writeJSON(w, 200, kv.EncodeHold(h, false))
}

func TestLockWire(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/lock/{name}", func(w http.ResponseWriter, r *http.Request) { holdAnswer(w, r, 40) })
	mux.HandleFunc("POST /v1/election/{name}", func(w http.ResponseWriter, r *http.Request) { holdAnswer(w, r, 41) })
	mux.HandleFunc("DELETE /v1/lock/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "40" {
			writeJSON(w, 412, kv.ErrorResponse{Error: kv.ErrorBody{Code: "precondition_failed", Message: "not held"}})
			return
		}
		writeJSON(w, 200, map[string]any{"index": 50})
	})
	mux.HandleFunc("DELETE /v1/election/{name}", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"index": 51}) })
	mux.HandleFunc("GET /v1/election/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "none" {
			writeJSON(w, 404, kv.ErrorResponse{Error: kv.ErrorBody{Code: "no_election_leader", Message: "none"}})
			return
		}
		holdAnswer(w, r, 41)
	})
	ws := newWireServer(t, mux.ServeHTTP)
	c := newTestClient(t, ws.srv.URL)
	ctx := context.Background()

	h, err := c.Lock(ctx, "jobs é", kv.LockOptions{TTL: 10 * time.Second})
	if err != nil || h.Token != 40 || h.Name != "jobs é" || string(h.Key) != kv.LockPrefix+"jobs é/5" || h.Lease != 5 {
		t.Fatalf("Lock = %+v, %v", h, err)
	}
	if r := ws.last(); r.path != "/v1/lock/jobs%20%C3%A9" || r.body != `{"ttl":"10s"}` || r.query != "" {
		t.Errorf("lock sent %+v", r)
	}
	// A deadline, or a Wait, becomes ?wait: nine tenths of what is left.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Lock(dctx, "j", kv.LockOptions{Lease: 5, Wait: time.Minute}); err != nil {
		t.Fatal(err)
	}
	r := ws.last()
	_, wait := cutWait("x&" + r.query)
	if r.body != `{"lease":"5"}` || wait < 8*time.Second || wait > 9*time.Second {
		t.Errorf("lock with a deadline sent %+v (wait %s)", r, wait)
	}
	if _, err := c.Lock(ctx, "j", kv.LockOptions{Lease: 5, Wait: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, wait := cutWait("x&" + ws.last().query); wait <= 2*time.Second || wait > 3*time.Second {
		t.Errorf("lock with Wait 3s sent %q", ws.last().query)
	}

	if idx, err := c.Unlock(ctx, "j", 40); err != nil || idx != 50 || ws.last().query != "token=40" {
		t.Errorf("Unlock = %d, %v (query %q)", idx, err, ws.last().query)
	}
	if _, err := c.Unlock(ctx, "j", 39); !errors.Is(err, kv.ErrPreconditionFailed) {
		t.Errorf("Unlock with a stale token: %v", err)
	}
	h, err = c.Campaign(ctx, "e", []byte("v1"), kv.LockOptions{Lease: 5})
	if err != nil || h.Token != 41 || string(h.Value) != "v1" {
		t.Fatalf("Campaign = %+v, %v", h, err)
	}
	if r := ws.last(); r.body != `{"lease":"5","value":"v1"}` {
		t.Errorf("campaign sent %+v", r)
	}
	if _, err := c.Campaign(ctx, "e", []byte{0xff}, kv.LockOptions{Lease: 5}); err != nil || ws.last().body != `{"lease":"5","value_base64":"/w=="}` {
		t.Errorf("campaign with bytes: %v, sent %s", err, ws.last().body)
	}
	if idx, err := c.Resign(ctx, "e", 41); err != nil || idx != 51 {
		t.Errorf("Resign = %d, %v", idx, err)
	}
	if h, err := c.ElectionLeader(ctx, "e"); err != nil || h.Token != 41 || string(h.Value) != "v1" {
		t.Errorf("ElectionLeader = %+v, %v", h, err)
	}
	if _, err := c.ElectionLeader(ctx, "none"); !errors.Is(err, kv.ErrNoElectionLeader) {
		t.Errorf("ElectionLeader without one: %v", err)
	}
	n := ws.count()
	for name, call := range map[string]func() error{
		"lock no lease":     func() error { _, err := c.Lock(ctx, "j", kv.LockOptions{}); return err },
		"lock both":         func() error { _, err := c.Lock(ctx, "j", kv.LockOptions{Lease: 1, TTL: time.Second}); return err },
		"lock empty name":   func() error { _, err := c.Lock(ctx, "", kv.LockOptions{Lease: 1}); return err },
		"campaign slash":    func() error { _, err := c.Campaign(ctx, "a/b", nil, kv.LockOptions{Lease: 1}); return err },
		"unlock token 0":    func() error { _, err := c.Unlock(ctx, "j", 0); return err },
		"leader empty name": func() error { _, err := c.ElectionLeader(ctx, ""); return err },
	} {
		if err := call(); !errors.Is(err, kv.ErrBadRequest) {
			t.Errorf("%s: %v, want kv.ErrBadRequest", name, err)
		}
	}
	if ws.count() != n {
		t.Errorf("refused calls reached the server")
	}
}

// How the retry table treats the lease and lock calls: a keepalive is
// resent after a lost answer; a grant is not (unknown outcome); a lock
// outlives the attempt timeout, returns 504 timeout as the answer, and a
// lock whose connection breaks while it waits is an unknown outcome.
func TestLeaseAndLockRetries(t *testing.T) {
	var calls atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/lease/{id}/keepalive", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			panic(http.ErrAbortHandler) // sent, answer lost
		}
		writeJSON(w, 200, map[string]any{"id": r.PathValue("id"), "ttl": "10s", "index": 3})
	})
	mux.HandleFunc("POST /v1/lease", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("POST /v1/lock/slow", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-time.After(300 * time.Millisecond) // longer than the attempt timeout: the wait for the lock
		holdAnswer(w, r, 9)
	})
	mux.HandleFunc("POST /v1/lock/busy", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeJSON(w, 504, kv.ErrorResponse{Error: kv.ErrorBody{Code: "timeout", Message: "not acquired within 1s"}})
	})
	mux.HandleFunc("POST /v1/lock/cut", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		panic(http.ErrAbortHandler)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := newClient(t, Config{Endpoints: []string{srv.URL}, AttemptTimeout: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tests := []struct {
		name  string
		call  func() error
		check func(error) bool
		calls int64
	}{
		{"keepalive resent", func() error { _, err := c.KeepAliveOnce(ctx, 3); return err }, func(err error) bool { return err == nil }, 2},
		{"grant not resent", func() error { _, err := c.Grant(ctx, time.Second); return err },
			func(err error) bool { return errors.Is(err, kv.ErrOutcomeUnknown) }, 1},
		{"lock outlives the attempt timeout", func() error { _, err := c.Lock(ctx, "slow", kv.LockOptions{Lease: 5}); return err },
			func(err error) bool { return err == nil }, 1},
		{"lock wait ran out", func() error { _, err := c.Lock(ctx, "busy", kv.LockOptions{Lease: 5, Wait: time.Second}); return err },
			func(err error) bool { return errors.Is(err, kv.ErrTimeout) && !errors.Is(err, kv.ErrOutcomeUnknown) }, 1},
		{"lock cut while waiting", func() error { _, err := c.Lock(ctx, "cut", kv.LockOptions{Lease: 5}); return err },
			func(err error) bool { return errors.Is(err, kv.ErrOutcomeUnknown) }, 1},
		{"lock with a wait cut while waiting", func() error {
			_, err := c.Lock(ctx, "cut", kv.LockOptions{TTL: time.Second, Wait: time.Second})
			return err
		},
			func(err error) bool { return errors.Is(err, kv.ErrOutcomeUnknown) }, 1},
	}
	for _, tt := range tests {
		calls.Store(0)
		if err := tt.call(); !tt.check(err) || calls.Load() != tt.calls {
			t.Errorf("%s: %v after %d attempts, want %d", tt.name, err, calls.Load(), tt.calls)
		}
	}
}

// ObserveElection resumes on another endpoint when its stream breaks and
// yields only changes of leader, in order.
func TestObserveElectionResumes(t *testing.T) {
	line := func(token uint64, value string, index uint64) string {
		l := kv.ElectionLineJSON{Index: index}
		if token > 0 {
			h := kv.EncodeHold(kv.Hold{Name: "e", Key: []byte("k"), Token: token, Lease: 2, Value: []byte(value), Index: token}, true)
			l.Leader = &h
		}
		b, _ := json.Marshal(l)
		return string(b) + "\n"
	}
	var mu sync.Mutex
	var served []string
	stream := func(name string, lines ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			served = append(served, name+"?"+r.URL.RawQuery)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/x-ndjson")
			for _, l := range lines {
				_, _ = io.WriteString(w, l)
				w.(http.Flusher).Flush()
			}
			switch name {
			case "a":
				panic(http.ErrAbortHandler) // the stream breaks
			case "b":
				_, _ = io.WriteString(w, `{"error":{"code":"shutting_down","message":"node stops"}}`+"\n")
				return
			case "d":
				_, _ = io.WriteString(w, `{"error":{"code":"internal","message":"broken"}}`+"\n")
				return
			}
			<-r.Context().Done()
		}
	}
	a := httptest.NewServer(stream("a", line(0, "", 3), line(5, "x", 5)))
	t.Cleanup(a.Close)
	// b is behind at first (index 4: no leader), then has the same
	// leader, then new ones.
	b := httptest.NewServer(stream("b", line(0, "", 4), line(5, "x", 6), line(8, "y", 8)))
	t.Cleanup(b.Close)
	// b shuts down after y: c goes on.
	cs := httptest.NewServer(stream("c", line(8, "y", 8), line(0, "", 9)))
	t.Cleanup(cs.Close)
	c := newTestClient(t, a.URL, b.URL, cs.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	for h, err := range c.ObserveElection(ctx, "e") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(h.Value)+"/"+strings.Repeat("*", int(h.Token)))
		if len(got) == 4 {
			break
		}
	}
	if want := []string{"/", "x/*****", "y/********", "/"}; !slices.Equal(got, want) {
		t.Errorf("observed %q, want %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(served, []string{"a?observe=true", "b?observe=true", "c?observe=true"}) {
		t.Errorf("streams served: %q", served)
	}
	served = nil
	mu.Unlock()

	// Any other error line ends the observation with it.
	d := httptest.NewServer(stream("d", line(3, "z", 3)))
	t.Cleanup(d.Close)
	var errs []error
	for h, err := range newTestClient(t, d.URL).ObserveElection(ctx, "e") {
		if err != nil {
			errs = append(errs, err)
		} else if h.Token != 3 {
			t.Errorf("observed %+v", h)
		}
	}
	if len(errs) != 1 || kv.Code(errs[0]) != kv.CodeInternal || !strings.Contains(errs[0].Error(), "broken") {
		t.Errorf("observation ended with %v, want one internal error", errs)
	}
	mu.Lock()
}
