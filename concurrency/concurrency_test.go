package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// fakeAPI answers keepalives with keepalive(n) (n counts the calls from
// 1); the calls it does not implement panic (the nil embedded API).
type fakeAPI struct {
	API
	ttl       time.Duration
	keepalive func(ctx context.Context, n int) error
	lock      func(ctx context.Context) (kv.Hold, error)
	unlock    func(token uint64) error

	mu      sync.Mutex
	calls   []time.Time
	revoked []kv.LeaseID
	deleted []string
}

func (f *fakeAPI) Delete(_ context.Context, key []byte, _ ...kv.WriteOption) (kv.DeleteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, string(key))
	return kv.DeleteResult{Deleted: 1, Index: 10}, nil
}

func (f *fakeAPI) Grant(_ context.Context, ttl time.Duration) (kv.Lease, error) {
	return kv.Lease{ID: 7, TTL: ttl, Index: 1}, nil
}

func (f *fakeAPI) KeepAliveOnce(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	n := len(f.calls)
	f.mu.Unlock()
	if f.keepalive != nil {
		if err := f.keepalive(ctx, n); err != nil {
			return kv.Lease{}, err
		}
	}
	return kv.Lease{ID: id, TTL: f.ttl, Index: uint64(n)}, nil
}

func (f *fakeAPI) Revoke(_ context.Context, id kv.LeaseID) (kv.RevokeResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, id)
	if len(f.revoked) > 1 {
		return kv.RevokeResult{}, fmt.Errorf("lease %s: %w", id, kv.ErrLeaseNotFound)
	}
	return kv.RevokeResult{ID: id}, nil
}

func (f *fakeAPI) Lock(ctx context.Context, name string, opts kv.LockOptions) (kv.Hold, error) {
	return f.lock(ctx)
}

func (f *fakeAPI) Unlock(_ context.Context, name string, token uint64) (uint64, error) {
	return 9, f.unlock(token)
}

func (f *fakeAPI) keepalives() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls...)
}

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for state
	}
}

func waitDone(t *testing.T, done <-chan struct{}, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case <-done:
		return time.Now()
	case <-time.After(timeout):
		t.Fatalf("not done after %s", timeout)
		return time.Time{}
	}
}

func TestKeeperKeepsAliveUntilStop(t *testing.T) {
	const ttl = 300 * time.Millisecond
	f := &fakeAPI{ttl: ttl}
	k := KeepAlive(context.Background(), f, 7, ttl)
	t.Cleanup(k.Stop)
	eventually(t, 5*time.Second, func() error {
		if n := len(f.keepalives()); n < 6 {
			return fmt.Errorf("%d keepalives", n)
		}
		return nil
	})
	select {
	case <-k.Done():
		t.Fatalf("done while the lease is kept alive: %v", k.Err())
	default:
	}
	if l, ok := <-k.Acks(); !ok || l.ID != 7 || l.TTL != ttl {
		t.Errorf("ack %+v, %v", l, ok)
	}
	if time.Until(k.Expiry()) <= 0 || time.Until(k.Expiry()) > ttl {
		t.Errorf("expiry in %s, want within the ttl", time.Until(k.Expiry()))
	}
	k.Stop()
	n := len(f.keepalives())
	if !errors.Is(k.Err(), ErrStopped) {
		t.Errorf("Err after Stop = %v", k.Err())
	}
	for range k.Acks() { // drained, then closed
	}
	calls := f.keepalives()
	if len(calls) != n {
		t.Errorf("keepalives after Stop")
	}
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].Sub(calls[i-1]); gap < ttl/3-10*time.Millisecond || gap > 2*ttl/3 {
			t.Errorf("keepalive %d came %s after the one before, want about ttl/3 (%s)", i, gap, ttl/3)
		}
	}
	k.Stop() // again: nothing
}

func TestKeeperLoses(t *testing.T) {
	const ttl = 300 * time.Millisecond
	transient := errors.New("connection refused")
	tests := []struct {
		name      string
		keepalive func(ctx context.Context, n int) error
		want      error
	}{
		{"not found", func(_ context.Context, n int) error {
			if n >= 3 {
				return fmt.Errorf("lease 7: %w", kv.ErrLeaseNotFound)
			}
			return nil
		}, kv.ErrLeaseNotFound},
		{"failures until expiry", func(_ context.Context, n int) error {
			if n >= 2 {
				return transient
			}
			return nil
		}, ErrLeaseExpired},
		{"no answer until expiry", func(ctx context.Context, n int) error {
			if n >= 2 {
				<-ctx.Done() // the node hangs: the keeper's bound ends the call
				return ctx.Err()
			}
			return nil
		}, ErrLeaseExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAPI{ttl: ttl, keepalive: tt.keepalive}
			start := time.Now()
			k := KeepAlive(context.Background(), f, 7, ttl)
			t.Cleanup(k.Stop)
			doneAt := waitDone(t, k.Done(), 5*time.Second)
			if !errors.Is(k.Err(), tt.want) {
				t.Fatalf("Err = %v, want %v", k.Err(), tt.want)
			}
			if tt.want != ErrLeaseExpired {
				return
			}
			// Lost no earlier than ttl after the send of the one
			// acknowledged keepalive (sent after start), and soon after.
			if doneAt.Sub(start) < ttl || doneAt.Sub(f.keepalives()[0]) > ttl+200*time.Millisecond {
				t.Errorf("lost %s after the start, %s after the acknowledged keepalive; ttl %s", doneAt.Sub(start), doneAt.Sub(f.keepalives()[0]), ttl)
			}
			if tt.name == "failures until expiry" && len(f.keepalives()) < 3 {
				t.Errorf("%d keepalives: failures were not retried", len(f.keepalives()))
			}
		})
	}
}

func TestKeeperContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	k := KeepAlive(ctx, &fakeAPI{ttl: time.Second}, 7, time.Second)
	cancel()
	waitDone(t, k.Done(), 5*time.Second)
	if !errors.Is(k.Err(), context.Canceled) {
		t.Errorf("Err = %v", k.Err())
	}
}

func TestSessionAndMutex(t *testing.T) {
	lost := make(chan struct{})
	f := &fakeAPI{ttl: time.Second, keepalive: func(ctx context.Context, n int) error {
		select {
		case <-lost:
			return fmt.Errorf("lease 7: %w", kv.ErrLeaseNotFound)
		default:
			return nil
		}
	}}
	var token uint64 = 5
	f.lock = func(ctx context.Context) (kv.Hold, error) {
		return kv.Hold{Name: "m", Key: []byte(kv.LockPrefix + "m/7"), Token: token, Lease: 7}, nil
	}
	f.unlock = func(tk uint64) error {
		if tk != token {
			return &kv.PreconditionError{}
		}
		return nil
	}
	ctx := context.Background()
	s, err := NewSession(ctx, f, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	if s.Lease() != 7 || s.TTL() != time.Second {
		t.Errorf("session lease %s ttl %s", s.Lease(), s.TTL())
	}
	m := NewMutex(s, "m")
	if err := m.Unlock(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Unlock before Lock: %v", err)
	}
	if err := m.Lock(ctx); err != nil || m.Token() != 5 || string(m.Key()) != kv.LockPrefix+"m/7" {
		t.Fatalf("Lock: %v, token %d key %q", err, m.Token(), m.Key())
	}
	if err := m.Lock(ctx); !errors.Is(err, kv.ErrBadRequest) {
		t.Errorf("second Lock: %v", err)
	}
	token = 6 // the lock was lost and taken by another
	if err := m.Unlock(ctx); !errors.Is(err, kv.ErrPreconditionFailed) || m.Token() != 0 {
		t.Errorf("Unlock of a lost lock: %v, token %d", err, m.Token())
	}

	// A Lock whose answer is lost (an unknown outcome: the node serving
	// the wait stalled, or was cut off) leaves the queue through any node.
	f.lock = func(ctx context.Context) (kv.Hold, error) {
		return kv.Hold{}, fmt.Errorf("%w: connection lost while waiting", kv.ErrOutcomeUnknown)
	}
	if err := m.Lock(ctx); !errors.Is(err, kv.ErrOutcomeUnknown) || m.Token() != 0 {
		t.Fatalf("Lock with a lost answer: %v, token %d", err, m.Token())
	}
	f.mu.Lock()
	if len(f.deleted) != 1 || f.deleted[0] != kv.LockPrefix+"m/7" {
		t.Errorf("queue keys deleted after the failed wait: %q", f.deleted)
	}
	f.mu.Unlock()

	// A Lock waiting while the session is lost ends, saying so.
	f.lock = func(ctx context.Context) (kv.Hold, error) {
		<-ctx.Done()
		return kv.Hold{}, ctx.Err()
	}
	errc := make(chan error, 1)
	go func() { errc <- m.Lock(ctx) }()
	close(lost)
	select {
	case err := <-errc:
		if !errors.Is(err, kv.ErrLeaseNotFound) || !errors.Is(err, context.Canceled) {
			t.Errorf("Lock during the loss of the session: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock did not end when the session was lost")
	}
	waitDone(t, s.Done(), time.Second)
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(ctx); err != nil { // the lease is gone: no error
		t.Errorf("second Close: %v", err)
	}
	if len(f.revoked) != 2 || f.revoked[0] != 7 {
		t.Errorf("revoked %v", f.revoked)
	}
}
