package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// ErrLeaseExpired: no keepalive was acknowledged within the lease's TTL
// of the send time of the last acknowledged one, so the lease may have
// expired on the cluster.
var ErrLeaseExpired = errors.New("lease expired: no keepalive acknowledged in time")

// ErrStopped: the Keeper was stopped (Stop, Session.Close).
var ErrStopped = errors.New("keepalive stopped")

// Keeper keeps a lease alive in the background; see KeepAlive.
type Keeper struct {
	c      API
	id     kv.LeaseID
	cancel context.CancelFunc
	done   chan struct{}
	acks   chan kv.Lease

	mu      sync.Mutex
	err     error
	expiry  time.Time
	stopped bool
}

// KeepAlive keeps lease id, of time to live ttl, alive until ctx ends,
// Stop is called or the lease is lost: one goroutine sends a keepalive at
// once and then every ttl/3 (of the TTL the last answer gave), and after
// a failed one retries, every ttl/10 (at most every second), until the
// lease would have expired: ttl after the send time of the last
// acknowledged keepalive (before the first acknowledgement, ttl after
// KeepAlive was called). Each keepalive is bounded by that moment. Done
// closes when the goroutine ends; Err then says why.
func KeepAlive(ctx context.Context, c API, id kv.LeaseID, ttl time.Duration) *Keeper {
	return keepAlive(ctx, c, id, ttl, time.Now())
}

// keepAlive is KeepAlive for a lease whose TTL last restarted no earlier
// than since.
func keepAlive(ctx context.Context, c API, id kv.LeaseID, ttl time.Duration, since time.Time) *Keeper {
	ctx, cancel := context.WithCancel(ctx)
	k := &Keeper{c: c, id: id, cancel: cancel, done: make(chan struct{}), acks: make(chan kv.Lease, 1), expiry: since.Add(ttl)}
	go k.run(ctx, ttl)
	return k
}

// Lease is the lease the Keeper keeps alive.
func (k *Keeper) Lease() kv.LeaseID { return k.id }

// Done is closed when the Keeper stops: the lease was lost (Err wraps
// kv.ErrLeaseNotFound or ErrLeaseExpired), its context ended, or Stop was
// called.
func (k *Keeper) Done() <-chan struct{} { return k.done }

// Err is nil while the Keeper runs; once Done is closed it says why:
// an error wrapping kv.ErrLeaseNotFound (the cluster says the lease is
// gone) or ErrLeaseExpired (no keepalive acknowledged in time; it wraps
// the last failure's error too), the context's error, or ErrStopped.
func (k *Keeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Expiry is the earliest moment the lease may expire on the cluster: the
// TTL after the send time of the last acknowledged keepalive.
func (k *Keeper) Expiry() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.expiry
}

// Acks delivers the answer of each acknowledged keepalive (ID, TTL,
// Index). It holds the latest one only: an answer not received before
// the next one comes is dropped. It is closed when the Keeper stops.
func (k *Keeper) Acks() <-chan kv.Lease { return k.acks }

// Stop stops keeping the lease alive and waits for the goroutine to end.
// The lease is left to expire (revoke it to end it at once). Stopping a
// Keeper that has stopped already does nothing.
func (k *Keeper) Stop() {
	k.mu.Lock()
	k.stopped = true
	k.mu.Unlock()
	k.cancel()
	<-k.done
}

func (k *Keeper) run(ctx context.Context, ttl time.Duration) {
	defer close(k.done)
	defer close(k.acks)
	defer k.cancel()
	next := time.Now() // the first keepalive goes at once
	var last error     // the last failure since the last acknowledgement
	for {
		if err := wait(ctx, next); err != nil {
			k.finish(err)
			return
		}
		sent := time.Now()
		expiry := k.Expiry()
		if !sent.Before(expiry) {
			k.finish(fmt.Errorf("lease %s: %w (the last at %s; the last failure: %v)", k.id, ErrLeaseExpired, expiry.Add(-ttl).Format(time.RFC3339Nano), last))
			return
		}
		cctx, cancel := context.WithDeadline(ctx, expiry)
		l, err := k.c.KeepAliveOnce(cctx, k.id)
		cancel()
		switch {
		case err == nil:
			if l.TTL > 0 {
				ttl = l.TTL
			}
			k.mu.Lock()
			k.expiry = sent.Add(ttl)
			k.mu.Unlock()
			select { // keep the latest answer only
			case <-k.acks:
			default:
			}
			k.acks <- l
			last, next = nil, sent.Add(ttl/3)
		case errors.Is(err, kv.ErrLeaseNotFound):
			k.finish(fmt.Errorf("lease %s: %w", k.id, err))
			return
		case ctx.Err() != nil:
			k.finish(ctx.Err())
			return
		default:
			last, next = err, time.Now().Add(max(min(ttl/10, time.Second), time.Millisecond))
			if next.After(expiry) {
				next = expiry
			}
		}
	}
}

// finish records why the Keeper ended: err, or ErrStopped when Stop
// ended it.
func (k *Keeper) finish(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		err = ErrStopped
	}
	k.err = err
}

// wait waits until t, or until ctx ends (its error).
func wait(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
