package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// idleProgresses is how many progress intervals a watch stream may stay
// silent before the client takes its connection for lost.
const idleProgresses = 3

// Watch streams the changes to opts.Key (with opts.Prefix, to every key
// under it) from GET /v1/watch/{key}: one response per raft index, in
// index order, each with every event of that index the watch selects, and
// progress notifications (responses without events) when the watched keys
// are quiet. Indexes never go down: responses with events have strictly
// increasing indexes, and a progress notification's index is at least
// that of the response before it.
//
// opts.FromIndex starts the watch at that index (the events of indexes >=
// FromIndex, from the server's history); zero starts it with the changes
// after the index the serving node had applied when the watch opened (the
// first stream's X-Raft-Index). opts.PrevValue fills
// each event's Prev. opts.ProgressInterval is the server's progress
// interval (zero: kv.DefaultWatchProgress): a stream silent for three
// times that is taken for a lost connection.
//
// The watch outlives its connections: after a lost connection (or a
// silent one, above), a stream the server ended because it shuts down, a
// 503 or a failed connect, it reopens on another endpoint, with the
// client's backoff, from the index after the last one it delivered (or
// opts.FromIndex, or the first stream's X-Raft-Index + 1, when it has
// delivered nothing yet), so the caller sees no gap and no duplicate. No
// attempt timeout cuts a stream short: Config.AttemptTimeout bounds only
// the wait for a stream's header, and a Config.HTTPClient with a Timeout
// makes the watch reopen at every timeout.
//
// After an error the sequence ends. The errors are: a *kv.CompactedError
// (errors.Is kv.ErrCompacted) when the watch asks for, or falls behind
// to, events older than the history the node keeps (list the keys, then
// watch from the listing's Index + 1); ctx's error when ctx ends; a
// rejected request (bad options: kv.ErrBadRequest, kv.ErrInvalidKey); a
// malformed stream; or the last failure when Config.MaxAttempts attempts
// to reopen failed. Breaking out of the range loop closes the stream and
// its connection.
func (c *Client) Watch(ctx context.Context, opts kv.WatchOptions) iter.Seq2[kv.WatchResponse, error] {
	return func(yield func(kv.WatchResponse, error) bool) {
		if err := opts.Validate(); err != nil {
			yield(kv.WatchResponse{}, err)
			return
		}
		w := &watch{chain: chain{c: c}, opts: opts, next: opts.FromIndex}
		if err := w.run(ctx, yield); err != nil {
			yield(kv.WatchResponse{}, err)
		}
	}
}

// watch is one call of Client.Watch: its streams, one after another.
type watch struct {
	chain
	opts kv.WatchOptions
	// next is the index the next stream starts from, and the least index
	// of the events still to deliver: the index after the last one
	// delivered, else opts.FromIndex, else (once a stream opened without
	// it and was lost before delivering anything) start. Zero: a watch
	// from now that has delivered nothing; every index is news then.
	next uint64
	// start is the first stream's X-Raft-Index + 1, for a watch from now:
	// where it resumes when it delivered nothing. (That stream's own
	// responses all pass: a server that sent one at or before its
	// X-Raft-Index would not lose it.)
	start uint64
}

// run opens streams until one ends the watch; it returns the error to
// yield (nil when the caller stopped). A lost stream resumes on another
// endpoint from w.next.
func (w *watch) run(ctx context.Context, yield func(kv.WatchResponse, error) bool) error {
	return w.follow(ctx, w.open, func(ctx context.Context, st *stream) (error, error) {
		return w.read(ctx, st, yield)
	}, func() {
		if w.next == 0 {
			w.next = w.start
		}
	})
}

// open opens a stream from w.next, retrying as every read does.
func (w *watch) open(ctx context.Context) (*stream, error) {
	var q query
	if w.opts.Prefix {
		q.flag("prefix")
	}
	if w.next > 0 {
		q.set("from_index", strconv.FormatUint(w.next, 10))
	}
	if w.opts.PrevValue {
		q.flag("prev_value")
	}
	req := request{
		method: http.MethodGet,
		path:   watchPath(w.opts.Key),
		query:  q,
		header: http.Header{"Accept": {"application/x-ndjson"}},
	}
	var st stream
	if err := w.c.call(ctx, req, &st); err != nil {
		return nil, w.compacted(err)
	}
	if w.next == 0 {
		idx, err := strconv.ParseUint(st.resp.Header.Get("X-Raft-Index"), 10, 64)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("watch: %s answered without a valid X-Raft-Index (%q): the index to resume from is unknown", st.base, st.resp.Header.Get("X-Raft-Index"))
		}
		w.start = idx + 1
	}
	return &st, nil
}

// compacted fills in the index the watch asked for in a compacted error.
func (w *watch) compacted(err error) error {
	var ce *kv.CompactedError
	if errors.As(err, &ce) && ce.FromIndex == 0 {
		ce.FromIndex = w.next
	}
	return err
}

// read delivers st's lines to yield. It returns why the stream was lost
// and a nil error when the watch should go on with another stream, or the
// error that ends the watch (errStopped when the caller stopped). A stream
// silent for idleProgresses progress intervals is lost.
func (w *watch) read(ctx context.Context, st *stream, yield func(kv.WatchResponse, error) bool) (lost, _ error) {
	progress := w.opts.ProgressInterval
	if progress <= 0 {
		progress = kv.DefaultWatchProgress
	}
	return w.lines(ctx, st, idleProgresses*progress, func(line []byte) (error, error) {
		resp, ended, err := kv.DecodeWatchLine(line)
		switch {
		case err != nil:
			return nil, fmt.Errorf("watch: %s sent a malformed line %.80q: %w", st.base, line, err)
		case errors.Is(ended, kv.ErrClosed):
			return fmt.Errorf("%s: %w", st.base, ended), nil // it shuts down: resume elsewhere
		case ended != nil:
			return nil, w.compacted(ended)
		}
		if !w.fresh(resp) {
			return nil, nil // delivered before, by an earlier stream
		}
		w.next = max(w.next, resp.Index+1)
		if !yield(resp, nil) {
			return nil, errStopped
		}
		return nil, nil
	})
}

// fresh reports whether r is news to the caller: events at an index not
// delivered yet, or progress that does not go back.
func (w *watch) fresh(r kv.WatchResponse) bool {
	if r.IsProgress() {
		return r.Index+1 >= w.next
	}
	return r.Index >= w.next
}

func watchPath(key []byte) string { return "/v1/watch/" + EscapeKey(key) }
