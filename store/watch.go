package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

// Watches. Every committed batch publishes its events to the hub, a
// shared, bounded window of the most recent ones in memory; a watcher is
// a cursor (the next index it has to look at), not a buffer. A watcher
// that keeps up reads the window; one that falls behind it (a slow
// consumer, or one that starts from an old index) reads the history
// bucket, in bounded pages, until it is back in the window, and ends with
// a *kv.CompactedError only when the history no longer holds the index it
// needs. Publishing never waits for a watcher, so no watcher slows
// applying or another watcher.
//
// A batch is committed to bbolt before it is published, so the history a
// watcher reads is never behind the window; the cursor only moves forward
// and every response is at or above it, so an index is never delivered
// twice or skipped.

// DefaultWatchWindow is the memory, in bytes of keys and values, that the
// window of recent events may hold.
const DefaultWatchWindow = 16 << 20

// historyPage bounds one read of the history bucket: a watcher reading
// far behind returns to its caller (and sees Close) between pages.
const historyPage = 1024

type hub struct {
	maxBytes int

	mu sync.Mutex
	// ring[head:] holds the responses of the indexes from start to through
	// that have events, in index order: every event of those indexes.
	// Entries before head are dropped ones, reclaimed by copying the live
	// part to a new array once they are the larger half (amortized O(1) a
	// publish). An element, once written, is never written again, so a
	// watcher filters a slice of the ring it took under mu without it.
	ring    []shared
	sizes   []int
	head    int
	bytes   int
	start   uint64
	through uint64
	notify  chan struct{} // closed and replaced at each publish
	closed  bool
}

func newHub(applied uint64, maxBytes int) *hub {
	return &hub{maxBytes: maxBytes, start: applied + 1, through: applied, notify: make(chan struct{})}
}

// publish adds the responses of a committed batch that ends at applied.
func (h *hub) publish(resps []kv.WatchResponse, applied uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range resps {
		n := responseSize(r)
		h.ring = append(h.ring, newShared(r))
		h.sizes = append(h.sizes, n)
		h.bytes += n
	}
	for h.bytes > h.maxBytes && h.head < len(h.ring) {
		h.bytes -= h.sizes[h.head]
		h.start = h.ring[h.head].full.Index + 1
		h.head++
	}
	if h.head > 0 && h.head >= len(h.ring)-h.head {
		live := len(h.ring) - h.head
		h.ring = append(make([]shared, 0, max(2*live, 64)), h.ring[h.head:]...)
		h.sizes = append(make([]int, 0, max(2*live, 64)), h.sizes[h.head:]...)
		h.head = 0
	}
	if applied > h.through {
		h.through = applied
	}
	if h.head == len(h.ring) && h.start <= h.through {
		h.start = h.through + 1
	}
	close(h.notify)
	h.notify = make(chan struct{})
}

// reset empties the window after a restore replaced the state at applied:
// watchers below it read the restored history.
func (h *hub) reset(applied uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring, h.sizes, h.head, h.bytes = nil, nil, 0, 0
	h.start, h.through = applied+1, applied
	close(h.notify)
	h.notify = make(chan struct{})
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.notify)
	}
}

// shared is a published response in the two forms a watcher that selects
// every event of its index delivers as they are, each encoding its JSON
// once for all such watchers (kv.WatchResponse.Shared): with the previous
// records and without them.
type shared struct {
	full, noPrev kv.WatchResponse
}

func newShared(r kv.WatchResponse) shared {
	s := shared{full: r.Shared()}
	s.noPrev = s.full
	copied := false
	for i, e := range r.Events {
		if e.Prev == nil {
			continue
		}
		if !copied {
			s.noPrev = kv.WatchResponse{Index: r.Index, Events: slices.Clone(r.Events)}.Shared()
			copied = true
		}
		s.noPrev.Events[i].Prev = nil
	}
	return s
}

func responseSize(r kv.WatchResponse) int {
	n := 16
	for _, e := range r.Events {
		n += 64 + len(e.Key) + len(e.Value)
		if e.Prev != nil {
			n += len(e.Prev.Value)
		}
	}
	return n
}

// historyStats mirrors the history for metrics.
type historyStats struct {
	floor  atomic.Uint64
	events atomic.Int64
}

func (h *historyStats) advance(floor uint64, added, removed int) {
	h.floor.Store(floor)
	h.events.Add(int64(added - removed))
}

// HistoryStats describes the change history: the oldest index whose events
// are kept, and how many events are kept.
func (s *Store) HistoryStats() (oldest uint64, events int64) {
	return s.history.floor.Load(), s.history.events.Load()
}

// historyBucket returns tx's history bucket, creating it (with its floor
// after applied) in a file that has none: one from a version without
// history, or restored from such a snapshot. It returns nil when the
// store keeps no history.
func (s *Store) historyBucket(tx *bbolt.Tx, applied uint64) (*bbolt.Bucket, error) {
	b := tx.Bucket(bucketHistory)
	if b == nil {
		var err error
		if b, err = tx.CreateBucket(bucketHistory); err != nil {
			return nil, err
		}
		if err := tx.Bucket(bucketMeta).Put(keyHistoryFloor, u64(applied+1)); err != nil {
			return nil, err
		}
	}
	if s.historyKeep == 0 {
		return nil, nil
	}
	b.FillPercent = 1 // keys only ever grow: pack pages full
	return b, nil
}

// loadHistoryStats reads the floor and the number of events kept.
func (s *Store) loadHistoryStats(tx *bbolt.Tx) {
	applied, _, _ := readMeta(tx)
	s.history.floor.Store(historyFloor(tx, applied))
	var n int64
	if b := tx.Bucket(bucketHistory); b != nil {
		_ = b.ForEach(func(_, v []byte) error {
			n += int64(historyCount(v))
			return nil
		})
	}
	s.history.events.Store(n)
}

// Watcher is a cursor over the store's events (Store.Watch). Its methods
// are for one goroutine at a time, except Close.
type Watcher struct {
	s    *Store
	opts kv.WatchOptions
	next uint64 // every event below next was delivered or skipped
	done chan struct{}
	once sync.Once
}

// Watch opens a watcher on the events opts select, from opts.FromIndex
// (zero: after the applied index). It fails with a *kv.CompactedError when
// FromIndex is below the oldest index the history keeps, or with an error
// wrapping kv.ErrClosed.
func (s *Store) Watch(opts kv.WatchOptions) (*Watcher, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("store: %w", kv.ErrClosed)
	}
	applied := s.applied.Load()
	next := opts.FromIndex
	if next == 0 {
		next = applied + 1
	}
	if floor := s.history.floor.Load(); next < floor && next <= applied {
		return nil, &kv.CompactedError{FromIndex: next, OldestIndex: floor, CurrentIndex: applied}
	}
	return &Watcher{s: s, opts: opts, next: next, done: make(chan struct{})}, nil
}

// Position is the next index the watcher looks at: it has delivered every
// event it selects below it.
func (w *Watcher) Position() uint64 { return w.next }

// Close ends the watcher; a Next blocked in it returns kv.ErrClosed.
func (w *Watcher) Close() { w.once.Do(func() { close(w.done) }) }

// Next returns the next responses the watcher selects, in index order, one
// per index (with that index's selected events, in the order applied),
// blocking until there is at least one. It fails with a *kv.CompactedError
// when the history no longer holds the next index, with an error wrapping
// kv.ErrClosed when the watcher or the store closes, or with ctx's error.
// The responses are shared with other watchers: their slices must not be
// modified.
func (w *Watcher) Next(ctx context.Context) ([]kv.WatchResponse, error) {
	h := w.s.hub
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, fmt.Errorf("store: %w", kv.ErrClosed)
		}
		if w.next < h.start {
			h.mu.Unlock()
			out, err := w.readHistory()
			if err != nil || len(out) > 0 {
				return out, err
			}
			continue
		}
		ch, live, through := h.notify, h.ring[h.head:], h.through
		h.mu.Unlock()
		i := sort.Search(len(live), func(i int) bool { return live[i].full.Index >= w.next })
		out := w.selectFrom(live[i:])
		if through >= w.next {
			w.next = through + 1
		}
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-ch:
		case <-w.done:
			return nil, fmt.Errorf("watcher: %w", kv.ErrClosed)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// selectFrom returns the responses of the window with the events the
// watcher selects: a response the watcher takes whole is the shared one.
func (w *Watcher) selectFrom(ring []shared) []kv.WatchResponse {
	var out []kv.WatchResponse
	for _, sh := range ring {
		r := sh.noPrev
		if w.opts.PrevValue {
			r = sh.full
		}
		n := 0
		for _, e := range r.Events {
			if w.opts.Matches(e.Key) {
				n++
			}
		}
		switch n {
		case 0:
		case len(r.Events):
			out = append(out, r)
		default:
			evs := make([]kv.Event, 0, n)
			for _, e := range r.Events {
				if w.opts.Matches(e.Key) {
					evs = append(evs, e)
				}
			}
			out = append(out, kv.WatchResponse{Index: r.Index, Events: evs})
		}
	}
	return out
}

// readHistory reads up to historyPage indexes' events from the history
// bucket, from w.next on, and moves w.next past what it read.
func (w *Watcher) readHistory() ([]kv.WatchResponse, error) {
	var out []kv.WatchResponse
	err := w.s.view(func(tx *bbolt.Tx) error {
		applied, _, err := readMeta(tx)
		if err != nil {
			return err
		}
		floor := historyFloor(tx, applied)
		if w.next < floor && w.next <= applied {
			return &kv.CompactedError{FromIndex: w.next, OldestIndex: floor, CurrentIndex: applied}
		}
		hist := tx.Bucket(bucketHistory)
		if hist == nil || w.next > applied {
			w.next = max(w.next, applied+1)
			return nil
		}
		c := hist.Cursor()
		indexes := 0
		for k, v := c.Seek(u64(w.next)); k != nil; k, v = c.Next() {
			index := binary.BigEndian.Uint64(k)
			if indexes == historyPage {
				w.next = index // the first index not read
				return nil
			}
			indexes++
			cur := kv.WatchResponse{Index: index}
			err := historyEvents(v, func(ev []byte) error {
				key, err := eventKey(ev)
				if err != nil || !w.opts.Matches(key) {
					return err
				}
				e, err := decodeEvent(ev)
				if err != nil {
					return err
				}
				switch {
				case !w.opts.PrevValue:
					e.Prev = nil
				case e.Prev != nil && e.Prev.ModIndex == index:
					// Changed twice in this entry: the value is the
					// earlier event's, already read.
					e.Prev.Value = lastPut(cur.Events, e.Key)
				default:
					err = lookupPrev(hist, floor, &e)
				}
				cur.Events = append(cur.Events, e)
				return err
			})
			if err != nil {
				return fmt.Errorf("history at index %d: %w", index, err)
			}
			if len(cur.Events) > 0 {
				out = append(out, cur)
			}
		}
		w.next = applied + 1
		return nil
	})
	return out, err
}

// lastPut returns the value of key's last put among evs (nil if none).
func lastPut(evs []kv.Event, key []byte) []byte {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == kv.EventPut && bytes.Equal(evs[i].Key, key) {
			return evs[i].Value
		}
	}
	return nil
}
