package concurrency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Session is a lease granted for it and kept alive until Close (or until
// it is lost): the lease that its mutexes and elections hang on.
type Session struct {
	c     API
	lease kv.Lease
	k     *Keeper
}

// NewSession grants a lease of ttl on c and keeps it alive (KeepAlive)
// until Close. ctx bounds the grant only: the session outlives it (its
// values are kept, its end is not).
func NewSession(ctx context.Context, c API, ttl time.Duration) (*Session, error) {
	sent := time.Now()
	l, err := c.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("session: grant: %w", err)
	}
	if l.TTL <= 0 {
		l.TTL = ttl
	}
	return &Session{c: c, lease: l, k: keepAlive(context.WithoutCancel(ctx), c, l.ID, l.TTL, sent)}, nil
}

// Lease is the session's lease.
func (s *Session) Lease() kv.LeaseID { return s.lease.ID }

// TTL is the lease's time to live.
func (s *Session) TTL() time.Duration { return s.lease.TTL }

// Done is closed when the session ends: its lease was lost, or Close was
// called. Its mutexes and elections hold nothing after that.
func (s *Session) Done() <-chan struct{} { return s.k.Done() }

// Err is nil while the session lives, then says why it ended (see
// Keeper.Err).
func (s *Session) Err() error { return s.k.Err() }

// Close stops keeping the lease alive and revokes it, which deletes the
// keys of the session's mutexes and elections at once. A lease that is
// gone already is no error.
func (s *Session) Close(ctx context.Context) error {
	s.k.Stop()
	if _, err := s.c.Revoke(ctx, s.lease.ID); err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
		return fmt.Errorf("session: revoke lease %s: %w", s.lease.ID, err)
	}
	return nil
}

// bind returns ctx ended also when the session ends (its cause then the
// session's error), and the function that releases it; a goroutine waits
// for either until then.
func (s *Session) bind(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		select {
		case <-s.Done():
			cancel(fmt.Errorf("the session ended: %w", s.Err()))
		case <-stop:
		}
	}()
	return ctx, func() {
		close(stop)
		<-ended
		cancel(nil)
	}
}

// sessionErr is the error of a call made under bind's ctx: err, or, when
// the session ended meanwhile, that as well.
func (s *Session) sessionErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(cause, ctx.Err()) {
		return fmt.Errorf("%w (%w)", cause, err)
	}
	return err
}

// leaveQueueTimeout bounds the removal of a failed wait's queue key.
const leaveQueueTimeout = 5 * time.Second

// leaveQueue deletes this session's key in queue after a Lock or Campaign
// that failed: the node that served the wait removes it itself, but a
// node that stalled or was cut off while it waited cannot, and the
// session, still kept alive, would otherwise keep the key (and perhaps the
// lock, without knowing it) for as long as it lives. It runs detached from
// the caller's context (which may be what ended) and is best effort: the
// key goes with the session's lease in any case.
func (s *Session) leaveQueue(queue []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), leaveQueueTimeout)
	defer cancel()
	_, _ = s.c.Delete(ctx, append(queue, s.Lease().String()...))
}
