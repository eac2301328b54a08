package concurrency

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/raftkv/raftkv/kv"
)

// Election is a candidacy in a named election, on a session's lease: at
// most one candidate of a name leads at a time, and anyone can read or
// observe the leader and its value. It is safe for concurrent use.
type Election struct {
	s    *Session
	name string

	mu   sync.Mutex
	hold kv.Hold
}

// NewElection returns the election name on s's lease. It contacts
// nothing.
func NewElection(s *Session, name string) *Election { return &Election{s: s, name: name} }

// Campaign runs for leader with value and waits until elected (first come,
// first served), ctx ends or the session ends, as Mutex.Lock waits for a
// lock. Campaigning while leading is an error (kv.ErrBadRequest).
func (e *Election) Campaign(ctx context.Context, value []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.hold.Token != 0 {
		return fmt.Errorf("campaign %q: %w: this candidate leads already (token %d)", e.name, kv.ErrBadRequest, e.hold.Token)
	}
	bctx, release := e.s.bind(ctx)
	defer release()
	h, err := e.s.c.Campaign(bctx, e.name, value, kv.LockOptions{Lease: e.s.Lease()})
	if err != nil {
		if !errors.Is(err, kv.ErrBadRequest) {
			e.s.leaveQueue(kv.ElectionQueue(e.name))
		}
		return fmt.Errorf("campaign %q: %w", e.name, e.s.sessionErr(bctx, err))
	}
	e.hold = h
	return nil
}

// Resign gives up the leadership, which passes to the next candidate.
// When it was lost meanwhile the error wraps kv.ErrPreconditionFailed;
// either way the Election leads no more after it, unless the outcome is
// unknown.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.hold.Token == 0 {
		return fmt.Errorf("resign %q: %w", e.name, ErrNotHeld)
	}
	_, err := e.s.c.Resign(ctx, e.name, e.hold.Token)
	if err == nil || errors.Is(err, kv.ErrPreconditionFailed) {
		e.hold = kv.Hold{}
	}
	if err != nil {
		return fmt.Errorf("resign %q: %w", e.name, err)
	}
	return nil
}

// Leader returns the election's leader, whoever it is, with its value;
// the error wraps kv.ErrNoElectionLeader when there is none.
func (e *Election) Leader(ctx context.Context) (kv.Hold, error) {
	return e.s.c.ElectionLeader(ctx, e.name)
}

// Observe yields the leader at once (a zero Hold when there is none),
// then each change of leader, until ctx ends or the caller stops.
func (e *Election) Observe(ctx context.Context) iter.Seq2[kv.Hold, error] {
	return e.s.c.ObserveElection(ctx, e.name)
}

// Name is the election's name.
func (e *Election) Name() string { return e.name }

// Token is the token of this candidate's leadership (0 when it does not
// lead): it increases with every new leader of the election, so it orders
// leaderships (a fence, kv.WithFence, names a lock, not an election).
func (e *Election) Token() uint64 { return e.Hold().Token }

// Key is the candidate's queue key while it leads (nil otherwise).
func (e *Election) Key() []byte { return e.Hold().Key }

// Hold describes the leadership (a zero Hold when not leading).
func (e *Election) Hold() kv.Hold {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hold
}
