package raftkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Watch streams the changes opts selects, from this node's own applied
// state (any node serves watches; a follower's lag is its replication
// lag). Each response holds every selected event of one raft index, in
// index order, with no gap and no duplicate; a response without events is
// a progress notification (see kv.WatchResponse), sent after
// opts.ProgressInterval without events. The sequence ends after it yields
// an error: a *kv.CompactedError when opts.FromIndex is older than the
// history kept, or when the watch fell so far behind that the history
// moved past it (list the keys and watch again from the listing's index
// + 1); kv.ErrTooManyWatchers; an error wrapping kv.ErrClosed when the
// node shuts down; ctx's error. Breaking out of the loop ends the watch.
// The yielded events are the caller's to keep.
func (n *Node) Watch(ctx context.Context, opts kv.WatchOptions) iter.Seq2[kv.WatchResponse, error] {
	return func(yield func(kv.WatchResponse, error) bool) {
		w, err := n.openWatch(opts)
		if err != nil {
			yield(kv.WatchResponse{}, err)
			return
		}
		defer w.Close()
		for {
			rs, err := w.Next(ctx)
			if err != nil {
				yield(kv.WatchResponse{}, err)
				return
			}
			for _, r := range rs {
				if !yield(cloneResponse(r), nil) {
					return
				}
			}
		}
	}
}

// cloneResponse copies r's events: the store shares them among watchers.
func cloneResponse(r kv.WatchResponse) kv.WatchResponse {
	out := kv.WatchResponse{Index: r.Index, Events: make([]kv.Event, len(r.Events))}
	for i, e := range r.Events {
		e.Key, e.Value = bytes.Clone(e.Key), bytes.Clone(e.Value)
		if e.Prev != nil {
			p := *e.Prev
			p.Key, p.Value = e.Key, bytes.Clone(p.Value)
			e.Prev = &p
		}
		out.Events[i] = e
	}
	return out
}

// watchers counts a node's open watches and blocking reads against
// Config.MaxWatchers.
type watchers struct{ open atomic.Int64 }

// acquire takes a slot, or fails with kv.ErrTooManyWatchers.
func (ws *watchers) acquire(limit int) error {
	if ws.open.Add(1) > int64(limit) {
		ws.open.Add(-1)
		return fmt.Errorf("%w: this node serves its limit of %d watches and blocking reads", kv.ErrTooManyWatchers, limit)
	}
	return nil
}

func (ws *watchers) release() { ws.open.Add(-1) }

// watch is an open watch of this node: the store's cursor, with a slot
// against MaxWatchers, progress notifications, and the end of the node.
type watch struct {
	n        *Node
	w        *store.Watcher
	progress time.Duration
	start    uint64
	started  bool // has returned anything (a later compaction is "slow")
	once     sync.Once
}

var _ httpapi.Watcher = (*watch)(nil)

// openWatch opens a watch; the caller must Close it.
func (n *Node) openWatch(opts kv.WatchOptions) (*watch, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if n.life.Err() != nil {
		return nil, fmt.Errorf("watch: %w", kv.ErrClosed)
	}
	if err := n.watchers.acquire(n.cfg.MaxWatchers); err != nil {
		n.metrics.watchRefused.Inc()
		return nil, err
	}
	if opts.FromIndex == 0 {
		// From now on; while a discarded kv.db is rebuilt, "now" is no
		// older than what the node had applied before its stop.
		applied := n.store.AppliedIndex()
		opts.FromIndex = max(applied, n.rebuild.until(applied)) + 1
	}
	w, err := n.store.Watch(opts)
	if err != nil {
		n.watchers.release()
		if errors.Is(err, kv.ErrCompacted) {
			n.metrics.watchEnded.WithLabelValues("compacted").Inc()
		}
		return nil, err
	}
	n.metrics.watchOpen.Inc()
	progress := opts.ProgressInterval
	if progress <= 0 {
		progress = kv.DefaultWatchProgress
	}
	return &watch{n: n, w: w, progress: progress, start: opts.FromIndex}, nil
}

// Next returns the next responses (see httpapi.Watcher): events, or a
// progress notification after w.progress without any.
func (w *watch) Next(ctx context.Context) ([]kv.WatchResponse, error) {
	// The node's end ends the watch: at once if it has come (AfterFunc
	// would cancel from another goroutine, and a stream with events ready
	// could go on delivering), or while Next waits.
	if w.n.life.Err() != nil {
		return nil, fmt.Errorf("watch: %w", kv.ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.n.life, cancel)()
	tctx, tcancel := context.WithTimeout(ctx, w.progress)
	defer tcancel()
	rs, err := w.w.Next(tctx)
	switch {
	case err == nil:
		w.started = true
		w.n.metrics.watchEvents.Add(float64(countEvents(rs)))
		return rs, nil
	case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		w.started = true
		return []kv.WatchResponse{{Index: w.w.Position() - 1}}, nil
	}
	if w.n.life.Err() != nil {
		return nil, fmt.Errorf("watch: %w", kv.ErrClosed)
	}
	if errors.Is(err, kv.ErrCompacted) {
		reason := "compacted"
		if w.started {
			reason = "slow"
		}
		w.n.metrics.watchEnded.WithLabelValues(reason).Inc()
	}
	return nil, err
}

// Start is the first index the watch looks at.
func (w *watch) Start() uint64 { return w.start }

// Close ends the watch and frees its slot.
func (w *watch) Close() {
	w.once.Do(func() {
		w.w.Close()
		w.n.watchers.release()
		w.n.metrics.watchOpen.Dec()
	})
}

func countEvents(rs []kv.WatchResponse) int {
	n := 0
	for _, r := range rs {
		n += len(r.Events)
	}
	return n
}

// blockUntilChanged is the wait of a blocking read (kv.ReadOptions.WaitIndex):
// it returns once the key (with prefix, any key under it) changed at an
// index above opts.WaitIndex, or opts.WaitTime passed, or at once when the
// history no longer reaches back to WaitIndex+1 (the change may be gone
// from it: the read answers with the current state). It fails only when
// ctx ends, the node closes, or the watch limit is reached.
func (n *Node) blockUntilChanged(ctx context.Context, key []byte, prefix bool, opts kv.ReadOptions) error {
	if opts.WaitIndex == 0 {
		return nil
	}
	wait := opts.WaitTime
	if wait <= 0 {
		wait = kv.DefaultBlockingWait
	}
	w, err := n.openWatch(kv.WatchOptions{Key: key, Prefix: prefix, FromIndex: opts.WaitIndex + 1, ProgressInterval: wait})
	if errors.Is(err, kv.ErrCompacted) {
		return nil
	}
	if err != nil {
		return err
	}
	defer w.Close()
	// Progress after wait means: no change in time; events mean a change.
	_, err = w.Next(ctx)
	if errors.Is(err, kv.ErrCompacted) {
		return nil
	}
	return err
}
