package forward

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
	"github.com/raftkv/raftkv/store"
)

// leader is an HTTP endpoint that answers batches the way answer says.
func leader(t *testing.T, answer func(w http.ResponseWriter, cmds []store.Command)) (addr string, requests *atomic.Int64) {
	t.Helper()
	requests = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Path != Path || r.Header.Get("Content-Type") != ContentType || r.Header.Get("X-Test") != "yes" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		body, _ := io.ReadAll(r.Body)
		cmds, _, err := DecodeRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer(w, cmds)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), requests
}

func newBatcher(t *testing.T, addr string) *Batcher {
	t.Helper()
	b := New(Config{
		Leader: func() string { return addr },
		Client: &http.Client{},
		Header: http.Header{"X-Test": {"yes"}},
	})
	t.Cleanup(b.Close)
	return b
}

func put(key string) *store.Command {
	return &store.Command{Op: store.OpPut, Key: []byte(key), Value: []byte("v")}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Concurrent writes share requests, and each gets its own outcome.
func TestBatcherGathersAndAnswersEach(t *testing.T) {
	release := make(chan struct{})
	var received atomic.Int64
	addr, requests := leader(t, func(w http.ResponseWriter, cmds []store.Command) {
		received.Add(int64(len(cmds)))
		<-release // hold the first batches so the others queue up
		outs := make([]Outcome, len(cmds))
		for i, c := range cmds {
			outs[i] = Outcome{Res: &store.Result{Index: 100, Put: kv.PutResult{Key: c.Key, ModIndex: 100, Version: 1}}}
			if string(c.Key) == "bad" {
				outs[i] = Outcome{Err: kv.ErrOutcomeUnknown}
			}
		}
		_, _ = w.Write(AppendResponse(nil, outs))
	})
	b := newBatcher(t, addr)
	const writers = 100
	var wg sync.WaitGroup
	errs := make([]error, writers)
	keys := make([]string, writers)
	for i := range writers {
		keys[i] = fmt.Sprintf("k%d", i)
		if i == 7 {
			keys[i] = "bad"
		}
		wg.Go(func() {
			res, err := b.Apply(context.Background(), put(keys[i]))
			if err == nil && string(res.Put.Key) != keys[i] {
				err = fmt.Errorf("got the result of %q", res.Put.Key)
			}
			errs[i] = err
		})
	}
	// Every write is either in a batch the leader holds or queued behind them.
	waitFor(t, "every write to be sent or queued", func() bool {
		return received.Load()+int64(b.q.Len()) == writers
	})
	close(release)
	wg.Wait()
	for i, err := range errs {
		if keys[i] == "bad" {
			if !errors.Is(err, kv.ErrOutcomeUnknown) {
				t.Errorf("write %d: %v, want outcome unknown", i, err)
			}
		} else if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if n := requests.Load(); n >= writers/2 {
		t.Fatalf("%d requests for %d concurrent writes: not batched", n, writers)
	}
}

// What the follower's client is told when the batch fails on the way: never
// success, and "not applied" only when that is certain.
func TestBatcherFailures(t *testing.T) {
	refuse := func(status int, code string) func(http.ResponseWriter, []store.Command) {
		return func(w http.ResponseWriter, _ []store.Command) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":{"code":%q,"message":"refused"}}`, code)
		}
	}
	hangUp := func(w http.ResponseWriter, _ []store.Command) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	garbage := func(w http.ResponseWriter, _ []store.Command) { _, _ = w.Write([]byte{wireVersion, 1, 9}) }
	notLeader := func(w http.ResponseWriter, cmds []store.Command) {
		_, _ = w.Write(AppendResponse(nil, []Outcome{{Err: fmt.Errorf("apply: %w", kv.ErrNotLeader)}}))
	}
	// A port nothing listens on: the dial fails.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name   string
		addr   string
		answer func(http.ResponseWriter, []store.Command)
		want   error
		not    error
	}{
		{name: "no leader known", addr: "", want: kv.ErrNoLeader},
		{name: "leader unreachable", addr: closed, want: kv.ErrNoLeader},
		{name: "leader lost leadership before applying", answer: refuse(http.StatusServiceUnavailable, "no_leader"), want: kv.ErrNoLeader},
		{name: "leader refuses the batch", answer: refuse(http.StatusBadRequest, "bad_request"), not: kv.ErrOutcomeUnknown},
		{name: "connection lost after sending", answer: hangUp, want: kv.ErrOutcomeUnknown},
		{name: "unreadable answer", answer: garbage, want: kv.ErrOutcomeUnknown},
		{name: "per-command not leader", answer: notLeader, want: kv.ErrNoLeader, not: kv.ErrNotLeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr
			if tc.answer != nil {
				addr, _ = leader(t, tc.answer)
			}
			b := newBatcher(t, addr)
			res, err := b.Apply(context.Background(), put("k"))
			switch {
			case err == nil:
				t.Fatalf("got success %+v", res)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("%v, want %v", err, tc.want)
			case tc.not != nil && errors.Is(err, tc.not):
				t.Fatalf("%v must not be %v", err, tc.not)
			}
		})
	}
}

// A caller that gives up learns whether its write was sent: before, it was
// not applied (timeout); after, nobody knows.
func TestBatcherCallerGivesUp(t *testing.T) {
	hold := make(chan struct{})
	addr, requests := leader(t, func(w http.ResponseWriter, cmds []store.Command) { <-hold })
	t.Cleanup(func() { close(hold) }) // before the server's Close waits for its handlers
	b := New(Config{
		Leader:      func() string { return addr },
		Client:      &http.Client{},
		Header:      http.Header{"X-Test": {"yes"}},
		MaxInflight: 1,
	})
	t.Cleanup(b.Close)
	// The first write occupies the only slot and is sent; the second waits.
	sentCtx, cancelSent := context.WithCancel(context.Background())
	sentErr := make(chan error, 1)
	go func() {
		_, err := b.Apply(sentCtx, put("sent"))
		sentErr <- err
	}()
	waitFor(t, "the first write to reach the leader", func() bool { return requests.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.Apply(ctx, put("queued")); !errors.Is(err, kv.ErrTimeout) {
		t.Fatalf("queued write whose caller gave up: %v, want timeout", err)
	}
	cancelSent()
	if err := <-sentErr; !errors.Is(err, kv.ErrOutcomeUnknown) {
		t.Fatalf("sent write whose caller gave up: %v, want outcome unknown", err)
	}
}

// Writes racing Close all return: none is left in a queue nobody drains.
func TestBatcherCloseRacesApply(t *testing.T) {
	addr, requests := leader(t, func(w http.ResponseWriter, cmds []store.Command) {
		outs := make([]Outcome, len(cmds))
		for i := range outs {
			outs[i] = Outcome{Res: &store.Result{Index: 1}}
		}
		_, _ = w.Write(AppendResponse(nil, outs))
	})
	for range 20 {
		b := New(Config{Leader: func() string { return addr }, Client: &http.Client{}, Header: http.Header{"X-Test": {"yes"}}})
		before := requests.Load()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					_, err := b.Apply(context.Background(), put("k"))
					switch {
					case errors.Is(err, kv.ErrClosed):
						return
					case err != nil && !errors.Is(err, kv.ErrOutcomeUnknown):
						t.Errorf("write racing Close: %v", err)
						return
					}
				}
			})
		}
		// Close while batches are on their way and writers keep coming.
		waitFor(t, "batches to flow", func() bool { return requests.Load() > before })
		b.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("writes racing Close never returned")
		}
	}
}

// Close fails what is queued and refuses new writes.
func TestBatcherClose(t *testing.T) {
	b := New(Config{Leader: func() string { return "" }, Client: &http.Client{}})
	b.Close()
	if _, err := b.Apply(context.Background(), put("k")); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
}

// A leader that takes batches and never answers: a partition that drops
// packets. A change of leader abandons the batches sent to it, as unknown
// outcomes, and the freed slots carry the next writes to the new leader;
// a batch nobody abandons ends at MaxWait.
func TestBatcherAbandonsBatchesToAnOldLeader(t *testing.T) {
	hold := make(chan struct{})
	silent, silentReqs := leader(t, func(http.ResponseWriter, []store.Command) { <-hold })
	t.Cleanup(func() { close(hold) }) // before the server's Close, which waits for its handlers
	healthy, _ := leader(t, func(w http.ResponseWriter, cmds []store.Command) {
		outs := make([]Outcome, len(cmds))
		for i := range cmds {
			outs[i] = Outcome{Res: &store.Result{Index: 7, Put: kv.PutResult{Key: cmds[i].Key, ModIndex: 7, Version: 1}}}
		}
		_, _ = w.Write(AppendResponse(nil, outs))
	})

	var current atomic.Value
	current.Store(silent)
	b := New(Config{
		Leader:      func() string { return current.Load().(string) },
		Client:      &http.Client{},
		Header:      http.Header{"X-Test": {"yes"}},
		MaxInflight: 2,
	})
	t.Cleanup(b.Close)

	// Two writes without a deadline fill both slots on the silent leader.
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := b.Apply(context.Background(), put(fmt.Sprintf("stuck%d", i)))
			errs <- err
		}()
		waitFor(t, "the batch to reach the silent leader", func() bool { return silentReqs.Load() == int64(i+1) })
	}
	current.Store(healthy)
	b.LeaderChanged(healthy)
	for range 2 {
		err := <-errs
		if !errors.Is(err, kv.ErrOutcomeUnknown) || !errors.Is(err, errLeaderChanged) {
			t.Fatalf("write sent to the old leader: %v, want outcome unknown because the leader changed", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := b.Apply(ctx, put("next"))
	if err != nil || res.Put.ModIndex != 7 {
		t.Fatalf("write after the change: %+v %v", res, err)
	}

	// Nobody tells this one of a change: MaxWait bounds it.
	b2 := New(Config{
		Leader:  func() string { return silent },
		Client:  &http.Client{},
		Header:  http.Header{"X-Test": {"yes"}},
		MaxWait: 100 * time.Millisecond,
	})
	t.Cleanup(b2.Close)
	if _, err := b2.Apply(context.Background(), put("bounded")); !errors.Is(err, kv.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write to a silent leader without a deadline: %v, want outcome unknown at MaxWait", err)
	}
}

// A batch abandoned for a new leader before it had a connection was never
// sent: its writes answer no_leader (the node sends them on), not an
// unknown outcome, though net/http reports the cancelled dial as the
// context's error.
func TestLeaderChangeWhileConnectingIsNotSent(t *testing.T) {
	var dialing atomic.Int32
	hang := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		dialing.Add(1)
		<-ctx.Done() // a dial that never completes (a leader that just went away)
		return nil, ctx.Err()
	}}
	defer hang.CloseIdleConnections()
	var current atomic.Value
	current.Store("127.0.0.1:1")
	b := New(Config{Leader: func() string { return current.Load().(string) }, Client: &http.Client{Transport: hang}})
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := b.Apply(context.Background(), put("k"))
		errc <- err
	}()
	waitFor(t, "the batch to be connecting", func() bool { return dialing.Load() > 0 })
	current.Store("127.0.0.1:2")
	b.LeaderChanged("127.0.0.1:2")
	if err := <-errc; !errors.Is(err, kv.ErrNoLeader) || errors.Is(err, kv.ErrOutcomeUnknown) {
		t.Fatalf("write whose batch was abandoned while connecting: %v, want no leader", err)
	}
}
