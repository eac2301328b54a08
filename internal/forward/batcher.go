package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/handoff"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Config configures a Batcher. Leader and Client are required.
type Config struct {
	// Leader returns the leader's API address (host:port), or "" when no
	// leader is known.
	Leader func() string
	// Client sends the batches: a pooled keep-alive client.
	Client *http.Client
	// Header is added to every batch request (the forwarding node's id).
	Header http.Header
	// MaxBatch bounds the commands of one batch (default 256, at most
	// MaxCommands); MaxBytes their keys and values (default 4 MiB; a
	// larger command travels alone).
	MaxBatch int
	MaxBytes int
	// MaxInflight bounds the batches on their way at once (default 4).
	// While they are, new writes queue up and form the next batch.
	MaxInflight int
	// Observe, if set, is called with the size of every batch sent.
	Observe func(commands int)
}

// Batcher gathers concurrent writes into batches for the leader. Its
// gatherer goroutine turns the queue into batches and starts one sender
// goroutine per batch, at most MaxInflight at once; Close stops them.
type Batcher struct {
	cfg Config

	mu     sync.Mutex
	queue  []*pending
	closed bool // set by Close under mu: nothing is queued after it

	wake  chan struct{} // a write was queued
	slots chan struct{} // one token per batch on its way
	base  context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// pending is one caller's write; state decides whether it was sent to the
// leader or abandoned by its caller (handoff).
type pending struct {
	ctx   context.Context
	cmd   *store.Command
	size  int
	state handoff.State
	done  chan Outcome
}

// New starts a Batcher.
func New(cfg Config) *Batcher {
	if cfg.MaxBatch <= 0 || cfg.MaxBatch > MaxCommands {
		cfg.MaxBatch = min(max(cfg.MaxBatch, 256), MaxCommands)
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 4 << 20
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4
	}
	base, stop := context.WithCancel(context.Background())
	b := &Batcher{
		cfg:   cfg,
		wake:  make(chan struct{}, 1),
		slots: make(chan struct{}, cfg.MaxInflight),
		base:  base,
		stop:  stop,
	}
	b.wg.Add(1)
	go b.gather()
	return b
}

// Close stops the Batcher: batches on their way are cancelled (their
// writes fail with kv.ErrOutcomeUnknown) and queued writes fail with
// kv.ErrClosed. Apply after Close fails with kv.ErrClosed.
func (b *Batcher) Close() {
	b.stop()
	b.wg.Wait()
	b.mu.Lock()
	q := b.queue
	b.queue = nil
	b.closed = true
	b.mu.Unlock()
	for _, p := range q {
		if p.state.Abandon() {
			p.done <- Outcome{Err: fmt.Errorf("forward: %w", kv.ErrClosed)}
		}
	}
}

// Apply sends cmd to the leader with the next batch and returns its
// outcome: the result (whose Err may be the command's own failed
// condition), or an error wrapping kv.ErrNoLeader (not applied),
// kv.ErrTimeout (ctx ended before it was sent: not applied),
// kv.ErrOutcomeUnknown, or what the leader's apply returned. It never
// returns kv.ErrNotLeader: a leader that no longer leads applied nothing,
// and the write is not sent on again.
func (b *Batcher) Apply(ctx context.Context, cmd *store.Command) (*store.Result, error) {
	p := &pending{ctx: ctx, cmd: cmd, size: cmd.Size(), done: make(chan Outcome, 1)}
	b.mu.Lock()
	if b.closed || b.base.Err() != nil {
		// Closing: the gatherer may be gone, and Close may have failed the
		// queue already; a write queued now would wait for ever.
		b.mu.Unlock()
		return nil, fmt.Errorf("forward: %w", kv.ErrClosed)
	}
	b.queue = append(b.queue, p)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	select {
	case o := <-p.done:
		return o.Res, o.Err
	case <-ctx.Done():
		return nil, p.state.GiveUp(ctx, "the leader")
	}
}

func (b *Batcher) gather() {
	defer b.wg.Done()
	for {
		select {
		case <-b.base.Done():
			return
		case <-b.wake:
		}
		for {
			select {
			case <-b.base.Done():
				return
			case b.slots <- struct{}{}:
			}
			batch := b.take()
			if len(batch) == 0 {
				<-b.slots
				break
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() { <-b.slots }()
				b.send(batch)
			}()
		}
	}
}

// take removes the next batch from the queue, in arrival order, dropping
// the writes whose callers gave up.
func (b *Batcher) take() []*pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch []*pending
	size, i := 0, 0
	for ; i < len(b.queue) && len(batch) < b.cfg.MaxBatch; i++ {
		p := b.queue[i]
		if p.ctx.Err() != nil || !p.state.Queued() {
			if p.state.Abandon() {
				p.done <- Outcome{Err: handoff.NotHanded(p.ctx, "the leader")}
			}
			continue
		}
		if len(batch) > 0 && size+p.size > b.cfg.MaxBytes {
			break
		}
		if !p.state.Hand() {
			continue // abandoned just now
		}
		batch = append(batch, p)
		size += p.size
	}
	b.queue = b.queue[i:]
	return batch
}

// send delivers one batch and answers its callers.
func (b *Batcher) send(batch []*pending) {
	outs, err := b.roundTrip(batch)
	for i, p := range batch {
		if err != nil {
			p.done <- Outcome{Err: err}
			continue
		}
		p.done <- outs[i]
	}
}

func (b *Batcher) roundTrip(batch []*pending) ([]Outcome, error) {
	leader := b.cfg.Leader()
	if leader == "" {
		return nil, fmt.Errorf("%w: no leader known", kv.ErrNoLeader)
	}
	if b.cfg.Observe != nil {
		b.cfg.Observe(len(batch))
	}
	cmds := make([]*store.Command, len(batch))
	timeouts := make([]time.Duration, len(batch))
	// The request lives as long as the most patient of its writes; one
	// without a deadline waits as long as it takes (or until Close).
	var latest time.Time
	bounded := true
	for i, p := range batch {
		cmds[i] = p.cmd
		if dl, ok := p.ctx.Deadline(); ok {
			timeouts[i] = max(time.Until(dl), time.Millisecond)
			latest = later(latest, dl)
		} else {
			bounded = false
		}
	}
	ctx := b.base
	if bounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	body := AppendRequest(nil, cmds, timeouts)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+leader+Path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: forward to %s: %w", kv.ErrNoLeader, leader, err)
	}
	for name, v := range b.cfg.Header {
		req.Header[name] = v
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("%w: leader at %s unreachable: %w", kv.ErrNoLeader, leader, err)
		}
		return nil, fmt.Errorf("%w: forwarding to the leader at %s: %w", kv.ErrOutcomeUnknown, leader, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the leader's answer from %s: %w", kv.ErrOutcomeUnknown, leader, err)
	}
	if resp.StatusCode != http.StatusOK {
		// The leader refuses a batch as a whole before applying any of it.
		return nil, refusal(leader, resp.StatusCode, data)
	}
	outs, err := DecodeResponse(data, len(batch))
	if err != nil {
		return nil, fmt.Errorf("%w: the leader at %s answered: %w", kv.ErrOutcomeUnknown, leader, err)
	}
	for i := range outs {
		if errors.Is(outs[i].Err, kv.ErrNotLeader) {
			outs[i].Err = fmt.Errorf("%w: %s lost the leadership before applying the write", kv.ErrNoLeader, leader)
		}
	}
	return outs, nil
}

// refusal is the error of a batch the leader refused: nothing was applied.
func refusal(leader string, status int, body []byte) error {
	var er kv.ErrorResponse
	_ = json.Unmarshal(body, &er)
	eb := er.Error
	switch {
	case eb.Code == kv.Code(kv.ErrNotLeader), eb.Code == kv.Code(kv.ErrNoLeader), eb.Code == kv.Code(kv.ErrClosed):
		return fmt.Errorf("%w: %s refused the forwarded write: %s", kv.ErrNoLeader, leader, eb.Message)
	default:
		return fmt.Errorf("forward: %s refused the batch with %d %s: %s (not applied)", leader, status, eb.Code, eb.Message)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
