package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// WatchDelayResult is what RunWatchDelay measured.
type WatchDelayResult struct {
	Workload  Workload `json:"workload"`
	Endpoints []string `json:"endpoints"`
	// Watchers is how many watches were asked for, Opened how many the
	// nodes accepted.
	Watchers int `json:"watchers"`
	Opened   int `json:"opened"`
	// Rate is the writes a second asked for; Connections the writers.
	Rate        int `json:"rate"`
	Connections int `json:"connections"`
	ValueSize   int `json:"value_size"`
	// Warmup is the warm-up in seconds; Seconds the measured time, from
	// the moment the first measured write was due to the answer of the
	// last one.
	Warmup  float64 `json:"warmup_s"`
	Seconds float64 `json:"duration_s"`
	// Writes counts the measured writes acknowledged (a 2xx answer), and
	// WritesPerSec is Writes over Seconds: below Rate when the writers
	// could not keep up. WritesLate counts the measured writes sent more
	// than 10 ms after they were due (every writer was busy); WritesUnsent
	// those still waiting for a writer when Warmup + Duration was over,
	// which are not sent at all.
	Writes       int64   `json:"writes"`
	WritesPerSec float64 `json:"writes_per_sec"`
	WritesLate   int64   `json:"writes_late"`
	WritesUnsent int64   `json:"writes_unsent"`
	// WriteLatency is the time from sending a write to its answer.
	WriteLatency LatencyMS `json:"write_latency_ms"`
	// EventsExpected is Writes × Opened: every watcher must receive every
	// acknowledged write. EventsReceived counts those that arrived (each
	// watcher and write once), EventsMissing those that did not (an
	// error). EventsEarly counts events that arrived before their write's
	// answer; their delay counts as 0.
	EventsExpected int64 `json:"events_expected"`
	EventsReceived int64 `json:"events_received"`
	EventsMissing  int64 `json:"events_missing"`
	EventsEarly    int64 `json:"events_early"`
	// EventsDuplicate counts a write's event delivered twice to one
	// watcher, EventsMismatched events whose mod_index is not the one the
	// write was answered with: both errors.
	EventsDuplicate  int64 `json:"events_duplicate"`
	EventsMismatched int64 `json:"events_mismatched"`
	// EventsUnacknowledged counts events of measured writes that got no
	// 2xx answer (an unknown outcome may have applied); EventsForeign
	// events of keys this run did not write.
	EventsUnacknowledged int64 `json:"events_unacknowledged"`
	EventsForeign        int64 `json:"events_foreign"`
	// Delay is, over every received event of an acknowledged write, the
	// time from the write's answer to the event's arrival at its watcher.
	Delay LatencyMS `json:"delay_ms"`
	// LoadCPU is the CPU time this process used over Seconds, in CPUs
	// (1.0: one CPU busy the whole time), reading the streams and writing.
	LoadCPU float64 `json:"load_cpu"`
	// WatchersEnded counts streams that ended before the run closed them
	// (an error line from the node, or the connection closed).
	WatchersEnded int64 `json:"watchers_ended"`
	// ErrorsTotal counts the failed measured writes, the refused watches
	// and the streams that ended early, Errors by kind.
	ErrorsTotal int64        `json:"errors_total"`
	Errors      []ErrorCount `json:"errors"`
}

// ErrWatchIncomplete marks a watch-delay run in which some watcher did not
// receive exactly the acknowledged writes: a missing, duplicated or
// mismatched event, a refused watch, or a stream that ended early.
var ErrWatchIncomplete = errors.New("watchers did not receive every acknowledged write exactly once")

// Check returns an error wrapping ErrWatchIncomplete that says what went
// wrong when the run's watchers did not receive every acknowledged write
// exactly once, and nil when they did. Failed writes are not its concern
// (they are counted in Errors).
func (r *WatchDelayResult) Check() error {
	if r.Opened == r.Watchers && r.WatchersEnded == 0 && r.EventsMissing == 0 && r.EventsDuplicate == 0 && r.EventsMismatched == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d of %d watches opened, %d streams ended early, %d events missing, %d duplicated, %d with a mod_index other than the answer's",
		ErrWatchIncomplete, r.Opened, r.Watchers, r.WatchersEnded, r.EventsMissing, r.EventsDuplicate, r.EventsMismatched)
}

// lateWrite is how late a write may be sent before it counts as late.
const lateWrite = 10 * time.Millisecond

// RunWatchDelay measures how long a write takes to reach watchers: it opens
// Watchers watches, watcher i on endpoint i mod len(Endpoints), each on
// every key under KeyPrefix; once all are open, it writes Rate puts a
// second for Warmup and then Duration (writes still waiting for a writer
// when that time is over are not sent), with Connections writers, write s
// on endpoint s mod len(Endpoints), to the key KeyPrefix and s (eight or
// more digits: every write has a key of its own, so a write's events are
// told apart even when several writes share a raft entry and its index).
// It records the time each write was answered and, for every event every
// watcher receives, the time from that answer to its arrival (0 when it
// arrived first). After the last write it waits, at most Timeout, until
// every watcher has received the newest acknowledged write, closes the
// watches and counts what each received against what it should have.
// Events of warm-up writes are not counted. It fails with no figures when
// ctx ends or no watch opened; a run whose watchers missed something
// returns its figures, and Check says what was wrong.
func (g *Generator) RunWatchDelay(ctx context.Context) (*WatchDelayResult, error) {
	if g.o.Workload != WatchDelay {
		return nil, fmt.Errorf("RunWatchDelay runs %s, not %s", WatchDelay, g.o.Workload)
	}
	if g.o.Duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	warm := int(math.Ceil(float64(g.o.Rate) * g.o.Warmup.Seconds()))
	total := warm + max(1, int(math.Ceil(float64(g.o.Rate)*g.o.Duration.Seconds())))
	book := newDelayBook(total, warm, []byte(g.o.KeyPrefix))
	res := &WatchDelayResult{
		Workload: WatchDelay, Endpoints: g.o.Endpoints, Watchers: g.o.Watchers, Rate: g.o.Rate,
		Connections: g.o.Connections, ValueSize: g.o.ValueSize, Warmup: g.o.Warmup.Seconds(),
	}

	// Open the watches.
	sc := newStreamClient(g.o.Timeout, 32<<10, g.o.TLS)
	defer sc.CloseIdleConnections()
	streamCtx, closeStreams := context.WithCancel(ctx)
	defer closeStreams()
	var (
		errs     errorCounts
		mu       sync.Mutex
		watchers []*watcherBook
		next     atomic.Int64
		openers  sync.WaitGroup
		readers  sync.WaitGroup
	)
	stopReaders := func() {
		closeStreams()
		readers.Wait()
	}
	for range min(watchOpeners, g.o.Watchers) {
		openers.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= g.o.Watchers || streamCtx.Err() != nil {
					return
				}
				body, out := openStream(streamCtx, sc, watchURL(g.o.Endpoints[i%len(g.o.Endpoints)], g.o.KeyPrefix), g.o.Token)
				if out.kind != "" {
					errs.add(out)
					continue
				}
				w := newWatcherBook(total)
				mu.Lock()
				watchers = append(watchers, w)
				mu.Unlock()
				readers.Go(func() {
					defer body.Close()
					if out := w.read(streamCtx, body, book); out.kind != "" {
						w.ended.Store(true)
						errs.add(out)
					}
				})
			}
		})
	}
	openers.Wait()
	res.Opened = len(watchers)
	if err := ctx.Err(); err != nil {
		stopReaders()
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	if res.Opened == 0 {
		stopReaders()
		return nil, fmt.Errorf("no watch opened: %s", errs.summary())
	}

	// Write at the rate.
	jobs := make(chan int)
	writers := make([]*delayWriter, g.o.Connections)
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Second / time.Duration(g.o.Rate)
	for i := range writers {
		dw := &delayWriter{hist: newHistogram(), body: make([]byte, 0, 512)}
		writers[i] = dw
		wg.Go(func() {
			for s := range jobs {
				g.writeOne(ctx, dw, book, s, start.Add(time.Duration(s)*interval), &errs)
			}
		})
	}
	// Writes are sent on schedule until Warmup + Duration is over; those
	// still waiting for a writer then are not sent.
	cpu0, measureFrom := processCPU(), start.Add(g.o.Warmup)
	dctx, cancelDispatch := context.WithDeadline(ctx, start.Add(g.o.Warmup+g.o.Duration))
dispatch:
	for s := range total {
		due := start.Add(time.Duration(s) * interval)
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-dctx.Done():
				t.Stop()
			}
		}
		if s == warm {
			cpu0, measureFrom = processCPU(), due
		}
		select {
		case jobs <- s:
			continue
		case <-dctx.Done():
		}
		res.WritesUnsent = int64(total - max(s, warm))
		break dispatch
	}
	cancelDispatch()
	close(jobs)
	wg.Wait()
	end := time.Now()
	cpu1 := processCPU()
	if err := ctx.Err(); err != nil {
		stopReaders()
		return nil, fmt.Errorf("interrupted: %w", err)
	}

	// Wait, at most Timeout, until every stream still open has reached the
	// newest acknowledged write: streams deliver in index order, so it
	// then has every event it will ever get of this run's writes.
	newest := book.newestAck()
	deadline := time.Now().Add(g.o.Timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		caughtUp := true
		for _, w := range watchers {
			if !w.ended.Load() && w.through.Load() < newest {
				caughtUp = false
				break
			}
		}
		if caughtUp {
			break
		}
		<-tick.C
	}
	tick.Stop()
	stopReaders()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}

	res.Seconds = end.Sub(measureFrom).Seconds()
	if res.Seconds > 0 {
		res.LoadCPU = math.Round(100*(cpu1-cpu0).Seconds()/res.Seconds) / 100
	}
	whist := newHistogram()
	for _, dw := range writers {
		res.Writes += dw.acked
		res.WritesLate += dw.late
		whist.merge(dw.hist)
	}
	if res.Seconds > 0 {
		res.WritesPerSec = float64(res.Writes) / res.Seconds
	}
	res.WriteLatency = latencyMS(whist)
	book.tally(res, watchers)
	res.Errors, res.ErrorsTotal = errs.list()
	return res, nil
}

// delayBook is what every watcher's books are checked against: for each
// write s of the run (warm-up writes are s < warm), the time its answer
// arrived and the mod_index it carried.
type delayBook struct {
	base   time.Time      // every time is nanoseconds since base
	warm   int            // writes below are warm-up
	prefix []byte         // write s's key is prefix and s
	ackAt  []atomic.Int64 // 1 + answer time; 0 while unanswered (or failed)
	ackIdx []atomic.Uint64
}

func newDelayBook(total, warm int, prefix []byte) *delayBook {
	return &delayBook{base: time.Now(), warm: warm, prefix: prefix,
		ackAt: make([]atomic.Int64, total), ackIdx: make([]atomic.Uint64, total)}
}

// ack records write s's answer, at, with its mod_index.
func (b *delayBook) ack(s int, at time.Time, modIndex uint64) {
	b.ackIdx[s].Store(modIndex)
	b.ackAt[s].Store(int64(at.Sub(b.base)) + 1)
}

// write returns the write an event is of, or false for an event of a key
// this run does not write.
func (b *delayBook) write(e watchEvent) (int, bool) {
	digits, ok := bytes.CutPrefix(e.Key, b.prefix)
	if !ok || !e.Put || len(digits) < 8 {
		return 0, false
	}
	s, n := scanUint(digits)
	if n != len(digits) || s >= uint64(len(b.ackAt)) {
		return 0, false
	}
	return int(s), true
}

// newestAck is the highest mod_index of a measured acknowledged write.
func (b *delayBook) newestAck() uint64 {
	var m uint64
	for s := b.warm; s < len(b.ackIdx); s++ {
		if b.ackAt[s].Load() != 0 {
			m = max(m, b.ackIdx[s].Load())
		}
	}
	return m
}

// tally counts every watcher's events against the acknowledged writes into
// r; the watchers' readers must have stopped.
func (b *delayBook) tally(r *WatchDelayResult, watchers []*watcherBook) {
	delay := newHistogram()
	for _, w := range watchers {
		for _, e := range w.pending {
			at := b.ackAt[e.s].Load()
			if at == 0 {
				continue // not acknowledged: counted below
			}
			w.early++
			w.hist.record(0)
			if b.ackIdx[e.s].Load() != e.modIndex {
				w.mismatched++
			}
		}
		for s := b.warm; s < len(b.ackAt); s++ {
			got := w.seen[s/64]&(1<<(s%64)) != 0
			switch {
			case b.ackAt[s].Load() == 0:
				if got {
					r.EventsUnacknowledged++
				}
			case got:
				r.EventsReceived++
			default:
				r.EventsMissing++
			}
		}
		r.EventsEarly += w.early
		r.EventsDuplicate += w.duplicate
		r.EventsMismatched += w.mismatched
		r.EventsForeign += w.foreign
		if w.ended.Load() {
			r.WatchersEnded++
		}
		delay.merge(w.hist)
	}
	r.EventsExpected = r.Writes * int64(len(watchers))
	r.Delay = latencyMS(delay)
}

// watcherBook is what one watcher received. Its reader goroutine owns
// everything but through and ended, which the run polls.
type watcherBook struct {
	seen       []uint64 // bit s: write s's event arrived
	hist       *histogram
	pending    []pendingEvent // arrived before their write's answer was recorded
	early      int64
	duplicate  int64
	mismatched int64
	foreign    int64
	through    atomic.Uint64 // the highest index of a line received
	ended      atomic.Bool   // the stream ended before the run closed it
}

// pendingEvent is an event that arrived before its write's answer: tally
// settles it.
type pendingEvent struct {
	s        int
	modIndex uint64
}

func newWatcherBook(total int) *watcherBook {
	return &watcherBook{seen: make([]uint64, (total+63)/64), hist: newHistogram()}
}

// record books one event that arrived at at (nanoseconds since b.base).
func (w *watcherBook) record(b *delayBook, e watchEvent, at int64) {
	s, ok := b.write(e)
	switch {
	case !ok:
		w.foreign++
		return
	case s < b.warm:
		return
	case w.seen[s/64]&(1<<(s%64)) != 0:
		w.duplicate++
		return
	}
	w.seen[s/64] |= 1 << (s % 64)
	ack := b.ackAt[s].Load()
	if ack == 0 {
		w.pending = append(w.pending, pendingEvent{s: s, modIndex: e.ModIndex})
		return
	}
	d := at - (ack - 1)
	if d < 0 {
		w.early++
		d = 0
	}
	w.hist.record(d)
	if b.ackIdx[s].Load() != e.ModIndex {
		w.mismatched++
	}
}

// read books a stream's events until ctx ends; a stream that ends before
// is an outcome of that kind.
func (w *watcherBook) read(ctx context.Context, body io.Reader, b *delayBook) outcome {
	var l watchLine
	var ended outcome
	err := readLines(body, make([]byte, 32<<10), func(line []byte, at time.Time) bool {
		if err := decodeWatchLine(line, &l); err != nil {
			ended = outcome{kind: "bad stream line", message: err.Error()}
			return false
		}
		if l.ErrCode != "" {
			ended = outcome{kind: "stream ended: " + l.ErrCode, message: l.ErrMessage}
			return false
		}
		ns := int64(at.Sub(b.base))
		for _, e := range l.Events {
			w.record(b, e, ns)
		}
		if l.Index > w.through.Load() {
			w.through.Store(l.Index)
		}
		return true
	})
	return streamEnd(ctx, ended, err)
}

// delayWriter is one writer goroutine of RunWatchDelay and what it
// measured of its measured writes.
type delayWriter struct {
	buf   []byte
	body  []byte
	hist  *histogram
	acked int64
	late  int64
}

// writeOne sends write s, due at due, and books its answer.
func (g *Generator) writeOne(ctx context.Context, dw *delayWriter, b *delayBook, s int, due time.Time, errs *errorCounts) {
	ep := s % len(g.keyURLs)
	dw.buf = appendKey(append(dw.buf[:0], g.keyURLs[ep]...), s)
	sent := time.Now()
	var out outcome
	dw.body, out = g.doBody(ctx, http.MethodPut, string(dw.buf), g.value, "application/octet-stream", dw.body[:0])
	at := time.Now()
	measured := s >= b.warm
	if out.kind == "" {
		var ans struct {
			ModIndex uint64 `json:"mod_index"`
		}
		if err := json.Unmarshal(dw.body, &ans); err != nil || ans.ModIndex == 0 {
			out = outcome{kind: "bad answer", message: fmt.Sprintf("PUT %s answered %.80q", dw.buf, dw.body)}
		} else {
			b.ack(s, at, ans.ModIndex)
		}
	}
	if !measured || ctx.Err() != nil {
		return
	}
	if out.kind != "" {
		errs.add(out)
		return
	}
	dw.acked++
	dw.hist.record(int64(at.Sub(sent)))
	if sent.Sub(due) > lateWrite {
		dw.late++
	}
}
