package writeq

import (
	"context"
	"fmt"
	"sync"

	"github.com/raftkv/raftkv/kv"
)

// Fit says where a command goes relative to the batch gathered so far
// (Config.Split).
type Fit int

const (
	// Join: the command joins the batch.
	Join Fit = iota
	// Next: the batch ends before the command, which starts the next one.
	// An empty batch takes any command: there Next means Join.
	Next
	// Alone: the command travels in a batch of its own. The batch ends
	// before it, unless it is empty, and right after it.
	Alone
)

// Outcome is what one write's caller is told: its result, or the error
// applying it returned.
type Outcome[R any] struct {
	Res R
	Err error
}

// Wait blocks until a batch handed on by Send has its fate decided, and
// returns one outcome per command, in the batch's order, or one error for
// the whole batch (then outs is ignored). A missing outcome is reported to
// its caller as kv.ErrOutcomeUnknown.
type Wait[R any] func() (outs []Outcome[R], err error)

// Config configures a Queue. Size and Send are required; MaxBatch,
// MaxBytes and MaxInflight must be positive.
type Config[C, R any] struct {
	// Where names what a batch is handed to ("raft", "the leader") in the
	// errors of writes that were not, or were, handed on.
	Where string
	// MaxBatch bounds the commands of one batch.
	MaxBatch int
	// MaxBytes bounds the summed Size of a batch's commands; a command
	// larger than that travels alone.
	MaxBytes int
	// MaxInflight bounds the rounds between Send and the end of their
	// Waits. A round is one batch, or with PerRound more than one.
	MaxInflight int
	// PerRound is how many batches one round may carry (0 or 1: one).
	// Holding an in-flight slot, the gatherer forms batches until the
	// queue is empty or the round is full, hands each on, and frees the
	// slot once all their Waits have returned. For raft, where a batch is
	// an entry and Split ends an entry wherever a key repeats, this lets
	// many writers of a few hot keys fill many entries at once, which reach
	// raft together and share one log write, instead of waiting in line
	// for a slot per entry.
	PerRound int
	// Size is a command's size in bytes, as MaxBytes counts it.
	Size func(C) int
	// Split, if set, is the user's own rule for where a batch ends: where
	// next goes, given the commands gathered so far (possibly none). It
	// runs under the queue's lock: it must be quick and must not call the
	// Queue.
	Split func(batch []C, next C) Fit
	// InOrder runs the Waits one after another on one goroutine, in the
	// order the batches were sent, instead of each on a goroutine of its
	// own. For raft, whose futures complete in log order anyway, this
	// frees the in-flight slots back to back as entries complete together,
	// so the next entries reach raft together and share its disk writes
	// and the state machine's commits (measured: with transactions, each
	// an entry of its own, a goroutine per Wait cut the leader's entries
	// per state machine batch from 1.9 to 1.2 and throughput by 15%). A
	// Wait then must not depend on a later batch's.
	InOrder bool
	// Send hands a batch on: cmds in arrival order, ctxs[i] the context of
	// the caller of cmds[i] (for its deadline; Send must not wait for it).
	// It runs on the gatherer goroutine, one batch at a time and in the
	// order the batches were formed (so that, for raft, log order is
	// arrival order), and should return quickly: the work of waiting
	// belongs in the Wait it returns (non-nil), which the queue runs on a
	// goroutine of its own (or on the completer, InOrder). ctx is cancelled
	// by Close: a Wait still running then must end soon (its writes'
	// outcome is unknown).
	Send func(ctx context.Context, ctxs []context.Context, cmds []C) Wait[R]
}

// Queue gathers concurrent writes into batches and answers each write with
// its own outcome. Its methods are safe for concurrent use. See the package
// documentation for its invariants.
type Queue[C, R any] struct {
	cfg Config[C, R]

	mu     sync.Mutex
	queue  []*pending[C, R]
	closed bool // set by Close under mu: nothing is queued after it

	wake    chan struct{}       // a write was queued
	inorder chan []flight[C, R] // with InOrder: gatherer -> completer, rounds in send order
	slots   chan struct{}       // one token per round between Send and the end of its Waits
	life    context.Context
	kill    context.CancelFunc // cancels life
	stop    chan struct{}      // closed by Close: the gatherer returns
	once    sync.Once
	wg      sync.WaitGroup // the gatherer and every Wait's goroutine
}

// flight is a batch handed on and the Wait for its fate.
type flight[C, R any] struct {
	batch []*pending[C, R]
	wait  Wait[R]
}

// pending is one caller's write; state decides whether it was handed on or
// abandoned.
type pending[C, R any] struct {
	ctx   context.Context
	cmd   C
	size  int
	state State
	done  chan Outcome[R] // buffered: answering never blocks
}

// New starts a Queue's gatherer; Close stops it.
func New[C, R any](cfg Config[C, R]) *Queue[C, R] {
	if cfg.MaxBatch < 1 || cfg.MaxBytes < 1 || cfg.MaxInflight < 1 || cfg.Size == nil || cfg.Send == nil {
		panic(fmt.Sprintf("writeq: invalid config: MaxBatch %d, MaxBytes %d, MaxInflight %d, Size or Send missing: %t",
			cfg.MaxBatch, cfg.MaxBytes, cfg.MaxInflight, cfg.Size == nil || cfg.Send == nil))
	}
	life, kill := context.WithCancel(context.Background())
	q := &Queue[C, R]{
		cfg:   cfg,
		wake:  make(chan struct{}, 1),
		slots: make(chan struct{}, cfg.MaxInflight),
		life:  life,
		kill:  kill,
		stop:  make(chan struct{}),
	}
	if q.cfg.PerRound < 1 {
		q.cfg.PerRound = 1
	}
	if cfg.InOrder {
		q.inorder = make(chan []flight[C, R], cfg.MaxInflight)
		q.wg.Add(1)
		go q.complete()
	}
	q.wg.Add(1)
	go q.gather()
	return q
}

// Apply queues cmd for the next batch and returns its outcome: the result,
// or an error wrapping kv.ErrTimeout (ctx ended before cmd was handed on:
// not applied), kv.ErrOutcomeUnknown (ctx ended after), kv.ErrClosed (the
// queue is closed: not applied), or what the batch's Wait said.
func (q *Queue[C, R]) Apply(ctx context.Context, cmd C) (R, error) {
	if ctx.Err() != nil {
		var zero R
		return zero, NotHanded(ctx, q.cfg.Where)
	}
	p := q.newPending(ctx, cmd)
	if err := q.enqueue(p); err != nil {
		var zero R
		return zero, err
	}
	return p.wait(q.cfg.Where)
}

// ApplyMany queues cmds together, in order, each bounded by its own context
// (ctxs[i] for cmds[i]), and returns each one's outcome as Apply does.
func (q *Queue[C, R]) ApplyMany(ctxs []context.Context, cmds []C) ([]R, []error) {
	res := make([]R, len(cmds))
	errs := make([]error, len(cmds))
	ps := make([]*pending[C, R], 0, len(cmds))
	for i, cmd := range cmds {
		if ctxs[i].Err() != nil {
			errs[i] = NotHanded(ctxs[i], q.cfg.Where)
			continue
		}
		ps = append(ps, q.newPending(ctxs[i], cmd))
	}
	if err := q.enqueue(ps...); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return res, errs
	}
	j := 0
	for i := range cmds {
		if errs[i] == nil {
			res[i], errs[i] = ps[j].wait(q.cfg.Where)
			j++
		}
	}
	return res, errs
}

// Len is the number of writes queued and not yet taken into a batch
// (including abandoned ones the gatherer has not dropped yet).
func (q *Queue[C, R]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// Close stops the queue: writes still queued fail with kv.ErrClosed (never
// handed on), the context given to Send is cancelled, and Close returns
// once the gatherer and every Wait have returned. Apply after Close fails
// with kv.ErrClosed. Close is idempotent.
func (q *Queue[C, R]) Close() {
	q.once.Do(func() {
		q.mu.Lock()
		queued := q.queue
		q.queue = nil
		q.closed = true
		q.mu.Unlock()
		for _, p := range queued {
			if p.state.Abandon() {
				p.done <- Outcome[R]{Err: q.closedError()}
			}
		}
		q.kill()
		close(q.stop)
		q.wg.Wait()
	})
}

func (q *Queue[C, R]) closedError() error {
	return fmt.Errorf("write queue to %s: %w", q.cfg.Where, kv.ErrClosed)
}

func (q *Queue[C, R]) newPending(ctx context.Context, cmd C) *pending[C, R] {
	return &pending[C, R]{ctx: ctx, cmd: cmd, size: q.cfg.Size(cmd), done: make(chan Outcome[R], 1)}
}

// enqueue appends ps to the queue and wakes the gatherer. Checking for
// closed and appending under one lock hold is what keeps a write from
// being queued after Close emptied the queue, where nobody would answer it.
func (q *Queue[C, R]) enqueue(ps ...*pending[C, R]) error {
	if len(ps) == 0 {
		return nil
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return q.closedError()
	}
	q.queue = append(q.queue, ps...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// wait returns p's outcome, or what its caller giving up means. An outcome
// already given wins over the caller's context ending at the same moment.
func (p *pending[C, R]) wait(where string) (R, error) {
	select {
	case o := <-p.done:
		return o.Res, o.Err
	case <-p.ctx.Done():
		select {
		case o := <-p.done:
			return o.Res, o.Err
		default:
		}
		var zero R
		return zero, p.state.GiveUp(p.ctx, where)
	}
}

// gather turns the queue into batches for as long as the queue lives: it
// takes an in-flight slot, then the next round of batches (up to PerRound,
// while the queue holds writes), and hands each batch to Send.
func (q *Queue[C, R]) gather() {
	defer q.wg.Done()
	if q.inorder != nil {
		defer close(q.inorder)
	}
	for {
		select {
		case <-q.stop:
			return
		case <-q.wake:
		}
		for {
			select {
			case <-q.stop:
				return
			case q.slots <- struct{}{}:
			}
			var round []flight[C, R]
			for len(round) < q.cfg.PerRound {
				batch, cmds := q.take()
				if len(batch) == 0 {
					break
				}
				ctxs := make([]context.Context, len(batch))
				for i, p := range batch {
					ctxs[i] = p.ctx
				}
				round = append(round, flight[C, R]{batch, q.cfg.Send(q.life, ctxs, cmds)})
			}
			if len(round) == 0 {
				<-q.slots
				break
			}
			if q.inorder != nil {
				q.inorder <- round // never blocks: a slot is held
				continue
			}
			q.wg.Add(1)
			go func() {
				defer q.wg.Done()
				q.finish(round)
			}()
		}
	}
}

// complete runs the rounds' Waits in send order (InOrder) until the
// gatherer ends.
func (q *Queue[C, R]) complete() {
	defer q.wg.Done()
	for round := range q.inorder {
		q.finish(round)
	}
}

// finish runs a round's Waits in order, answering each batch's callers as
// its Wait returns, and frees the round's slot after the last.
func (q *Queue[C, R]) finish(round []flight[C, R]) {
	for i, f := range round {
		outs, err := f.wait()
		if i == len(round)-1 {
			<-q.slots
		}
		for j, p := range f.batch {
			switch {
			case err != nil:
				p.done <- Outcome[R]{Err: err}
			case j < len(outs):
				p.done <- outs[j]
			default:
				p.done <- Outcome[R]{Err: fmt.Errorf("%w: %s answered %d of a batch of %d writes", kv.ErrOutcomeUnknown, q.cfg.Where, len(outs), len(f.batch))}
			}
		}
	}
}

// take removes the next batch from the queue and marks its writes handed
// on: in arrival order, up to MaxBatch commands and MaxBytes, cut where
// Split says. Writes whose callers gave up are dropped (and answered: not
// applied).
func (q *Queue[C, R]) take() ([]*pending[C, R], []C) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var batch []*pending[C, R]
	var cmds []C
	size, i := 0, 0
	for ; i < len(q.queue) && len(batch) < q.cfg.MaxBatch; i++ {
		p := q.queue[i]
		if p.ctx.Err() != nil || !p.state.Queued() {
			if p.state.Abandon() {
				p.done <- Outcome[R]{Err: NotHanded(p.ctx, q.cfg.Where)}
			}
			continue
		}
		fit := Join
		if q.cfg.Split != nil {
			fit = q.cfg.Split(cmds, p.cmd)
		}
		if len(batch) > 0 && (fit != Join || size+p.size > q.cfg.MaxBytes) {
			break
		}
		if !p.state.Hand() {
			continue // abandoned by its caller just now
		}
		batch = append(batch, p)
		cmds = append(cmds, p.cmd)
		size += p.size
		if fit == Alone {
			i++
			break
		}
	}
	clear(q.queue[:i]) // taken or dropped: let them be collected
	q.queue = q.queue[i:]
	return batch, cmds
}
