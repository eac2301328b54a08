package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/handoff"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Group commit: concurrent writes are gathered into one raft entry (one
// future, one log record, one replication slot), and each caller still
// gets its own result and index. A committer owns two goroutines: the
// gatherer, which turns the queue into entries and hands them to raft, and
// the completer, which waits for their futures in order and answers the
// callers. At most maxInflight entries are in raft at once; while they
// are, new writes queue up and form the next, larger, entry.
type committer struct {
	n           *Node
	maxBatch    int
	maxBytes    int
	maxInflight int

	mu    sync.Mutex
	queue []*pending

	wake     chan struct{} // a write was queued
	slots    chan struct{} // one token per entry raft may hold
	inflight chan flight   // gatherer -> completer, in log order
	stop     chan struct{}
	wg       sync.WaitGroup
}

// pending is one caller's write; state decides whether it was handed to
// raft or abandoned by its caller (handoff).
type pending struct {
	ctx   context.Context
	cmd   *store.Command
	size  int
	state handoff.State
	done  chan outcome
}

type outcome struct {
	res *store.Result
	err error
}

type flight struct {
	f     raft.ApplyFuture
	batch []*pending
}

func newCommitter(n *Node, maxBatch, maxBytes, maxInflight int) *committer {
	c := &committer{
		n: n, maxBatch: maxBatch, maxBytes: maxBytes, maxInflight: maxInflight,
		wake:     make(chan struct{}, 1),
		slots:    make(chan struct{}, maxInflight),
		inflight: make(chan flight, maxInflight),
		stop:     make(chan struct{}),
	}
	c.wg.Add(2)
	go c.gather()
	go c.complete()
	return c
}

// close stops the goroutines; writes still queued fail with kv.ErrClosed
// (never handed to raft), those in flight get what raft says on shutdown.
func (c *committer) close() {
	close(c.stop)
	c.wg.Wait()
	c.mu.Lock()
	q := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, p := range q {
		if p.state.Abandon() {
			p.done <- outcome{err: fmt.Errorf("apply: %w", kv.ErrClosed)}
		}
	}
}

// apply queues cmds for the next entries and waits for their results,
// each bounded by its own context.
func (c *committer) apply(ctxs []context.Context, cmds []*store.Command) ([]*store.Result, []error) {
	ps := make([]*pending, len(cmds))
	for i, cmd := range cmds {
		ps[i] = &pending{ctx: ctxs[i], cmd: cmd, size: cmd.Size(), done: make(chan outcome, 1)}
	}
	c.mu.Lock()
	c.queue = append(c.queue, ps...)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	res := make([]*store.Result, len(ps))
	errs := make([]error, len(ps))
	for i, p := range ps {
		res[i], errs[i] = p.wait()
	}
	return res, errs
}

// wait returns p's outcome, or what its caller giving up means.
func (p *pending) wait() (*store.Result, error) {
	select {
	case o := <-p.done:
		return o.res, o.err
	case <-p.ctx.Done():
		return nil, p.state.GiveUp(p.ctx, "raft")
	}
}

func (c *committer) gather() {
	defer c.wg.Done()
	defer close(c.inflight)
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		for {
			select {
			case <-c.stop:
				return
			case c.slots <- struct{}{}:
			}
			batch := c.take()
			if len(batch) == 0 {
				<-c.slots
				break
			}
			cmds := make([]*store.Command, len(batch))
			for i, p := range batch {
				cmds[i] = p.cmd
			}
			f := c.n.raft.Apply(store.EncodeEntry(nil, cmds), c.n.cfg.ApplyTimeout)
			c.inflight <- flight{f: f, batch: batch}
		}
	}
}

// take removes the next entry's writes from the queue: in arrival order,
// up to maxBatch writes and maxBytes, and stopping before a write that
// touches a key an earlier one of the entry touches (writes of one entry
// share its index, and two changes of one key must not share a
// mod_index). Transactions and prefix deletes touch many keys: they go in
// an entry of their own. Writes whose caller gave up are dropped.
func (c *committer) take() []*pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	var batch []*pending
	var keys [][]byte
	size, i := 0, 0
	for ; i < len(c.queue) && len(batch) < c.maxBatch; i++ {
		p := c.queue[i]
		if p.ctx.Err() != nil || !p.state.Queued() {
			if p.state.Abandon() {
				p.done <- outcome{err: handoff.NotHanded(p.ctx, "raft")}
			}
			continue
		}
		alone := p.cmd.Op == store.OpTxn || p.cmd.Op == store.OpDeletePrefix
		if len(batch) > 0 && (alone || size+p.size > c.maxBytes || touches(keys, p.cmd.Key)) {
			break
		}
		if !p.state.Hand() {
			continue // abandoned just now
		}
		batch = append(batch, p)
		keys = append(keys, p.cmd.Key)
		size += p.size
		if alone {
			i++
			break
		}
	}
	c.queue = c.queue[i:]
	return batch
}

func touches(keys [][]byte, key []byte) bool {
	for _, k := range keys {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// complete answers the callers of each entry once raft has applied it.
func (c *committer) complete() {
	defer c.wg.Done()
	for fl := range c.inflight {
		err := fl.f.Error()
		<-c.slots
		if err != nil {
			err = applyError(err)
			for _, p := range fl.batch {
				p.done <- outcome{err: err}
			}
			continue
		}
		rs, ok := fl.f.Response().([]*store.Result)
		for i, p := range fl.batch {
			if !ok || len(rs) != len(fl.batch) || rs[i] == nil {
				p.done <- outcome{err: fmt.Errorf("%w: unexpected state machine response %#v", kv.ErrOutcomeUnknown, fl.f.Response())}
				continue
			}
			res, err := commandOutcome(rs[i])
			p.done <- outcome{res: res, err: err}
		}
	}
}

// commandOutcome turns a command's Result into what Apply returns.
func commandOutcome(res *store.Result) (*store.Result, error) {
	switch {
	case res.Err == nil, errors.Is(res.Err, kv.ErrPreconditionFailed), errors.Is(res.Err, kv.ErrIdempotencyKeyReused):
		return res, nil // the command's own outcome, the same on every node
	case errors.Is(res.Err, store.ErrBadCommand):
		// Deterministic: every node skipped it. Nothing was applied.
		return nil, fmt.Errorf("apply at index %d: %w", res.Index, res.Err)
	default:
		// The entry is committed, but this node's state machine failed to
		// apply it; the others may have.
		return nil, fmt.Errorf("%w: state machine failed at index %d: %w", kv.ErrOutcomeUnknown, res.Index, res.Err)
	}
}
