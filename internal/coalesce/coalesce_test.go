package coalesce

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
)

func TestCallersShareTheNextRound(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	var n int
	g := Group[int]{Round: func() (int, error) {
		n++
		started <- struct{}{}
		<-release
		return n, nil
	}}
	first := make(chan int, 1)
	go func() { v, _ := g.Do(context.Background()); first <- v }()
	<-started // round 1 is in flight

	const callers = 100
	got := make([]int, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			v, err := g.Do(context.Background())
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	for g.Waiting() != callers {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if v := <-first; v != 1 {
		t.Fatalf("first caller got round %d, want 1", v)
	}
	// Nobody who arrived during round 1 may be given its result.
	for i, v := range got {
		if v != 2 {
			t.Fatalf("caller %d got round %d, want 2", i, v)
		}
	}
	if r := g.Rounds(); r != 2 {
		t.Fatalf("%d rounds, want 2", r)
	}
}

func TestDoHonoursContext(t *testing.T) {
	release := make(chan struct{})
	g := Group[int]{Round: func() (int, error) { <-release; return 0, errors.New("late") }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Do(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	close(release)
}
