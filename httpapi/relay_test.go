package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// timeoutError is a net.Error that timed out, as a dial timeout is.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// relayError decides between "certainly not applied" (503 no_leader, 504
// timeout) and "maybe applied" (504 outcome_unknown). The errors are
// shaped as http.Client.Do returns them (TestRelayFailures produces the
// real ones on loopback).
func TestRelayError(t *testing.T) {
	wrap := func(err error) error {
		return &url.Error{Op: "Post", URL: "http://127.0.0.1:1/v1/cluster/nodes", Err: err}
	}
	dial := func(err error) error { return wrap(&net.OpError{Op: "dial", Net: "tcp", Err: err}) }
	tests := []struct {
		name        string
		err         error
		write, read error // what a write and a read fail with
	}{
		{"connection refused", dial(&os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}), kv.ErrNoLeader, kv.ErrNoLeader},
		{"dial timeout", dial(timeoutError{}), kv.ErrNoLeader, kv.ErrNoLeader},
		{"no such host", dial(&net.DNSError{Err: "no such host", Name: "leader", IsNotFound: true}), kv.ErrNoLeader, kv.ErrNoLeader},
		{"canceled while dialing", dial(context.Canceled), kv.ErrTimeout, kv.ErrTimeout},
		{"deadline while dialing", dial(context.DeadlineExceeded), kv.ErrTimeout, kv.ErrTimeout},
		{"reset after sending", wrap(&net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}), kv.ErrOutcomeUnknown, kv.ErrNoLeader},
		{"closed after sending", wrap(io.EOF), kv.ErrOutcomeUnknown, kv.ErrNoLeader},
		{"write failed while sending", wrap(&net.OpError{Op: "write", Net: "tcp", Err: &os.SyscallError{Syscall: "write", Err: syscall.EPIPE}}), kv.ErrOutcomeUnknown, kv.ErrNoLeader},
		// Once a connection is made, a context that ends leaves no trace
		// of whether the request went out: maybe applied.
		{"canceled after connecting", wrap(context.Canceled), kv.ErrOutcomeUnknown, kv.ErrTimeout},
		{"deadline after connecting", wrap(context.DeadlineExceeded), kv.ErrOutcomeUnknown, kv.ErrTimeout},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			write bool
			want  error
		}{{true, tt.write}, {false, tt.read}} {
			got := relayError(tt.err, c.write, "127.0.0.1:1")
			if !errors.Is(got, c.want) || kv.Code(got) != kv.Code(c.want) {
				t.Errorf("%s, write %v: %v (code %s), want %s", tt.name, c.write, got, kv.Code(got), kv.Code(c.want))
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("%s: %v does not wrap the transport's error", tt.name, got)
			}
		}
	}
}

// follower is the Backend of a follower that knows the leader at leader;
// a relay uses nothing else of it.
type follower struct {
	Backend
	leader string
}

func (follower) ID() string              { return "n2" }
func (follower) IsLeader() bool          { return false }
func (f follower) LeaderAPIAddr() string { return f.leader }
func (follower) AppliedIndex() uint64    { return 0 }

// fakeLeader listens on loopback and treats every connection with serve;
// it counts the connections it accepted.
func fakeLeader(t *testing.T, serve func(net.Conn)) (addr string, conns *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int32)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go serve(c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String(), conns
}

// readRequest reads one whole request from c, as a leader would before
// acting on it.
func readRequest(c net.Conn) bool {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, req.Body)
	return err == nil
}

// A relayed membership call that fails answers what is known of its
// outcome, on real connections over loopback.
func TestRelayFailures(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}()
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	tests := []struct {
		name      string
		serve     func(net.Conn) // nil: the leader's port is closed
		ctx       func() (context.Context, context.CancelFunc)
		status    int
		code      string
		connected bool // whether the leader must have seen a connection
	}{
		{name: "leader refuses connections", status: 503, code: "no_leader"},
		{name: "reset after the request was sent", serve: func(c net.Conn) {
			if readRequest(c) {
				_ = c.(*net.TCPConn).SetLinger(0) // close with RST
			}
			_ = c.Close()
		}, status: 504, code: "outcome_unknown", connected: true},
		{name: "closed without an answer", serve: func(c net.Conn) {
			readRequest(c)
			_ = c.Close()
		}, status: 504, code: "outcome_unknown", connected: true},
		{name: "no answer before the deadline", serve: func(c net.Conn) {
			readRequest(c)
			<-hold
			_ = c.Close()
		}, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, status: 504, code: "outcome_unknown", connected: true},
		{name: "request ended before the relay", serve: func(c net.Conn) { _ = c.Close() }, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, status: 504, code: "timeout"},
		{name: "leader answers", serve: func(c net.Conn) {
			if readRequest(c) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Raft-Node: n1\r\nContent-Type: application/json\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}\n")
			}
			_ = c.Close()
		}, status: 200, connected: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := closed, new(atomic.Int32)
			if tt.serve != nil {
				addr, conns = fakeLeader(t, tt.serve)
			}
			peers := NewPeerClient()
			defer peers.CloseIdleConnections()
			h, err := New(Config{Backend: follower{leader: addr}, Peers: peers})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			r := httptest.NewRequest(http.MethodPost, "/v1/cluster/transfer-leader?id=n3", nil).WithContext(ctx)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.code != "" {
				var e kv.ErrorResponse
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code != tt.code {
					t.Fatalf("body %s, want code %s", w.Body, tt.code)
				}
				if got := w.Header().Get(HeaderNode); got != "n2" {
					t.Errorf("%s = %q on a failed relay, want the follower n2", HeaderNode, got)
				}
			} else if got := w.Header().Get(HeaderNode); got != "n1" {
				t.Errorf("%s = %q on a relayed answer, want the leader n1", HeaderNode, got)
			}
			if got := conns.Load() > 0; got != tt.connected {
				t.Errorf("leader saw a connection: %v, want %v", got, tt.connected)
			}
		})
	}
}

// A relayed call carries HeaderForwardedBy and nothing that would let
// net/http resend it on its own (Idempotency-Key), and is not relayed a
// second time.
func TestRelayHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	addr, _ := fakeLeader(t, func(c net.Conn) {
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		got <- req.Header
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	h, err := New(Config{Backend: follower{leader: addr}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodDelete, "/v1/cluster/nodes/n4", nil)
	r.Header.Set(HeaderIdempotencyKey, "k")
	r.Header.Set("Accept", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	hd := <-got
	if hd.Get(HeaderForwardedBy) != "n2" || hd.Get("Accept") != "application/json" || hd.Get(HeaderIdempotencyKey) != "" {
		t.Errorf("relayed headers %v", hd)
	}

	r = httptest.NewRequest(http.MethodDelete, "/v1/cluster/nodes/n4", nil)
	r.Header.Set(HeaderForwardedBy, "n3")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("relayed twice: %d %s", w.Code, w.Body)
	}
}
