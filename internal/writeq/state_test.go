package writeq

import (
	"context"
	"errors"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

// Whichever of the queue and the caller acts first decides, once: a write
// handed on is unknown to a caller who gives up; one not handed on is not
// applied, and can no longer be handed on.
func TestGiveUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name  string
		setup func(*State)
		want  error
		hand  bool // whether Hand succeeds after the caller gave up
	}{
		{"still queued", func(*State) {}, kv.ErrTimeout, false},
		{"handed on", func(s *State) { s.Hand() }, kv.ErrOutcomeUnknown, false},
		{"abandoned by the queue", func(s *State) { s.Abandon() }, kv.ErrTimeout, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s State
			tc.setup(&s)
			err := s.GiveUp(ctx, "raft")
			if !errors.Is(err, tc.want) || !errors.Is(err, context.Canceled) {
				t.Fatalf("GiveUp: %v, want %v wrapping context.Canceled", err, tc.want)
			}
			if s.Hand() != tc.hand || s.Queued() {
				t.Fatalf("after GiveUp the write is still handable or queued")
			}
		})
	}
	var s State
	if !s.Queued() || !s.Hand() || s.Abandon() {
		t.Fatal("a fresh write is queued, can be handed on, and then not abandoned")
	}
}
