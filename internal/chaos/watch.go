//go:build unix

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Watches over plain HTTP, straight to one node: the per-node watchers of
// the watch check, and the reads of each node's history after a run.

// watchURL is the URL of a watch on node with opts (FromIndex as given).
func (c *Cluster) watchURL(id string, opts kv.WatchOptions) string {
	q := url.Values{}
	if opts.FromIndex > 0 {
		q.Set("from_index", strconv.FormatUint(opts.FromIndex, 10))
	}
	var flags []string
	if opts.Prefix {
		flags = append(flags, "prefix")
	}
	if opts.PrevValue {
		flags = append(flags, "prev_value")
	}
	query := strings.Join(flags, "&")
	if enc := q.Encode(); enc != "" {
		if query != "" {
			query += "&"
		}
		query += enc
	}
	return c.URL(id) + "/v1/watch/" + escapeKey(string(opts.Key)) + "?" + query
}

// escapeKey percent-encodes a key for a URL path, segment by segment.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// watchHTTP is an HTTP client for streams: no timeout but the dial's and
// the context's, and its own connections (a stream holds one for as long
// as it lasts).
func (c *Cluster) watchHTTP() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:           c.dial,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   4,
	}}
}

// errStreamEnded: the server ended a stream with a shutting_down line.
var errStreamEnded = errors.New("the node ended the stream: shutting_down")

// lineError is a stream that said something the watcher cannot go on
// from: an error line (compacted, say) or a malformed line.
type lineError struct{ err error }

func (e *lineError) Error() string { return e.err.Error() }
func (e *lineError) Unwrap() error { return e.err }

// openStream opens a watch stream. A non-200 answer is an error carrying
// the status; a 410 is the *kv.CompactedError of its body.
func openStream(ctx context.Context, hc *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var er kv.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Error.Code == "compacted" {
		return nil, kv.ErrorFromBody(er.Error)
	}
	return nil, &statusError{status: resp.StatusCode, code: er.Error.Code, body: strings.TrimSpace(string(b))}
}

// statusError is a watch answered with something other than 200.
type statusError struct {
	status int
	code   string
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("%d %s", e.status, e.body) }

// readStream calls f with each response of a stream until the stream
// ends or f returns false. It returns errStreamEnded for a shutting_down
// line, a *lineError for another error line (wrapping the error the line
// carries: a *kv.CompactedError for compacted) or a malformed line, or the
// read error that ended the stream (io.EOF when the server closed it). A
// partial last line is dropped.
func readStream(body io.Reader, f func(kv.WatchResponse) bool) error {
	r := bufio.NewReaderSize(body, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		resp, ended, err := kv.DecodeWatchLine(line)
		switch {
		case err != nil:
			return &lineError{fmt.Errorf("malformed line %q: %w", line, err)}
		case errors.Is(ended, kv.ErrClosed):
			return errStreamEnded
		case ended != nil:
			return &lineError{fmt.Errorf("error line %s: %w", line, ended)}
		}
		if !f(resp) {
			return nil
		}
	}
}

// nodeWatcher is one watch on one node over plain HTTP. When its stream
// ends (the node was killed, or it shut down), it reopens the watch on the
// same node, from the last index it delivered + 1, as soon as the node
// answers again: its record spans every restart of the node.
type nodeWatcher struct {
	c    *Cluster
	node string
	hc   *http.Client
	now  func() int64 // the round's clock
	logf func(format string, args ...any)

	mu sync.Mutex
	s  WatchStream
}

func newNodeWatcher(c *Cluster, node string, opts kv.WatchOptions, now func() int64, logf func(string, ...any)) *nodeWatcher {
	return &nodeWatcher{
		c: c, node: node, hc: c.watchHTTP(), now: now, logf: logf,
		s: WatchStream{Name: node + " over HTTP (" + describeWatch(opts) + ")", Opts: opts},
	}
}

// describeWatch names a watch's range and start.
func describeWatch(o kv.WatchOptions) string {
	s := fmt.Sprintf("key %q", o.Key)
	if o.Prefix {
		s = fmt.Sprintf("prefix %q", o.Key)
	}
	if o.FromIndex == 0 {
		s += " from now"
	} else {
		s += fmt.Sprintf(" from %d", o.FromIndex)
	}
	if o.PrevValue {
		s += " with prev"
	}
	return s
}

// run watches until ctx ends or the watch ends for good (compacted, a
// malformed stream, an answer outside the contract).
func (w *nodeWatcher) run(ctx context.Context) {
	defer w.hc.CloseIdleConnections()
	wait := 20 * time.Millisecond
	for ctx.Err() == nil {
		w.mu.Lock()
		// From the last index delivered + 1; the first stream of a watch
		// from now (FromIndex 0) asks for no index.
		opts := w.s.Opts
		if r := w.s.Reached(); r > 0 && r >= opts.FromIndex {
			opts.FromIndex = r + 1
		}
		w.mu.Unlock()
		resp, err := openStream(ctx, w.hc, w.c.watchURL(w.node, opts))
		var se *statusError
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, kv.ErrCompacted):
			w.end(fmt.Errorf("opening from %d: %w", opts.FromIndex, err))
			return
		case errors.As(err, &se) && (se.status < 500 || se.code == "internal"):
			w.end(fmt.Errorf("opening from %d: %w", opts.FromIndex, err))
			return
		case err != nil:
			// The node is down, starting, or shutting down: try again.
			if !sleepCtx(ctx, wait) {
				return
			}
			wait = min(2*wait, 500*time.Millisecond)
			continue
		}
		wait = 20 * time.Millisecond
		after, perr := strconv.ParseUint(resp.Header.Get("X-Raft-Index"), 10, 64)
		w.mu.Lock()
		w.s.Opens = append(w.s.Opens, StreamOpen{First: len(w.s.Responses), From: opts.FromIndex, After: after, At: float64(w.now()) / 1e6})
		n := len(w.s.Opens)
		if w.s.Opts.FromIndex == 0 {
			// A watch from now starts after the index the stream says.
			w.s.Opts.FromIndex = after + 1
			w.s.Name += fmt.Sprintf(" [now: after %d]", after)
		}
		w.mu.Unlock()
		if perr != nil {
			_ = resp.Body.Close()
			w.end(fmt.Errorf("stream %d from %d: X-Raft-Index %q: %w", n, opts.FromIndex, resp.Header.Get("X-Raft-Index"), perr))
			return
		}
		if n > 1 {
			w.logf("watch %s: stream %d opened from %d", w.s.Name, n, opts.FromIndex)
		}
		err = readStream(resp.Body, func(r kv.WatchResponse) bool {
			w.mu.Lock()
			w.s.Responses = append(w.s.Responses, r)
			w.mu.Unlock()
			return true
		})
		_ = resp.Body.Close()
		if ctx.Err() != nil {
			return
		}
		var le *lineError
		how := "the connection broke: " + err.Error()
		switch {
		case errors.Is(err, errStreamEnded):
			how = "a shutting_down line"
		case errors.Is(err, io.EOF):
			how = "the node closed it without an error line"
		case errors.As(err, &le):
			how = err.Error()
		}
		w.mu.Lock()
		w.s.Opens[n-1].Ended = how
		w.mu.Unlock()
		if le != nil {
			// An error line (compacted included) or a malformed stream:
			// the watch is over.
			w.end(le.err)
			return
		}
		// The node went away or shut down: reopen on it.
	}
}

func (w *nodeWatcher) end(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.s.End = err
	w.logf("watch %s ended: %v", w.s.Name, err)
}

// reached is the highest index delivered, and whether the watch ended
// (or was retired).
func (w *nodeWatcher) reached() (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.s.Reached(), w.s.End != nil || w.s.Retired
}

// retire marks the watch as stopped on purpose because its node left the
// cluster (the caller ends its context): its record is checked as far as
// it got, and nobody waits for it to reach the end of the history.
func (w *nodeWatcher) retire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.s.Retired = true
	w.s.Name += " [retired: its node left]"
}

// stream returns a copy of the record.
func (w *nodeWatcher) stream() *WatchStream {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.s
	s.Responses = append([]kv.WatchResponse(nil), w.s.Responses...)
	s.Opens = append([]StreamOpen(nil), w.s.Opens...)
	return &s
}

// sleepCtx waits d, or less when ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C: // a retry pause
		return true
	}
}

// ReadHistory reads node id's history of the keys under prefix, with
// previous records, from index from on: the responses through index
// through, read until the stream reaches index until (> through, an index
// the caller knows holds an event under prefix, so that the stream is
// known to be complete up to through).
func (c *Cluster) ReadHistory(ctx context.Context, id, prefix string, from, through, until uint64) (History, error) {
	hc := c.watchHTTP()
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := openStream(ctx, hc, c.watchURL(id, kv.WatchOptions{Key: []byte(prefix), Prefix: true, PrevValue: true, FromIndex: from}))
	if err != nil {
		return History{}, fmt.Errorf("watch on %s from %d: %w", id, from, err)
	}
	defer resp.Body.Close()
	h := History{Prefix: prefix, From: from, Through: through}
	var reached uint64
	var order error
	err = readStream(resp.Body, func(r kv.WatchResponse) bool {
		if !r.IsProgress() && r.Index <= reached || r.Index < reached {
			order = fmt.Errorf("%s's history stream from %d: index %d after index %d: %s", id, from, r.Index, reached, responseString(r))
			return false
		}
		reached = r.Index
		if !r.IsProgress() && r.Index <= through {
			h.Responses = append(h.Responses, r)
		}
		return r.Index < until
	})
	if err != nil {
		return h, fmt.Errorf("watch on %s from %d ended at index %d before %d: %w", id, from, reached, until, err)
	}
	return h, order
}

// ListAll reads every key under prefix on node id (a stale read, every
// page at one applied index) and returns them with that index.
func (c *Cluster) ListAll(ctx context.Context, id, prefix string) ([]kv.Record, uint64, error) {
	var out []kv.Record
	var index uint64
	after := ""
	for page := 0; ; page++ {
		u := c.URL(id) + "/v1/kv/" + escapeKey(prefix) + "?prefix&consistency=stale&limit=1000"
		if after != "" {
			u += "&after=" + url.QueryEscape(after)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		status, _, b, err := c.Do(rctx, http.MethodGet, u, nil, nil)
		cancel()
		if err != nil {
			return nil, 0, err
		}
		if status != http.StatusOK {
			return nil, 0, fmt.Errorf("GET %s: %d %s", u, status, strings.TrimSpace(string(b)))
		}
		var lr kv.ListResponse
		if err := json.Unmarshal(b, &lr); err != nil {
			return nil, 0, fmt.Errorf("GET %s: %w", u, err)
		}
		if page > 0 && lr.Index != index {
			return nil, 0, fmt.Errorf("%s: the listing's pages are at indexes %d and %d (something wrote)", id, index, lr.Index)
		}
		index = lr.Index
		for _, it := range lr.Items {
			rec, err := it.Record()
			if err != nil {
				return nil, 0, fmt.Errorf("%s: listing: %w", id, err)
			}
			if rec.Value == nil {
				rec.Value = []byte{}
			}
			out = append(out, rec)
		}
		if !lr.More {
			return out, index, nil
		}
		after = lr.Next
	}
}
