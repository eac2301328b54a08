package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// WatchIdleResult is what RunWatchIdle measured: the node's memory before
// the watchers opened, while they were all open and idle, and after they
// closed, each sample taken right after a forced garbage collection.
type WatchIdleResult struct {
	Workload Workload `json:"workload"`
	Endpoint string   `json:"endpoint"`
	// Watchers is how many watches were asked for, Opened how many the
	// node accepted (the per-watcher figures divide by Opened).
	Watchers int `json:"watchers"`
	Opened   int `json:"opened"`
	// OpenSeconds is the time it took to open them, 64 at a time.
	OpenSeconds float64      `json:"open_s"`
	Before      MemorySample `json:"before"`
	Open        MemorySample `json:"open"`
	Closed      MemorySample `json:"closed"`
	// PerWatcher is (Open - Before) / Opened.
	PerWatcher PerWatcher `json:"per_watcher"`
	// Events counts the events the watchers received: none, unless
	// something wrote under the key prefix meanwhile.
	Events      int64        `json:"events"`
	ErrorsTotal int64        `json:"errors_total"`
	Errors      []ErrorCount `json:"errors"`
}

// PerWatcher is what one open watcher cost the node, on average.
type PerWatcher struct {
	// RSSBytes is the growth of the resident set.
	RSSBytes float64 `json:"rss_bytes"`
	// HeapStackBytes is HeapBytes + StackBytes: the Go memory the watchers
	// hold live.
	HeapStackBytes float64 `json:"heap_stack_bytes"`
	HeapBytes      float64 `json:"heap_bytes"`
	StackBytes     float64 `json:"stack_bytes"`
	Goroutines     float64 `json:"goroutines"`
}

// watchOpeners bounds how many watches are being opened at once, so that
// ten thousand dials do not overflow the node's listen backlog.
const watchOpeners = 64

// RunWatchIdle measures what idle watches cost a node: it samples the
// memory of the node at the first (and only) endpoint, opens Watchers
// watches on it (each on every key under KeyPrefix, so none receives an
// event while nothing writes there), waits until the node counts them all
// (raftkv_watchers), samples again, closes them, waits until the node has
// let them go, and samples a third time. Every sample follows a forced
// garbage collection, so the node must run with --pprof. A watch the node
// refuses, or a stream that ends while it should be open, is an error of
// its kind; the run fails when none opened.
func (g *Generator) RunWatchIdle(ctx context.Context) (*WatchIdleResult, error) {
	if g.o.Workload != WatchIdle {
		return nil, fmt.Errorf("RunWatchIdle runs %s, not %s", WatchIdle, g.o.Workload)
	}
	if len(g.o.Endpoints) != 1 {
		return nil, errors.New("watch-idle measures one node: give one --addr")
	}
	ep := g.o.Endpoints[0]
	res := &WatchIdleResult{Workload: WatchIdle, Endpoint: ep, Watchers: g.o.Watchers, Errors: []ErrorCount{}}
	var err error
	if res.Before, err = g.sampleMemory(ctx, ep); err != nil {
		return nil, err
	}

	sc := newStreamClient(g.o.Timeout, 0, g.o.TLS)
	defer sc.CloseIdleConnections()
	streamCtx, closeStreams := context.WithCancel(ctx)
	defer closeStreams()
	var (
		errs    errorCounts
		events  atomic.Int64
		opened  atomic.Int64
		next    atomic.Int64
		openers sync.WaitGroup
		readers sync.WaitGroup
	)
	target := watchURL(ep, g.o.KeyPrefix)
	start := time.Now()
	for range min(watchOpeners, g.o.Watchers) {
		openers.Go(func() {
			for next.Add(1) <= int64(g.o.Watchers) && streamCtx.Err() == nil {
				body, out := openStream(streamCtx, sc, target, g.o.Token)
				if out.kind != "" {
					errs.add(out)
					continue
				}
				opened.Add(1)
				readers.Go(func() {
					defer body.Close()
					if out := readIdle(streamCtx, body, &events); out.kind != "" {
						errs.add(out)
					}
				})
			}
		})
	}
	openers.Wait()
	res.OpenSeconds = time.Since(start).Seconds()
	res.Opened = int(opened.Load())
	if err := ctx.Err(); err != nil {
		closeStreams()
		readers.Wait()
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	if res.Opened == 0 {
		closeStreams()
		readers.Wait()
		return nil, fmt.Errorf("no watch opened: %s", errs.summary())
	}

	// The node counts a watch before it answers, so this holds at once,
	// unless streams ended meanwhile; it is the node's word that they are
	// all there.
	want := res.Before.Watchers + int64(res.Opened)
	if err := g.waitWatchers(ctx, ep, func(n int64) bool { return n >= want }); err != nil {
		closeStreams()
		readers.Wait()
		return nil, fmt.Errorf("the node does not count the %d watches opened: %w", res.Opened, err)
	}
	if res.Open, err = g.sampleMemory(ctx, ep); err != nil {
		closeStreams()
		readers.Wait()
		return nil, err
	}
	closeStreams()
	readers.Wait()
	if err := g.waitWatchers(ctx, ep, func(n int64) bool { return n <= res.Before.Watchers }); err != nil {
		return nil, fmt.Errorf("the node still counts the closed watches: %w", err)
	}
	if res.Closed, err = g.sampleMemory(ctx, ep); err != nil {
		return nil, err
	}

	n := float64(res.Opened)
	heap := float64(res.Open.HeapInuseBytes - res.Before.HeapInuseBytes)
	stack := float64(res.Open.StackInuseBytes - res.Before.StackInuseBytes)
	res.PerWatcher = PerWatcher{
		RSSBytes:       float64(res.Open.RSSBytes-res.Before.RSSBytes) / n,
		HeapStackBytes: (heap + stack) / n,
		HeapBytes:      heap / n,
		StackBytes:     stack / n,
		Goroutines:     float64(res.Open.Goroutines-res.Before.Goroutines) / n,
	}
	res.Events = events.Load()
	res.Errors, res.ErrorsTotal = errs.list()
	return res, nil
}

// readIdle reads an idle watch stream until ctx ends, counting its events.
// A stream that ends before (an error line from the server, or the
// connection closed) is an outcome of that kind.
func readIdle(ctx context.Context, body io.Reader, events *atomic.Int64) outcome {
	var l watchLine
	var ended outcome
	err := readLines(body, make([]byte, 512), func(b []byte, _ time.Time) bool {
		if err := decodeWatchLine(b, &l); err != nil {
			ended = outcome{kind: "bad stream line", message: err.Error()}
			return false
		}
		if l.ErrCode != "" {
			ended = outcome{kind: "stream ended: " + l.ErrCode, message: l.ErrMessage}
			return false
		}
		events.Add(int64(len(l.Events)))
		return true
	})
	return streamEnd(ctx, ended, err)
}

// waitWatchers polls the node's raftkv_watchers until ok holds, for at
// most the request timeout.
func (g *Generator) waitWatchers(ctx context.Context, ep string, ok func(int64) bool) error {
	ctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := g.metrics(ctx, ep)
		if err == nil && ok(m.Watchers) {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return fmt.Errorf("raftkv_watchers is %d after %s", m.Watchers, g.o.Timeout)
		case <-tick.C:
		}
	}
}

// errorCounts counts outcomes by kind, from many goroutines.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]*ErrorCount
}

func (e *errorCounts) add(o outcome) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]*ErrorCount{}
	}
	if c, ok := e.m[o.kind]; ok {
		c.Count++
		return
	}
	e.m[o.kind] = &ErrorCount{Kind: o.kind, Count: 1, Example: o.message}
}

// list returns the counts, most frequent first (never nil), and their total.
func (e *errorCounts) list() ([]ErrorCount, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return sortedErrors(e.m)
}

// summary describes the most frequent error, for a run that failed.
func (e *errorCounts) summary() string {
	l, total := e.list()
	if total == 0 {
		return "no error recorded"
	}
	return fmt.Sprintf("%d failed, most as %s (%s)", total, l[0].Kind, l[0].Example)
}

// streamEnd is how a watch stream ended: with the error line the node sent
// (ended), by the run's own end (ctx: no outcome), or by the connection
// (err from reading it).
func streamEnd(ctx context.Context, ended outcome, err error) outcome {
	switch {
	case ended.kind != "":
		return ended
	case ctx.Err() != nil:
		return outcome{}
	case errors.Is(err, io.EOF):
		return outcome{kind: "stream ended: closed", message: "the node closed the stream without an error line"}
	}
	return outcome{kind: "stream ended: " + transportErrorKind(err), message: err.Error()}
}
