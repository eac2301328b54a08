package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/writeq"
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
	// Scheme is "http" (the default) or "https" (a cluster with TLS: then
	// Client carries the member certificate).
	Scheme string
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
	// MaxWait bounds a batch on its way: its request ends at the latest
	// deadline of its writes, and never later than MaxWait after it left
	// (default 10s), so a leader that stops answering (a partition that
	// drops packets rather than refusing them) holds a slot that long at
	// most. Writes still waiting then have an unknown outcome.
	MaxWait time.Duration
	// Observe, if set, is called with the size of every batch sent.
	Observe func(commands int)
}

// DefaultMaxWait is Config.MaxWait's default.
const DefaultMaxWait = 10 * time.Second

// Batcher gathers concurrent writes into batches for the leader. Its queue
// (internal/writeq) owns the gathering, the in-flight bound and closing;
// the Batcher supplies only the send: one POST of Path per batch, made on
// the queue's goroutine for that batch, at most MaxInflight at once.
type Batcher struct {
	cfg Config
	q   *writeq.Queue[*store.Command, *store.Result]

	mu       sync.Mutex
	inflight map[*flight]struct{} // round trips on their way
}

// flight is one batch's round trip: the leader it went to, and how to
// abandon it.
type flight struct {
	leader string
	cancel context.CancelCauseFunc
}

// errLeaderChanged is the cause of a round trip abandoned because the node
// learned of another leader (or of none) while it was on its way.
var errLeaderChanged = errors.New("the leader changed")

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
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	b := &Batcher{cfg: cfg, inflight: map[*flight]struct{}{}}
	b.q = writeq.New(writeq.Config[*store.Command, *store.Result]{
		Where:       "the leader",
		MaxBatch:    cfg.MaxBatch,
		MaxBytes:    cfg.MaxBytes,
		MaxInflight: cfg.MaxInflight,
		Size:        (*store.Command).Size,
		Send:        b.send,
	})
	return b
}

// Close stops the Batcher: batches on their way are cancelled (their
// writes fail with kv.ErrOutcomeUnknown) and queued writes fail with
// kv.ErrClosed. Apply after Close fails with kv.ErrClosed.
func (b *Batcher) Close() { b.q.Close() }

// Apply sends cmd to the leader with the next batch and returns its
// outcome: the result (whose Err may be the command's own failed
// condition), or an error wrapping kv.ErrNoLeader (not applied),
// kv.ErrTimeout (ctx ended before it was sent: not applied),
// kv.ErrOutcomeUnknown, or what the leader's apply returned. It never
// returns kv.ErrNotLeader: a leader that no longer leads applied nothing,
// and the write is not sent on again.
func (b *Batcher) Apply(ctx context.Context, cmd *store.Command) (*store.Result, error) {
	return b.q.Apply(ctx, cmd)
}

// LeaderChanged tells the Batcher the API address of the leader the node
// now knows ("" for none). Batches on their way to any other are abandoned
// at once, freeing their slots for the new leader: a batch already sent
// may have been applied, so its writes answer kv.ErrOutcomeUnknown (never
// a guess); one still connecting answers kv.ErrNoLeader (not sent). The
// node calls it on every change its raft leadership watcher reports.
func (b *Batcher) LeaderChanged(leader string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for f := range b.inflight {
		if f.leader != leader {
			f.cancel(errLeaderChanged)
			delete(b.inflight, f)
		}
	}
}

func (b *Batcher) track(f *flight) {
	b.mu.Lock()
	b.inflight[f] = struct{}{}
	b.mu.Unlock()
}

func (b *Batcher) untrack(f *flight) {
	b.mu.Lock()
	delete(b.inflight, f)
	b.mu.Unlock()
}

// send returns the round trip of one batch, which the queue runs on a
// goroutine of its own; ctx ends when the Batcher is closed.
func (b *Batcher) send(ctx context.Context, ctxs []context.Context, cmds []*store.Command) writeq.Wait[*store.Result] {
	return func() ([]writeq.Outcome[*store.Result], error) {
		outs, err := b.roundTrip(ctx, ctxs, cmds)
		if err != nil {
			return nil, err
		}
		res := make([]writeq.Outcome[*store.Result], len(outs))
		for i, o := range outs {
			res[i] = writeq.Outcome[*store.Result](o)
		}
		return res, nil
	}
}

func (b *Batcher) roundTrip(ctx context.Context, ctxs []context.Context, cmds []*store.Command) ([]Outcome, error) {
	leader := b.cfg.Leader()
	if leader == "" {
		return nil, fmt.Errorf("%w: no leader known", kv.ErrNoLeader)
	}
	// The request lives as long as the most patient of its writes, and
	// at most MaxWait; a leader change abandons it (LeaderChanged).
	timeouts := make([]time.Duration, len(cmds))
	latest := time.Now().Add(b.cfg.MaxWait)
	for i, c := range ctxs {
		if dl, ok := c.Deadline(); ok {
			timeouts[i] = max(time.Until(dl), time.Millisecond)
		}
	}
	if dl, ok := latestDeadline(ctxs); ok && dl.Before(latest) {
		latest = dl
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctx, stop := context.WithDeadline(ctx, latest)
	defer stop()
	f := &flight{leader: leader, cancel: cancel}
	b.track(f)
	defer b.untrack(f)
	if b.cfg.Leader() != leader {
		// Changed before the batch was tracked: LeaderChanged missed it.
		return nil, fmt.Errorf("%w: the leader changed before the batch left for %s", kv.ErrNoLeader, leader)
	}
	if b.cfg.Observe != nil {
		b.cfg.Observe(len(cmds))
	}
	body := AppendRequest(nil, cmds, timeouts)
	// Whether the request ever got a connection: without one nothing was
	// sent, however the round trip ended (net/http reports a context that
	// ends while the connection is being made as the context's error,
	// not as a dial error).
	var gotConn atomic.Bool
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) }})
	req, err := http.NewRequestWithContext(tctx, http.MethodPost, b.cfg.Scheme+"://"+leader+Path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: forward to %s: %w", kv.ErrNoLeader, leader, err)
	}
	for name, v := range b.cfg.Header {
		req.Header[name] = v
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		switch {
		case kv.NotSent(err):
			return nil, fmt.Errorf("%w: leader at %s unreachable: %w", kv.ErrNoLeader, leader, err)
		case !gotConn.Load() && b.tracesConns():
			// Not sent: say why it stopped.
			switch {
			case errors.Is(context.Cause(ctx), errLeaderChanged), ctx.Err() == nil:
				return nil, fmt.Errorf("%w: no connection to the leader at %s: %w", kv.ErrNoLeader, leader, err)
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				return nil, fmt.Errorf("%w: no connection to the leader at %s in time: %w", kv.ErrTimeout, leader, err)
			}
			return nil, fmt.Errorf("%w: the batch for %s was not sent: %w", kv.ErrClosed, leader, err)
		case errors.Is(context.Cause(ctx), errLeaderChanged):
			return nil, fmt.Errorf("%w: abandoned the batch sent to %s: %w", kv.ErrOutcomeUnknown, leader, errLeaderChanged)
		}
		return nil, fmt.Errorf("%w: forwarding to the leader at %s: %w", kv.ErrOutcomeUnknown, leader, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		if errors.Is(context.Cause(ctx), errLeaderChanged) {
			err = errLeaderChanged
		}
		return nil, fmt.Errorf("%w: reading the leader's answer from %s: %w", kv.ErrOutcomeUnknown, leader, err)
	}
	if resp.StatusCode != http.StatusOK {
		// The leader refuses a batch as a whole before applying any of it.
		return nil, refusal(leader, resp.StatusCode, data)
	}
	outs, err := DecodeResponse(data, len(cmds))
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

// latestDeadline is the latest deadline among ctxs; false when one of
// them has none.
func latestDeadline(ctxs []context.Context) (time.Time, bool) {
	var latest time.Time
	for _, c := range ctxs {
		dl, ok := c.Deadline()
		if !ok {
			return time.Time{}, false
		}
		if dl.After(latest) {
			latest = dl
		}
	}
	return latest, len(ctxs) > 0
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

// tracesConns reports whether the Batcher's client reports the connections
// it hands out (httptrace's GotConn): net/http's own transport does; a
// RoundTripper of the caller's may not, and then a round trip without one
// cannot be taken for one that sent nothing.
func (b *Batcher) tracesConns() bool {
	switch b.cfg.Client.Transport.(type) {
	case nil, *http.Transport:
		return true
	}
	return false
}
