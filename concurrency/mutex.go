package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/raftkv/raftkv/kv"
)

// ErrNotHeld: Unlock or Resign of a mutex or election that this value
// does not hold.
var ErrNotHeld = errors.New("not held")

// Mutex is a distributed lock held on a session's lease: while it is
// held, no other Mutex of the same name, on any session of the cluster,
// is. A Mutex is safe for concurrent use, but one Lock at a time is
// meant: it is one holder.
type Mutex struct {
	s    *Session
	name string

	mu   sync.Mutex
	hold kv.Hold
}

// NewMutex returns the mutex name on s's lease. It contacts nothing.
func NewMutex(s *Session, name string) *Mutex { return &Mutex{s: s, name: name} }

// Lock waits until the lock is held (first come, first served), ctx ends
// (a deadline is passed to the cluster as the wait's bound: the error then
// wraps kv.ErrTimeout), or the session ends. Locking a Mutex that holds
// the lock already is an error (kv.ErrBadRequest). After any other error
// the session's place in the queue is deleted (through any node that
// answers): a wait whose answer was lost, or whose node stalled, leaves
// the session holding nothing. One Mutex per name per session: they
// would share the session's one queue key.
func (m *Mutex) Lock(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold.Token != 0 {
		return fmt.Errorf("lock %q: %w: this mutex holds it already (token %d)", m.name, kv.ErrBadRequest, m.hold.Token)
	}
	bctx, release := m.s.bind(ctx)
	defer release()
	h, err := m.s.c.Lock(bctx, m.name, kv.LockOptions{Lease: m.s.Lease()})
	if err != nil {
		if !errors.Is(err, kv.ErrBadRequest) {
			m.s.leaveQueue(kv.LockQueue(m.name))
		}
		return fmt.Errorf("lock %q: %w", m.name, m.s.sessionErr(bctx, err))
	}
	m.hold = h
	return nil
}

// Unlock releases the lock. When the lock was lost meanwhile (its lease
// expired), the error wraps kv.ErrPreconditionFailed; either way the
// Mutex holds nothing after it, unless the outcome is unknown.
func (m *Mutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold.Token == 0 {
		return fmt.Errorf("unlock %q: %w", m.name, ErrNotHeld)
	}
	_, err := m.s.c.Unlock(ctx, m.name, m.hold.Token)
	if err == nil || errors.Is(err, kv.ErrPreconditionFailed) {
		m.hold = kv.Hold{}
	}
	if err != nil {
		return fmt.Errorf("unlock %q: %w", m.name, err)
	}
	return nil
}

// Name is the lock's name.
func (m *Mutex) Name() string { return m.name }

// Token is the fencing token of the held lock (0 when not held): pass it
// to writes with kv.WithFence(m.Name(), m.Token()).
func (m *Mutex) Token() uint64 { return m.Hold().Token }

// Key is the lock's queue key while it is held (nil otherwise).
func (m *Mutex) Key() []byte { return m.Hold().Key }

// Hold describes the held lock (a zero Hold when not held).
func (m *Mutex) Hold() kv.Hold {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hold
}
