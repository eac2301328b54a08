package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// LockResult is what RunLocks measured.
type LockResult struct {
	Workload    Workload `json:"workload"`
	Endpoints   []string `json:"endpoints"`
	Connections int      `json:"connections"`
	// Lock is the lock's name (lock-contended), or the names' stem
	// (lock-uncontended: worker i takes Lock-i). TTL is the TTL, in
	// seconds, of the lease each acquisition grants.
	Lock string  `json:"lock"`
	TTL  float64 `json:"ttl_s"`
	// Warmup and Seconds are the warm-up and the measured time, in seconds.
	Warmup  float64 `json:"warmup_s"`
	Seconds float64 `json:"duration_s"`
	// Acquisitions counts the measured acquisitions (a 200 to POST
	// /v1/lock), AcquisitionsPerSec them over Seconds: under contention,
	// the handoffs a second. Cycles counts the measured cycles whose three
	// requests (acquire, release, revoke) all succeeded.
	Acquisitions       int64   `json:"acquisitions"`
	AcquisitionsPerSec float64 `json:"acquisitions_per_sec"`
	Cycles             int64   `json:"cycles"`
	// Acquire is from sending POST /v1/lock to its answer (under
	// contention, the wait in the queue included); Release from sending
	// DELETE /v1/lock to the answer of the revoke that follows it; Cycle
	// the whole of a successful cycle.
	Acquire LatencyMS `json:"acquire_ms"`
	Release LatencyMS `json:"release_ms"`
	Cycle   LatencyMS `json:"cycle_ms"`
	// Overlaps counts acquisitions answered while, by the run's books,
	// another worker held the same lock (each worker marks a lock free
	// before it sends the release, so an honest lock never overlaps);
	// TokenRegressions counts acquisitions whose fencing token was not
	// above the one before on that lock. Either fails the run (Check).
	Overlaps         int64 `json:"overlaps"`
	TokenRegressions int64 `json:"token_regressions"`
	// Cluster is what the nodes' /metrics say about the measured window
	// (OpsPerEntry: acquisitions per raft entry).
	Cluster ClusterFigures `json:"cluster"`
	// LoadCPU is the CPU time this process used over Seconds, in CPUs.
	LoadCPU float64 `json:"load_cpu"`
	// ErrorsTotal counts the measured requests that failed, Errors by kind
	// (never nil).
	ErrorsTotal int64        `json:"errors_total"`
	Errors      []ErrorCount `json:"errors"`
}

// ErrLockViolated marks a lock run in which two workers held a lock at
// once, or a token did not increase.
var ErrLockViolated = errors.New("a lock was held twice at once or its token did not increase")

// Check returns an error wrapping ErrLockViolated when the run saw a lock
// held twice at once or a token that did not increase, and nil otherwise.
func (r *LockResult) Check() error {
	if r.Overlaps == 0 && r.TokenRegressions == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d overlapping holds, %d tokens not above the one before", ErrLockViolated, r.Overlaps, r.TokenRegressions)
}

// LockName is the lock a lock workload takes, from the key prefix: the
// prefix without its slashes at either end, the others turned to '-'
// ("bench/" → "bench"); "bench" when that leaves nothing.
func LockName(keyPrefix string) string {
	name := strings.ReplaceAll(strings.Trim(keyPrefix, "/"), "/", "-")
	if name == "" {
		return "bench"
	}
	return name
}

// lockBook is the run's view of one lock: whether a worker holds it, and
// the last token it was acquired with.
type lockBook struct {
	held atomic.Bool
	last atomic.Uint64
}

// lockWorker is one goroutine of RunLocks and what it measured.
type lockWorker struct {
	path    string // /v1/lock/{name}
	book    *lockBook
	next    int // endpoint of the next cycle
	body    []byte
	acquire *histogram
	release *histogram
	cycle   *histogram
	acqs    int64
	cycles  int64
	overlap int64
	regress int64
	errs    map[string]*ErrorCount
}

// RunLocks runs lock-uncontended or lock-contended: Connections workers
// each loop a cycle of acquire (POST /v1/lock/{name}?wait= with {"ttl":
// TTL}, so that the node grants the hold a lease of its own), release
// (DELETE /v1/lock/{name}?token=) and revoke of that lease (DELETE
// /v1/lease/{id}), as raftkv lock and the concurrency package do, for
// Warmup and then Duration. Each cycle goes to one endpoint, the next
// cycle to the next (worker i starts at endpoint i mod len(Endpoints)).
// Under lock-contended every worker takes the lock LockName(KeyPrefix);
// under lock-uncontended worker i takes LockName(KeyPrefix)-i. A cycle
// that starts before Warmup is over is not counted; when the time is over
// each worker finishes the cycle it is in (a waiter waits for its turn).
// The wait of one acquisition is bounded by nine tenths of Timeout. It
// fails with no figures when ctx ends; a run that saw a lock held twice
// returns its figures, and Check says so.
func (g *Generator) RunLocks(ctx context.Context) (*LockResult, error) {
	if !g.o.Workload.Locks() {
		return nil, fmt.Errorf("RunLocks runs %s or %s, not %s", LockUncontended, LockContended, g.o.Workload)
	}
	if g.o.Duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	name := LockName(g.o.KeyPrefix)
	res := &LockResult{Workload: g.o.Workload, Endpoints: g.o.Endpoints, Connections: g.o.Connections,
		Lock: name, TTL: g.o.TTL.Seconds(), Warmup: g.o.Warmup.Seconds()}
	body, err := json.Marshal(struct {
		TTL kv.Duration `json:"ttl"`
	}{kv.Duration(g.o.TTL)})
	if err != nil {
		return nil, err
	}
	wait := (g.o.Timeout * 9 / 10).Round(time.Millisecond)
	query := "?wait=" + url.QueryEscape(wait.String())

	shared := &lockBook{}
	workers := make([]*lockWorker, g.o.Connections)
	for i := range workers {
		w := &lockWorker{path: "/v1/lock/" + url.PathEscape(name), book: shared, body: make([]byte, 0, 256), next: i % len(g.o.Endpoints),
			acquire: newHistogram(), release: newHistogram(), cycle: newHistogram(), errs: map[string]*ErrorCount{}}
		if g.o.Workload == LockUncontended {
			w.path += "-" + strconv.Itoa(i)
			w.book = &lockBook{}
		}
		workers[i] = w
	}
	start := time.Now()
	measureFrom := start.Add(g.o.Warmup)
	first := g.sampleClusterAt(ctx, measureFrom)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				g.lockCycle(ctx, w, body, query, measureFrom)
			}
		})
	}
	timer := time.NewTimer(g.o.Warmup + g.o.Duration)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true)
	wg.Wait()
	end := time.Now()
	cpu1 := processCPU()
	a := <-first
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	if a.err != nil {
		return nil, fmt.Errorf("reading the nodes' metrics: %w", a.err)
	}
	b, err := g.sampleCluster(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the nodes' metrics: %w", err)
	}

	res.Seconds = end.Sub(measureFrom).Seconds()
	acq, rel, cyc := newHistogram(), newHistogram(), newHistogram()
	errs := map[string]*ErrorCount{}
	for _, w := range workers {
		res.Acquisitions += w.acqs
		res.Cycles += w.cycles
		res.Overlaps += w.overlap
		res.TokenRegressions += w.regress
		acq.merge(w.acquire)
		rel.merge(w.release)
		cyc.merge(w.cycle)
		mergeErrors(errs, w.errs)
	}
	res.AcquisitionsPerSec = float64(res.Acquisitions) / res.Seconds
	res.Acquire, res.Release, res.Cycle = latencyMS(acq), latencyMS(rel), latencyMS(cyc)
	res.Errors, res.ErrorsTotal = sortedErrors(errs)
	if res.Seconds > 0 {
		res.LoadCPU = math.Round(100*(cpu1-a.cpu).Seconds()/res.Seconds) / 100
	}
	res.Cluster = g.clusterFigures(a.sample, b, res.Acquisitions)
	return res, nil
}

// lockCycle runs one acquire → release → revoke cycle of w.
func (g *Generator) lockCycle(ctx context.Context, w *lockWorker, body []byte, query string, measureFrom time.Time) {
	ep := g.o.Endpoints[w.next]
	w.next = (w.next + 1) % len(g.o.Endpoints)
	sent := time.Now()
	measured := !sent.Before(measureFrom)
	fail := func(o outcome) {
		if !measured || ctx.Err() != nil {
			return
		}
		countError(w.errs, o.kind, o.message)
	}

	var out outcome
	w.body, out = g.doBody(ctx, http.MethodPost, ep+w.path+query, body, "application/json", w.body[:0])
	acquired := time.Now()
	if out.kind != "" {
		fail(out)
		return
	}
	var hold kv.HoldJSON
	if err := json.Unmarshal(w.body, &hold); err != nil || hold.Token == 0 || hold.Lease == 0 {
		fail(outcome{kind: "bad answer", message: fmt.Sprintf("POST %s answered %.80q", ep+w.path, w.body)})
		return
	}
	// The books: no other worker may hold the lock now, and its token
	// must be above the last one. Marked free before the release is sent,
	// so the next holder, answered only once the release applied, never
	// finds it held by an honest lock.
	overlap := !w.book.held.CompareAndSwap(false, true)
	regress := hold.Token <= w.book.last.Load()
	w.book.last.Store(hold.Token)
	if !overlap {
		w.book.held.Store(false)
	}
	if measured {
		w.acqs++
		w.acquire.record(int64(acquired.Sub(sent)))
		if overlap {
			w.overlap++
		}
		if regress {
			w.regress++
		}
	}

	ok := true
	if out = g.do(ctx, http.MethodDelete, ep+w.path+"?token="+strconv.FormatUint(hold.Token, 10), nil, ""); out.kind != "" {
		fail(out)
		ok = false
	}
	if out = g.do(ctx, http.MethodDelete, ep+"/v1/lease/"+hold.Lease.String(), nil, ""); out.kind != "" {
		fail(out)
		ok = false
	}
	done := time.Now()
	if measured && ok && ctx.Err() == nil {
		w.cycles++
		w.release.record(int64(done.Sub(acquired)))
		w.cycle.record(int64(done.Sub(sent)))
	}
}
