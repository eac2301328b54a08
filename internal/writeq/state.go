package writeq

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/raftkv/raftkv/kv"
)

// State is a queued write's fate: queued, then handed on (to raft, to the
// leader) or abandoned. Whichever of the queue and the caller acts first
// decides, with one compare-and-swap, so a write is never both reported
// "not applied" and handed on. The zero value is queued.
type State struct{ v atomic.Int32 }

const (
	queued int32 = iota
	handed
	abandoned
)

// Hand marks the write handed on. It fails if the write was abandoned.
func (s *State) Hand() bool { return s.v.CompareAndSwap(queued, handed) }

// Abandon marks a write that is still queued as given up. It fails if the
// write was handed on or abandoned already.
func (s *State) Abandon() bool { return s.v.CompareAndSwap(queued, abandoned) }

// Queued reports whether the write is still waiting to be handed on.
func (s *State) Queued() bool { return s.v.Load() == queued }

// NotHanded is the error of a write abandoned before it was handed to
// where ("raft", "the leader") because ctx ended: kv.ErrTimeout, not applied.
func NotHanded(ctx context.Context, where string) error {
	return fmt.Errorf("%w: %w before the write was handed to %s", kv.ErrTimeout, ctx.Err(), where)
}

// GiveUp is what a caller whose ctx ended is told. A write still queued is
// abandoned now, and it or one abandoned earlier was not applied
// (kv.ErrTimeout); a write already handed to where may still be
// (kv.ErrOutcomeUnknown).
func (s *State) GiveUp(ctx context.Context, where string) error {
	if s.Abandon() || s.v.Load() == abandoned {
		return NotHanded(ctx, where)
	}
	return fmt.Errorf("%w: %w after the write was handed to %s", kv.ErrOutcomeUnknown, ctx.Err(), where)
}
