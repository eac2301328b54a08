// Package coalesce shares one expensive round trip among the callers that
// ask for it at the same time, without ever handing a caller the result of
// a round that started before it asked.
//
// That last property is what makes it safe for read barriers: a leader's
// heartbeat round (VerifyLeader) or a follower's read-index request only
// vouches for reads that began before the round did. A caller that arrives
// while a round is in flight waits for the next one, which starts as soon
// as the current one ends and serves everyone who queued meanwhile; so at
// most one round is in flight, and a burst of N callers costs at most two.
package coalesce

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Group runs Round for the callers of Do. The zero value is not usable:
// set Round.
type Group[T any] struct {
	// Round performs one round trip. It runs on a goroutine of the Group's
	// own, never concurrently with itself, and must return eventually.
	Round func() (T, error)

	mu      sync.Mutex
	waiters []chan result[T]
	running bool
	rounds  atomic.Uint64
}

type result[T any] struct {
	v   T
	err error
}

// Do joins the next round and returns its result, or ctx's error if ctx
// ends first (the round still runs for the others).
func (g *Group[T]) Do(ctx context.Context) (T, error) {
	ch := make(chan result[T], 1)
	g.mu.Lock()
	g.waiters = append(g.waiters, ch)
	if !g.running {
		g.running = true
		go g.loop()
	}
	g.mu.Unlock()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("coalesce: %w", ctx.Err())
	}
}

// Rounds is the number of rounds run so far.
func (g *Group[T]) Rounds() uint64 { return g.rounds.Load() }

// Waiting is the number of callers queued for the next round.
func (g *Group[T]) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiters)
}

// loop runs rounds while callers wait, and exits when a round ends with
// none waiting.
func (g *Group[T]) loop() {
	for {
		g.mu.Lock()
		batch := g.waiters
		g.waiters = nil
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.rounds.Add(1)
		v, err := g.Round()
		for _, ch := range batch {
			ch <- result[T]{v, err}
		}
	}
}
