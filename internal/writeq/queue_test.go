package writeq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The tests' commands are strings: the key is the text before any "#",
// "!" marks a command that travels alone, and the size is the length.
func key(c string) string { k, _, _ := strings.Cut(c, "#"); return k }

func testSplit(batch []string, next string) Fit {
	if strings.HasPrefix(next, "!") {
		return Alone
	}
	for _, c := range batch {
		if key(c) == key(next) {
			return Next
		}
	}
	return Join
}

func size(c string) int { return len(c) }

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// take cuts the queue into batches by count, bytes and the user's rule,
// in arrival order, and drops (answering: not applied) the writes whose
// callers gave up.
func TestTake(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		maxBytes int
		split    bool
		queue    []string // "-" prefix: the caller's context has ended; "~": abandoned by its caller
		want     [][]string
		timedOut []string // answered kv.ErrTimeout by take
	}{
		{name: "count", maxBatch: 2, maxBytes: 100, queue: []string{"a", "b", "c", "d", "e"},
			want: [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{name: "bytes", maxBatch: 10, maxBytes: 4, queue: []string{"aa", "bb", "cc", "d"},
			want: [][]string{{"aa", "bb"}, {"cc", "d"}}},
		{name: "a larger command travels alone", maxBatch: 10, maxBytes: 4, queue: []string{"a", "bbbbbbb", "c"},
			want: [][]string{{"a"}, {"bbbbbbb"}, {"c"}}},
		{name: "without a rule keys may repeat", maxBatch: 10, maxBytes: 100, queue: []string{"a#1", "a#2"},
			want: [][]string{{"a#1", "a#2"}}},
		{name: "a key twice starts the next batch", maxBatch: 10, maxBytes: 100, split: true,
			queue: []string{"a#1", "b", "a#2", "c", "b#2"},
			want:  [][]string{{"a#1", "b"}, {"a#2", "c", "b#2"}}},
		{name: "alone in the middle", maxBatch: 10, maxBytes: 100, split: true, queue: []string{"a", "!t", "b"},
			want: [][]string{{"a"}, {"!t"}, {"b"}}},
		{name: "alone first and twice", maxBatch: 10, maxBytes: 100, split: true, queue: []string{"!t", "!u", "a", "b"},
			want: [][]string{{"!t"}, {"!u"}, {"a", "b"}}},
		{name: "given-up writes are dropped", maxBatch: 2, maxBytes: 100, queue: []string{"a", "-x", "~y", "b", "c"},
			want: [][]string{{"a", "b"}, {"c"}}, timedOut: []string{"x"}},
		{name: "only given-up writes", maxBatch: 2, maxBytes: 100, queue: []string{"-x", "-y", "~z"},
			timedOut: []string{"x", "y"}},
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := &Queue[string, string]{cfg: Config[string, string]{
				Where: "test", MaxBatch: tc.maxBatch, MaxBytes: tc.maxBytes, Size: size,
			}}
			if tc.split {
				q.cfg.Split = testSplit
			}
			var dropped, abandoned []*pending[string, string]
			for _, c := range tc.queue {
				ctx := context.Background()
				if c[0] == '-' {
					ctx = ended
				}
				p := q.newPending(ctx, strings.TrimLeft(c, "-~"))
				switch c[0] {
				case '-':
					dropped = append(dropped, p)
				case '~':
					p.state.Abandon()
					abandoned = append(abandoned, p)
				}
				q.queue = append(q.queue, p)
			}
			var got [][]string
			for {
				batch, cmds := q.take()
				if len(batch) == 0 {
					break
				}
				for i, p := range batch {
					if p.cmd != cmds[i] || p.state.Queued() || p.state.Abandon() {
						t.Fatalf("batch %v: write %d not handed on or out of step", cmds, i)
					}
				}
				got = append(got, cmds)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("batches %v, want %v", got, tc.want)
			}
			if q.Len() != 0 {
				t.Fatalf("%d writes left queued", q.Len())
			}
			var timedOut []string
			for _, p := range dropped {
				select {
				case o := <-p.done:
					if !errors.Is(o.Err, kv.ErrTimeout) || errors.Is(o.Err, kv.ErrOutcomeUnknown) {
						t.Fatalf("dropped %s: %v, want only kv.ErrTimeout", p.cmd, o.Err)
					}
					timedOut = append(timedOut, p.cmd)
				default:
				}
			}
			if fmt.Sprint(timedOut) != fmt.Sprint(tc.timedOut) {
				t.Fatalf("answered as timed out: %v, want %v", timedOut, tc.timedOut)
			}
			for _, p := range abandoned {
				if p.state.Hand() || len(p.done) != 0 {
					t.Fatalf("%s, abandoned by its caller, was handed on or answered by the queue", p.cmd)
				}
			}
		})
	}
}

// sender is a Send for tests: it records every batch and, when hold is
// set, keeps each batch's Wait running until release (or Close).
type sender struct {
	hold bool

	mu          sync.Mutex
	batches     [][]string
	release     []chan struct{}
	inflight    int
	maxInflight int
	sent        map[string]bool
}

func (s *sender) send(ctx context.Context, ctxs []context.Context, cmds []string) Wait[string] {
	if len(ctxs) != len(cmds) {
		panic("ctxs and cmds differ in length")
	}
	rel := make(chan struct{})
	s.mu.Lock()
	s.batches = append(s.batches, slices.Clone(cmds))
	s.release = append(s.release, rel)
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	if s.sent == nil {
		s.sent = map[string]bool{}
	}
	for _, c := range cmds {
		s.sent[c] = true
	}
	s.mu.Unlock()
	return func() ([]Outcome[string], error) {
		defer func() {
			s.mu.Lock()
			s.inflight--
			s.mu.Unlock()
		}()
		if s.hold {
			select {
			case <-rel:
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, ctx.Err())
			}
		}
		outs := make([]Outcome[string], len(cmds))
		for i, c := range cmds {
			outs[i].Res = "done " + c
		}
		return outs, nil
	}
}

func (s *sender) sends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.batches)
}

func (s *sender) batch(i int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches[i]
}

// waiting is the number of Waits that have not returned, and the most
// there ever were at once.
func (s *sender) waiting() (now, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight, s.maxInflight
}

func (s *sender) releaseBatch(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.release[i])
}

func (s *sender) wasSent(c string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[c]
}

func newQueue(t *testing.T, s *sender, maxInflight int) *Queue[string, string] {
	t.Helper()
	q := New(Config[string, string]{
		Where: "test", MaxBatch: 64, MaxBytes: 1 << 20, MaxInflight: maxInflight,
		Size: size, Split: testSplit, Send: s.send,
	})
	t.Cleanup(q.Close)
	return q
}

// apply runs q.Apply on a goroutine of its own.
func apply(ctx context.Context, q *Queue[string, string], cmd string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		res, err := q.Apply(ctx, cmd)
		if err == nil && res != "done "+cmd {
			err = fmt.Errorf("%s answered with %q", cmd, res)
		}
		ch <- err
	}()
	return ch
}

// Each caller gets its own command's outcome; ApplyMany answers in order
// and refuses, unsent, the commands whose contexts have ended.
func TestApplyAnswersEach(t *testing.T) {
	s := &sender{}
	q := newQueue(t, s, 2)
	if res, err := q.Apply(context.Background(), "one"); err != nil || res != "done one" {
		t.Fatalf("Apply: %q %v", res, err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	cmds := []string{"a#1", "b", "a#2", "gone", "!t", "c"}
	res, errs := q.ApplyMany([]context.Context{bg, bg, bg, ended, bg, bg}, cmds)
	for i, c := range cmds {
		switch {
		case c == "gone":
			if !errors.Is(errs[i], kv.ErrTimeout) || s.wasSent(c) {
				t.Fatalf("%s with an ended context: %v (sent: %t)", c, errs[i], s.wasSent(c))
			}
		case errs[i] != nil || res[i] != "done "+c:
			t.Fatalf("%s: %q %v", c, res[i], errs[i])
		}
	}
	// Batches reach Send in arrival order.
	var order []string
	for i := range s.sends() {
		order = append(order, s.batch(i)...)
	}
	if want := []string{"one", "a#1", "b", "a#2", "!t", "c"}; !slices.Equal(order, want) {
		t.Fatalf("sent in the order %v, want %v", order, want)
	}
}

// A Wait that answers fewer writes than its batch held leaves the others
// unknown, never hanging; a Wait's error answers every write of its batch.
func TestWaitShortOrFailed(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		wait Wait[string]
		want []error // per command of the batch "a", "b"
	}{
		{"short", func() ([]Outcome[string], error) { return []Outcome[string]{{Res: "x"}}, nil }, []error{nil, kv.ErrOutcomeUnknown}},
		{"failed", func() ([]Outcome[string], error) { return []Outcome[string]{{Res: "x"}}, boom }, []error{boom, boom}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := New(Config[string, string]{
				Where: "test", MaxBatch: 2, MaxBytes: 100, MaxInflight: 1, Size: size,
				Send: func(context.Context, []context.Context, []string) Wait[string] { return tc.wait },
			})
			t.Cleanup(q.Close)
			bg := context.Background()
			_, errs := q.ApplyMany([]context.Context{bg, bg}, []string{"a", "b"})
			for i, want := range tc.want {
				if (want == nil) != (errs[i] == nil) || !errors.Is(errs[i], want) {
					t.Fatalf("write %d: %v, want %v", i, errs[i], want)
				}
			}
		})
	}
}

// A caller that gives up learns whether its write was handed on: before,
// it was not applied (kv.ErrTimeout) and is never sent; after, nobody
// knows (kv.ErrOutcomeUnknown). Never both.
func TestCallerGivesUp(t *testing.T) {
	s := &sender{hold: true}
	q := newQueue(t, s, 1)
	sentCtx, cancelSent := context.WithCancel(context.Background())
	sentErr := apply(sentCtx, q, "sent")
	waitFor(t, "the first write to be sent", func() bool { return s.sends() == 1 })
	// The only slot is taken: the next write waits in the queue.
	queuedCtx, cancelQueued := context.WithCancel(context.Background())
	queuedErr := apply(queuedCtx, q, "queued")
	waitFor(t, "the second write to be queued", func() bool { return q.Len() == 1 })
	cancelQueued()
	if err := <-queuedErr; !errors.Is(err, kv.ErrTimeout) || errors.Is(err, kv.ErrOutcomeUnknown) {
		t.Fatalf("queued write whose caller gave up: %v, want only kv.ErrTimeout", err)
	}
	cancelSent()
	if err := <-sentErr; !errors.Is(err, kv.ErrOutcomeUnknown) || errors.Is(err, kv.ErrTimeout) {
		t.Fatalf("sent write whose caller gave up: %v, want only kv.ErrOutcomeUnknown", err)
	}
	// The abandoned write never leaves the queue for Send.
	s.releaseBatch(0)
	after := apply(context.Background(), q, "after")
	waitFor(t, "the next batch", func() bool { return s.sends() == 2 })
	s.releaseBatch(1)
	if err := <-after; err != nil {
		t.Fatal(err)
	}
	if b := s.batch(1); !slices.Equal(b, []string{"after"}) {
		t.Fatalf("the batch after the abandoned write: %v", b)
	}
	if s.wasSent("queued") {
		t.Fatal("a write reported not applied was sent")
	}
}

// Many callers giving up at random moments: every kv.ErrTimeout is a write
// that was never sent, and no write is reported both ways.
func TestGiveUpRace(t *testing.T) {
	s := &sender{}
	q := newQueue(t, s, 2)
	var mu sync.Mutex
	count := map[string]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				cmd := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(200))*time.Microsecond)
				_, err := q.Apply(ctx, cmd)
				cancel()
				timeout, unknown := errors.Is(err, kv.ErrTimeout), errors.Is(err, kv.ErrOutcomeUnknown)
				mu.Lock()
				count[fmt.Sprintf("timeout %t, unknown %t, ok %t", timeout, unknown, err == nil)]++
				mu.Unlock()
				switch {
				case timeout && unknown:
					t.Errorf("%s: %v is both", cmd, err)
				case timeout && s.wasSent(cmd):
					t.Errorf("%s: reported not applied (%v) but sent", cmd, err)
				case !timeout && !unknown && err != nil:
					t.Errorf("%s: %v", cmd, err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("outcomes: %v", count)
}

// At most MaxInflight batches are between Send and the end of their Wait;
// writes that arrive meanwhile queue up, and each batch that ends lets
// exactly one more go.
func TestInflightLimit(t *testing.T) {
	const limit = 2
	s := &sender{hold: true}
	q := newQueue(t, s, limit)
	var errs []<-chan error
	for i := range limit {
		errs = append(errs, apply(context.Background(), q, fmt.Sprintf("first%d", i)))
		waitFor(t, "a batch to be sent", func() bool { return s.sends() == i+1 })
	}
	for i := range 10 {
		errs = append(errs, apply(context.Background(), q, fmt.Sprintf("later%d", i)))
	}
	waitFor(t, "the later writes to queue up", func() bool { return q.Len() == 10 })
	if s.sends() != limit {
		t.Fatalf("%d batches sent with %d slots", s.sends(), limit)
	}
	s.releaseBatch(0)
	// One slot frees: the ten queued writes leave together as one batch.
	waitFor(t, "the next batch", func() bool { return s.sends() == limit+1 })
	if got := len(s.batch(limit)); got != 10 {
		t.Fatalf("the next batch has %d writes, want the 10 queued", got)
	}
	for i := 1; i <= limit; i++ {
		s.releaseBatch(i)
	}
	for _, ch := range errs {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if _, most := s.waiting(); most != limit {
		t.Fatalf("at most %d batches were in flight at once, want %d", most, limit)
	}
}

// Close fails what is queued (not applied, never sent), ends the Waits of
// what is in flight through Send's context, returns only once they have
// returned, and refuses writes after it.
func TestCloseQueuedAndInflight(t *testing.T) {
	s := &sender{hold: true}
	q := New(Config[string, string]{
		Where: "test", MaxBatch: 64, MaxBytes: 1 << 20, MaxInflight: 1, Size: size, Send: s.send,
	})
	inflight := apply(context.Background(), q, "inflight")
	waitFor(t, "the first write to be sent", func() bool { return s.sends() == 1 })
	queued := apply(context.Background(), q, "queued")
	waitFor(t, "the second write to be queued", func() bool { return q.Len() == 1 })
	q.Close()
	if now, _ := s.waiting(); now != 0 {
		t.Fatal("Close returned before the in-flight batch's Wait did")
	}
	if err := <-inflight; !errors.Is(err, kv.ErrOutcomeUnknown) || !errors.Is(err, context.Canceled) {
		t.Fatalf("in-flight write at Close: %v, want what its Wait said", err)
	}
	if err := <-queued; !errors.Is(err, kv.ErrClosed) || errors.Is(err, kv.ErrOutcomeUnknown) {
		t.Fatalf("queued write at Close: %v, want kv.ErrClosed", err)
	}
	if s.wasSent("queued") {
		t.Fatal("a write failed with kv.ErrClosed was sent")
	}
	// Bounded: a write queued after Close would wait for ever.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := q.Apply(ctx, "late"); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
	if _, errs := q.ApplyMany([]context.Context{ctx}, []string{"late"}); !errors.Is(errs[0], kv.ErrClosed) {
		t.Fatalf("ApplyMany after Close: %v", errs[0])
	}
	q.Close() // idempotent
}

// Writes racing Close all return, each either answered by its batch or
// failed with kv.ErrClosed without being sent: none is left in a queue
// nobody drains.
func TestApplyRacesClose(t *testing.T) {
	for range 50 {
		s := &sender{}
		q := New(Config[string, string]{
			Where: "test", MaxBatch: 8, MaxBytes: 1 << 20, MaxInflight: 2, Size: size, Send: s.send,
		})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					cmd := fmt.Sprintf("w%d-%d", w, i)
					_, err := q.Apply(context.Background(), cmd)
					switch {
					case errors.Is(err, kv.ErrClosed):
						if s.wasSent(cmd) {
							t.Errorf("%s failed with %v but was sent", cmd, err)
						}
						return
					case err != nil:
						t.Errorf("write racing Close: %v", err)
						return
					}
				}
			})
		}
		waitFor(t, "batches to flow", func() bool { return s.sends() > 0 })
		q.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("writes racing Close never returned")
		}
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New accepted MaxInflight 0")
		}
	}()
	New(Config[string, string]{MaxBatch: 1, MaxBytes: 1, Size: size,
		Send: func(context.Context, []context.Context, []string) Wait[string] { return nil }})
}

// With InOrder the Waits run one after another in send order: a later
// batch's callers are answered only after the earlier batch's Wait
// returned, even when the later one's outcome is ready first. Without it
// each Wait runs on its own and answers as soon as it can.
func TestInOrder(t *testing.T) {
	for _, inOrder := range []bool{true, false} {
		t.Run(fmt.Sprintf("InOrder=%v", inOrder), func(t *testing.T) {
			s := &sender{hold: true}
			q := New(Config[string, string]{
				Where: "test", MaxBatch: 1, MaxBytes: 1 << 20, MaxInflight: 2,
				Size: size, Send: s.send, InOrder: inOrder,
			})
			t.Cleanup(q.Close)
			first := apply(context.Background(), q, "first")
			waitFor(t, "the first batch", func() bool { return s.sends() == 1 })
			second := apply(context.Background(), q, "second")
			waitFor(t, "the second batch", func() bool { return s.sends() == 2 })
			s.releaseBatch(1)
			if inOrder {
				select {
				case err := <-second:
					t.Fatalf("the second batch was answered (%v) before the first's Wait returned", err)
				case <-time.After(50 * time.Millisecond): // a window for a wrong answer to show
				}
			} else if err := <-second; err != nil {
				t.Fatal(err)
			}
			s.releaseBatch(0)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if inOrder {
				if err := <-second; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// With PerRound, a freed slot carries as many batches as the queue holds
// (up to PerRound), each cut by the user's rule, in arrival order: writers
// of a few hot keys leave together in one round instead of one batch per
// slot. The slot frees once every batch of the round has returned, and
// each batch is answered as its own Wait returns.
func TestPerRound(t *testing.T) {
	for _, tc := range []struct {
		name        string
		perRound    int
		wantBatches []int // sizes of the batches the second round carries
	}{
		{"one batch per round", 1, []int{3}},
		{"rounds of up to 2", 2, []int{3, 3}},
		{"rounds of up to 64", 64, []int{3, 3, 3, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sender{hold: true}
			q := New(Config[string, string]{
				Where: "test", MaxBatch: 64, MaxBytes: 1 << 20, MaxInflight: 1, PerRound: tc.perRound,
				Size: size, Split: testSplit, Send: s.send, InOrder: true,
			})
			t.Cleanup(q.Close)
			first := apply(context.Background(), q, "first")
			waitFor(t, "the first round", func() bool { return s.sends() == 1 })
			// Ten writes to three keys queue up while the only slot is held.
			var errs []<-chan error
			for i := range 10 {
				errs = append(errs, apply(context.Background(), q, fmt.Sprintf("k%d#%d", i%3, i)))
				waitFor(t, "the write to queue", func() bool { return q.Len() == i+1 })
			}
			s.releaseBatch(0)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			want := 1 + len(tc.wantBatches)
			waitFor(t, "the second round", func() bool { return s.sends() == want })
			var got []int
			var order []string
			for i := 1; i < want; i++ {
				got = append(got, len(s.batch(i)))
				order = append(order, s.batch(i)...)
			}
			if !slices.Equal(got, tc.wantBatches) {
				t.Fatalf("the second round's batches have %v writes, want %v", got, tc.wantBatches)
			}
			if q.Len() != 10-len(order) {
				t.Fatalf("%d writes still queued after a round of %d, want %d", q.Len(), len(order), 10-len(order))
			}
			for i, c := range order {
				if want := fmt.Sprintf("k%d#%d", i%3, i); c != want {
					t.Fatalf("write %d of the round is %s, want %s (arrival order)", i, c, want)
				}
			}
			// The round's first batch is answered when its Wait returns,
			// before the round's slot frees.
			if len(tc.wantBatches) > 1 {
				s.releaseBatch(1)
				if err := <-errs[0]; err != nil {
					t.Fatal(err)
				}
				errs = errs[1:]
				if s.sends() != want {
					t.Fatalf("a round was sent before the slot freed: %d sends", s.sends())
				}
			}
			// Release the rest, batch by batch, until every write is sent.
			next := 1
			if len(tc.wantBatches) > 1 {
				next = 2
			}
			for ; q.Len() > 0 || next < s.sends(); next++ {
				waitFor(t, "the next batch", func() bool { return s.sends() > next })
				s.releaseBatch(next)
			}
			for _, ch := range errs {
				if err := <-ch; err != nil {
					t.Fatal(err)
				}
			}
			if _, most := s.waiting(); most > tc.perRound {
				t.Fatalf("%d batches were in flight at once, want at most one round of %d", most, tc.perRound)
			}
		})
	}
}
