package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// step answers one request of a script.
type step func(w http.ResponseWriter, r *http.Request)

// seen is one request a script server received.
type seen struct {
	server string // "A", "B", ...
	method string
	path   string
	query  string
	key    string // Idempotency-Key
	at     time.Time
}

// script serves one or more test servers from a shared list of steps: the
// nth request gets the nth step, and the last step repeats.
type script struct {
	t     *testing.T
	mu    sync.Mutex
	steps []step
	reqs  []seen
	done  chan struct{} // closed at cleanup: releases hanging steps
}

func newScript(t *testing.T, steps ...step) *script {
	s := &script{t: t, steps: steps, done: make(chan struct{})}
	t.Cleanup(func() { close(s.done) })
	return s
}

// server starts a test server named name that follows the script.
func (s *script) server(name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, seen{server: name, method: r.Method, path: r.URL.Path, query: r.URL.RawQuery,
			key: r.Header.Get("Idempotency-Key"), at: time.Now()})
		st := s.steps[min(n, len(s.steps)-1)]
		s.mu.Unlock()
		st(w, r)
	}))
	s.t.Cleanup(srv.Close)
	return srv
}

func (s *script) seen() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

// ok answers like a server that applied (or served) the request.
func ok(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster":
		writeJSON(w, http.StatusOK, kv.ClusterInfo{ID: "n1"})
	case r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, kv.EncodeRecord(kv.Record{Key: []byte("k"), Value: []byte("v"), ModIndex: 7, Version: 1}, false))
	case r.Method == http.MethodPut:
		writeJSON(w, http.StatusOK, kv.PutResponse{Key: "k", ModIndex: 7, Version: 1})
	case r.Method == http.MethodDelete:
		writeJSON(w, http.StatusOK, kv.DeleteResponse{Deleted: 1, Index: 7})
	case r.URL.Path == "/v1/txn":
		writeJSON(w, http.StatusOK, kv.TxnResponse{Succeeded: true, Index: 7})
	default:
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

// fail answers with a JSON error (and Retry-After: 1 on a 503, as the
// server does).
func fail(status int, code string) step {
	return func(w http.ResponseWriter, r *http.Request) {
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		body := kv.ErrorBody{Code: code, Message: code + " (test)"}
		if code == "timeout" {
			body.AppliedIndex = 3
		}
		writeJSON(w, status, kv.ErrorResponse{Error: body})
	}
}

// raw answers with a body that is not a JSON error (a proxy's page).
func raw(status int) step {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "<html>upstream trouble</html>")
	}
}

// abort drops the connection after reading the request: it was sent, and
// no answer comes.
func abort(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }

// hang never answers (a paused node), until the client gives up.
func (s *script) hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.done:
	}
}

// outcome is what a test expects of a call: a retry that succeeds, or an
// error that wraps err after one attempt.
type outcome struct {
	retry bool
	err   error
}

var retried = outcome{retry: true}

func returns(err error) outcome { return outcome{err: err} }

// TestRetryDecision is the retry table of the package doc, row by row: the
// first attempt gets the row's answer, any retry a 200. A row that retries
// must send the second attempt to the other endpoint (and a keyed write
// must resend its key); a row that returns must make one attempt.
func TestRetryDecision(t *testing.T) {
	const dial = "dial" // the first endpoint refuses connections
	unknown := kv.ErrOutcomeUnknown
	rows := []struct {
		name  string
		first string // a step name, see below
		// read, read with MinIndex, write with a key (the default), write
		// without one.
		read, minIndexRead, keyed, unkeyed outcome
	}{
		{"connection never made", dial, retried, retried, retried, retried},
		{"connection lost after sending", "abort", retried, retried, retried, returns(unknown)},
		{"no answer within AttemptTimeout", "hang", retried, retried, retried, returns(unknown)},
		{"503 no_leader", "503 no_leader", retried, retried, retried, retried},
		{"503 not_leader", "503 not_leader", retried, retried, retried, retried},
		{"503 shutting_down", "503 shutting_down", retried, retried, retried, retried},
		{"503 too_stale", "503 too_stale", retried, retried, retried, returns(unknown)},
		{"504 timeout", "504 timeout", retried, retried, retried, retried},
		{"504 outcome_unknown", "504 outcome_unknown", retried, retried, retried, returns(unknown)},
		{"500 internal", "500 internal", retried, retried, retried, returns(unknown)},
		{"502, not JSON", "502 raw", retried, retried, retried, returns(unknown)},
		{"503, not JSON", "503 raw", retried, retried, retried, returns(unknown)},
		{"400 bad_request", "400 bad_request", returns(kv.ErrBadRequest), returns(kv.ErrBadRequest), returns(kv.ErrBadRequest), returns(kv.ErrBadRequest)},
		{"404 not_found", "404 not_found", returns(kv.ErrNotFound), returns(kv.ErrNotFound), returns(kv.ErrNotFound), returns(kv.ErrNotFound)},
		{"412 precondition_failed", "412 precondition_failed", returns(kv.ErrPreconditionFailed), returns(kv.ErrPreconditionFailed), returns(kv.ErrPreconditionFailed), returns(kv.ErrPreconditionFailed)},
		{"413 too_large", "413 too_large", returns(kv.ErrTooLarge), returns(kv.ErrTooLarge), returns(kv.ErrTooLarge), returns(kv.ErrTooLarge)},
		{"422 idempotency_key_reused", "422 idempotency_key_reused", returns(kv.ErrIdempotencyKeyReused), returns(kv.ErrIdempotencyKeyReused), returns(kv.ErrIdempotencyKeyReused), returns(kv.ErrIdempotencyKeyReused)},
	}
	calls := []struct {
		name string
		do   func(ctx context.Context, c *Client) error
		want func(row int) outcome
	}{
		{"read", func(ctx context.Context, c *Client) error {
			_, err := c.Get(ctx, []byte("k"), kv.ReadOptions{})
			return err
		}, func(i int) outcome { return rows[i].read }},
		{"read with MinIndex", func(ctx context.Context, c *Client) error {
			_, err := c.Get(ctx, []byte("k"), kv.ReadOptions{MinIndex: 5})
			return err
		}, func(i int) outcome { return rows[i].minIndexRead }},
		{"keyed write", func(ctx context.Context, c *Client) error {
			_, err := c.Put(ctx, []byte("k"), []byte("v"))
			return err
		}, func(i int) outcome { return rows[i].keyed }},
		{"unkeyed write", func(ctx context.Context, c *Client) error {
			_, err := c.Put(ctx, []byte("k"), []byte("v"), kv.WithoutIdempotencyKey())
			return err
		}, func(i int) outcome { return rows[i].unkeyed }},
	}
	for i, row := range rows {
		for _, call := range calls {
			t.Run(row.name+"/"+call.name, func(t *testing.T) {
				s := newScript(t)
				steps := map[string]step{
					dial: ok, "abort": abort, "hang": s.hang,
					"502 raw": raw(http.StatusBadGateway), "503 raw": raw(http.StatusServiceUnavailable),
				}
				first, isStep := steps[row.first]
				if !isStep {
					var status int
					var code string
					if _, err := fmt.Sscanf(row.first, "%d %s", &status, &code); err != nil {
						t.Fatalf("row %q: %v", row.first, err)
					}
					first = fail(status, code)
				}
				s.steps = []step{first, ok}
				a, b := s.server("A").URL, s.server("B").URL
				if row.first == dial {
					a = closedAddr(t)
					s.steps = []step{ok}
				}
				c := newClient(t, Config{Endpoints: []string{a, b}, AttemptTimeout: 150 * time.Millisecond})
				ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
				defer cancel()
				err := call.do(ctx, c)
				got := s.seen()
				want := call.want(i)
				if want.retry {
					if err != nil {
						t.Fatalf("error %v, want a retry that succeeds", err)
					}
					if row.first == dial {
						if len(got) != 1 || got[0].server != "B" {
							t.Fatalf("requests %+v, want one, to B", got)
						}
						return
					}
					if len(got) != 2 || got[0].server != "A" || got[1].server != "B" {
						t.Fatalf("requests %+v, want one to A, then one to B", got)
					}
					if got[0].key != got[1].key {
						t.Errorf("the retry sent Idempotency-Key %q, the first attempt %q", got[1].key, got[0].key)
					}
					return
				}
				if !errors.Is(err, want.err) {
					t.Fatalf("error %v, want one wrapping %q", err, want.err)
				}
				if want.err != unknown && errors.Is(err, unknown) {
					t.Errorf("error %v wraps kv.ErrOutcomeUnknown", err)
				}
				if len(got) != 1 {
					t.Fatalf("%d requests (%+v), want one: no retry", len(got), got)
				}
			})
		}
	}
}

// The judgement behind the table, on the cases the servers above cannot
// produce.
func TestJudge(t *testing.T) {
	sentErr := errors.New("connection reset by peer")
	tests := []struct {
		class  class
		err    error
		status int
		code   string
		want   verdict
	}{
		{read, sentErr, 0, "", safe},
		{keyedWrite, sentErr, 0, "", maybe},
		{unkeyedWrite, sentErr, 0, "", maybe},
		{read, nil, 504, "timeout", safe},
		{read, nil, 404, "not_found", done},
		{keyedWrite, nil, 204, "", done},
		{keyedWrite, nil, 503, "too_stale", maybe}, // not a write's answer: assume the worst
		{unkeyedWrite, nil, 504, "timeout", safe},
		{unkeyedWrite, nil, 501, "internal", maybe},
		{unkeyedWrite, nil, 409, "internal", done},
		{repeatableWrite, sentErr, 0, "", safe},
		{repeatableWrite, nil, 504, "outcome_unknown", safe},
		{repeatableWrite, nil, 404, "lease_not_found", done},
		{waitWrite, sentErr, 0, "", maybe},
		{waitWrite, nil, 504, "timeout", done}, // the wait ran out
		{waitWrite, nil, 503, "no_leader", safe},
		{waitWrite, nil, 504, "outcome_unknown", maybe},
	}
	for _, tt := range tests {
		if got := judge(tt.class, tt.err, tt.status, tt.code); got != tt.want {
			t.Errorf("judge(%s, %v, %d %s) = %d, want %d", tt.class, tt.err, tt.status, tt.code, got, tt.want)
		}
	}
}

// Every attempt of one write carries the same idempotency key; different
// writes carry different keys; the caller's key wins; an opted-out write
// and Join carry none.
func TestIdempotencyKeys(t *testing.T) {
	unknown := fail(http.StatusGatewayTimeout, "outcome_unknown")
	s := newScript(t, unknown, unknown, ok)
	a, b := s.server("A").URL, s.server("B").URL
	c := newClient(t, Config{Endpoints: []string{a, b}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keysOf := func(write func() error) []string {
		t.Helper()
		s.mu.Lock()
		s.reqs = nil
		s.mu.Unlock()
		if err := write(); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, r := range s.seen() {
			keys = append(keys, r.key)
		}
		return keys
	}
	writes := map[string]func() error{
		"put": func() error { _, err := c.Put(ctx, []byte("k"), []byte("v")); return err },
		"conditional put": func() error {
			_, err := c.Put(ctx, []byte("k"), []byte("v"), kv.IfModIndex(3))
			return err
		},
		"delete":        func() error { _, err := c.Delete(ctx, []byte("k")); return err },
		"delete prefix": func() error { _, err := c.DeletePrefix(ctx, []byte("p/")); return err },
		"txn": func() error {
			_, err := c.Txn(ctx, kv.Txn{Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("k"), Value: []byte("v")}}})
			return err
		},
	}
	used := map[string]string{}
	for name, write := range writes {
		keys := keysOf(write)
		if len(keys) != 3 {
			t.Fatalf("%s: %d attempts, want 3 (two 504 outcome_unknown, then 200)", name, len(keys))
		}
		if keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] {
			t.Errorf("%s: keys %q, want one key on every attempt", name, keys)
		}
		if len(keys[0]) < 16 || len(keys[0]) > kv.MaxIdempotencyKeySize {
			t.Errorf("%s: key %q: want 16 to %d bytes", name, keys[0], kv.MaxIdempotencyKeySize)
		}
		if other, dup := used[keys[0]]; dup {
			t.Errorf("%s and %s sent the same key %q", name, other, keys[0])
		}
		used[keys[0]] = name
		// The same write again is a new logical write: a new key.
		if again := keysOf(write); again[0] == keys[0] {
			t.Errorf("%s: a second call reused key %q", name, keys[0])
		}
	}

	mine := keysOf(func() error { _, err := c.Put(ctx, []byte("k"), []byte("v"), kv.Idempotent("mine")); return err })
	if strings.Join(mine, ",") != "mine,mine,mine" {
		t.Errorf("caller's key: sent %q", mine)
	}
	dctx := kv.WithIdempotencyKey(ctx, "from-ctx") //nolint:staticcheck // the deprecated path must keep working
	fromCtx := keysOf(func() error { _, err := c.Put(dctx, []byte("k"), []byte("v")); return err })
	if strings.Join(fromCtx, ",") != "from-ctx,from-ctx,from-ctx" {
		t.Errorf("deprecated context key: sent %q", fromCtx)
	}

	// Without a key: no header, and no retry after an unknown outcome.
	s.mu.Lock()
	s.reqs = nil
	s.mu.Unlock()
	_, err := c.Put(ctx, []byte("k"), []byte("v"), kv.WithoutIdempotencyKey())
	if got := s.seen(); !errors.Is(err, kv.ErrOutcomeUnknown) || len(got) != 1 || got[0].key != "" {
		t.Errorf("opted-out write: %v after %+v, want kv.ErrOutcomeUnknown after one attempt without a key", err, got)
	}
	s.mu.Lock()
	s.reqs = nil
	s.mu.Unlock()
	err = c.Join(ctx, kv.JoinRequest{ID: "n4"})
	if got := s.seen(); !errors.Is(err, kv.ErrOutcomeUnknown) || len(got) != 1 || got[0].key != "" {
		t.Errorf("join: %v after %+v, want kv.ErrOutcomeUnknown after one attempt without a key", err, got)
	}
}

// Once an attempt's outcome is unknown, only a success or the state
// machine's own answer about the request settles it; anything else ends
// the call with kv.ErrOutcomeUnknown, never a later "not applied".
func TestUnknownOutcomeSticks(t *testing.T) {
	noLeader := fail(http.StatusServiceUnavailable, "no_leader")
	tests := []struct {
		name        string
		steps       []step
		maxAttempts int
		want        error   // the error wraps it
		notWant     []error // and none of these
	}{
		{"504 outcome_unknown, then no_leader until the deadline", []step{fail(504, "outcome_unknown"), noLeader}, 0,
			kv.ErrOutcomeUnknown, []error{kv.ErrNoLeader}},
		{"connection lost, then 504 timeout until the deadline", []step{abort, fail(504, "timeout")}, 0,
			kv.ErrOutcomeUnknown, []error{kv.ErrTimeout}},
		{"500, then no_leader until attempts run out", []step{fail(500, "internal"), noLeader}, 3,
			kv.ErrOutcomeUnknown, []error{kv.ErrNoLeader, context.DeadlineExceeded}},
		{"504 outcome_unknown, then 400", []step{fail(504, "outcome_unknown"), fail(400, "bad_request")}, 0,
			kv.ErrOutcomeUnknown, []error{kv.ErrBadRequest}},
		{"504 outcome_unknown, then 412: settled", []step{fail(504, "outcome_unknown"), fail(412, "precondition_failed")}, 0,
			kv.ErrPreconditionFailed, []error{kv.ErrOutcomeUnknown}},
		{"504 outcome_unknown, then 422: settled", []step{fail(504, "outcome_unknown"), fail(422, "idempotency_key_reused")}, 0,
			kv.ErrIdempotencyKeyReused, []error{kv.ErrOutcomeUnknown}},
		// Until attempts run out, not the deadline: a deadline that ends an
		// attempt in flight leaves that attempt's outcome unknown (timing;
		// TestBackoffBoundedByContext covers the deadline).
		{"no_leader until attempts run out: not applied", []step{noLeader}, 3,
			kv.ErrNoLeader, []error{kv.ErrOutcomeUnknown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScript(t, tt.steps...)
			c := newClient(t, Config{Endpoints: []string{s.server("A").URL, s.server("B").URL}, MaxAttempts: tt.maxAttempts})
			timeout := 300 * time.Millisecond // the rows that run until the deadline
			if tt.maxAttempts > 0 {
				timeout = time.Minute // attempts run out long before
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_, err := c.Put(ctx, []byte("k"), []byte("v"))
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want one wrapping %q", err, tt.want)
			}
			for _, nw := range tt.notWant {
				if errors.Is(err, nw) {
					t.Errorf("error %v wraps %q", err, nw)
				}
			}
			if tt.want == kv.ErrOutcomeUnknown && kv.Code(err) != "outcome_unknown" {
				t.Errorf("kv.Code = %q", kv.Code(err))
			}
			if n := len(s.seen()); n < 2 || tt.maxAttempts > 0 && n != tt.maxAttempts {
				t.Errorf("%d attempts", n)
			}
		})
	}
}

// With every endpoint refusing connections, a call retries until its
// context ends and says the cluster was unreachable.
func TestAllEndpointsRefuse(t *testing.T) {
	c := newTestClient(t, closedAddr(t), closedAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kv.ErrOutcomeUnknown) {
		t.Errorf("Put = %v, want ErrUnreachable and context.DeadlineExceeded", err)
	}
	_, err = c.Get(ctx, []byte("k"), kv.ReadOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get = %v, want context.DeadlineExceeded", err)
	}
	one := newClient(t, Config{Endpoints: []string{closedAddr(t)}, MaxAttempts: 1})
	if _, err := one.Get(context.Background(), []byte("k"), kv.ReadOptions{}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Get with MaxAttempts 1 = %v, want ErrUnreachable", err)
	}
}

// The pauses between attempts grow from MinBackoff to MaxBackoff, and a
// call ends by its context's deadline, not after its next pause.
func TestBackoffBoundedByContext(t *testing.T) {
	s := newScript(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, kv.ErrorResponse{Error: kv.ErrorBody{Code: "no_leader"}}) // no Retry-After
	})
	const minB, maxB, limit = 10 * time.Millisecond, 160 * time.Millisecond, 700 * time.Millisecond
	c := newClient(t, Config{Endpoints: []string{s.server("A").URL}, MinBackoff: minB, MaxBackoff: maxB})
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	_, err := c.Put(ctx, []byte("k"), []byte("v"))
	took := time.Since(start)
	// The deadline ends either a pause between attempts (the last answer,
	// no_leader, is the error) or an attempt in flight (the write may have
	// reached the server, so its outcome is unknown); which one is timing.
	if either := errors.Is(err, kv.ErrNoLeader) || errors.Is(err, kv.ErrOutcomeUnknown); !errors.Is(err, context.DeadlineExceeded) || !either {
		t.Fatalf("error %v, want context.DeadlineExceeded with kv.ErrNoLeader or kv.ErrOutcomeUnknown", err)
	}
	if took > limit+500*time.Millisecond {
		t.Errorf("the call took %s with a %s deadline", took, limit)
	}
	got := s.seen()
	if len(got) < 4 {
		t.Fatalf("%d attempts in %s", len(got), limit)
	}
	for i := 1; i < len(got); i++ {
		d := minB << (i - 1)
		if i > 5 {
			d = maxB
		}
		d = min(d, maxB)
		if gap := got[i].at.Sub(got[i-1].at); gap < d/2 {
			t.Errorf("pause before retry %d: %s, want at least %s", i, gap, d/2)
		}
	}
	for n := 1; n < 12; n++ {
		d := min(minB<<(n-1), maxB)
		for range 20 {
			if b := c.backoff(n); b < d/2 || b > d {
				t.Fatalf("backoff(%d) = %s, want %s to %s", n, b, d/2, d)
			}
		}
	}
}

// A 503's Retry-After keeps the client off that endpoint for that long (up
// to MaxBackoff) while it tries the others.
func TestRetryAfter(t *testing.T) {
	s := newScript(t, fail(http.StatusServiceUnavailable, "no_leader"))
	const maxB = 250 * time.Millisecond
	c := newClient(t, Config{Endpoints: []string{s.server("A").URL, s.server("B").URL}, MinBackoff: time.Millisecond, MaxBackoff: maxB, MaxAttempts: 4})
	_, err := c.Get(context.Background(), []byte("k"), kv.ReadOptions{})
	if !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("error %v", err)
	}
	got := s.seen()
	if len(got) != 4 || got[0].server != "A" || got[1].server != "B" || got[2].server != "A" || got[3].server != "B" {
		t.Fatalf("requests %+v, want A, B, A, B", got)
	}
	// A again only once its Retry-After (1 s, cut to MaxBackoff) is over.
	if gap := got[2].at.Sub(got[0].at); gap < maxB {
		t.Errorf("A asked again after %s, before its Retry-After (cut to %s) was over", gap, maxB)
	}
}

// An endpoint that does not answer is given up after AttemptTimeout, a
// MinIndex read's too, and a read's ?wait fits inside its attempt.
func TestAttemptTimeout(t *testing.T) {
	for _, opts := range []kv.ReadOptions{{}, {Consistency: kv.Stale, MinIndex: 3}} {
		s := newScript(t)
		s.steps = []step{s.hang, ok}
		a, b := s.server("A").URL, s.server("B").URL
		const attempt = 100 * time.Millisecond
		c := newClient(t, Config{Endpoints: []string{a, b}, AttemptTimeout: attempt})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		_, err := c.Get(ctx, []byte("k"), opts)
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("Get(%+v): %v", opts, err)
		}
		got := s.seen()
		if len(got) != 2 || got[1].server != "B" {
			t.Fatalf("Get(%+v): requests %+v, want A (no answer), then B", opts, got)
		}
		if took < attempt || took > 30*time.Second {
			t.Errorf("Get(%+v): moved on after %s, want the attempt timeout", opts, took)
		}
		for _, r := range got {
			if _, w := cutWait(r.query); w <= 0 || w > attempt {
				t.Errorf("Get(%+v) sent %q: want a wait within the attempt timeout %s", opts, r.query, attempt)
			}
		}
	}
}

// A MinIndex read that no node can serve in time tries the nodes in turn
// until its context ends, and reports how far the last one got.
func TestMinIndexUntilDeadline(t *testing.T) {
	s := newScript(t, fail(http.StatusGatewayTimeout, "timeout")) // with applied_index 3
	// Generous bounds: the servers answer at once, but a loaded machine
	// under -race can take a while to schedule them.
	c := newClient(t, Config{Endpoints: []string{s.server("A").URL, s.server("B").URL}, AttemptTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := c.Get(ctx, []byte("k"), kv.ReadOptions{MinIndex: 99})
	var we *kv.WaitError
	if !errors.As(err, &we) || we.MinIndex != 99 || we.AppliedIndex != 3 || !errors.Is(err, kv.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v (%+v), want a *kv.WaitError for index 99 at 3 and context.DeadlineExceeded", err, we)
	}
	servers := map[string]bool{}
	for _, r := range s.seen() {
		servers[r.server] = true
	}
	if !servers["A"] || !servers["B"] {
		t.Errorf("requests %+v, want both endpoints asked", s.seen())
	}
}

// A write whose context ends while its connection is still being made was
// never sent: its error says so (the deadline, or ErrUnreachable), never
// an unknown outcome, even without an idempotency key.
func TestDeadlineDuringDialIsNotSent(t *testing.T) {
	hang := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done() // a dial that never completes (a black-holed address)
		return nil, ctx.Err()
	}}
	defer hang.CloseIdleConnections()
	c := newClient(t, Config{Endpoints: []string{"127.0.0.1:1"}, HTTPClient: &http.Client{Transport: hang}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, []byte("k"), []byte("v"), kv.WithoutIdempotencyKey())
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kv.ErrOutcomeUnknown) {
		t.Fatalf("Put = %v, want the deadline and not an unknown outcome", err)
	}
}

// A read whose context ends while a later attempt is still waiting for
// its answer reports the last answer it had (here the node's min_index
// timeout, with the index it had applied), not the cut-off attempt.
func TestReadCutByDeadlineKeepsLastAnswer(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			writeJSON(w, http.StatusGatewayTimeout, kv.ErrorResponse{Error: kv.ErrorBody{Code: "timeout", AppliedIndex: 3}})
			return
		}
		<-r.Context().Done() // the next attempt gets no answer in time
	}))
	defer srv.Close()
	c := newClient(t, Config{Endpoints: []string{srv.URL}, MinBackoff: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, []byte("k"), kv.ReadOptions{MinIndex: 99})
	var we *kv.WaitError
	if !errors.As(err, &we) || we.AppliedIndex != 3 || !errors.Is(err, kv.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the node's min_index timeout (applied 3) and the deadline", err)
	}
}
