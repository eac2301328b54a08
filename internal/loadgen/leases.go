package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// LeasesResult is what RunLeases measured.
type LeasesResult struct {
	Workload    Workload `json:"workload"`
	Endpoints   []string `json:"endpoints"`
	Connections int      `json:"connections"`
	// Leases is how many leases were granted, TTL their TTL in seconds,
	// GrantSeconds how long granting them all took (not measured).
	Leases       int     `json:"leases"`
	TTL          float64 `json:"ttl_s"`
	GrantSeconds float64 `json:"grant_s"`
	// Warmup and Seconds are the warm-up and the measured time, in seconds.
	Warmup  float64 `json:"warmup_s"`
	Seconds float64 `json:"duration_s"`
	// Keepalives counts the measured keepalives acknowledged (a 2xx
	// answer); KeepalivesPerSec is Keepalives over Seconds. Latency is
	// from sending a keepalive to having read its answer.
	Keepalives       int64     `json:"keepalives"`
	KeepalivesPerSec float64   `json:"keepalives_per_sec"`
	Latency          LatencyMS `json:"latency_ms"`
	// MaxGapMS is the longest time, in milliseconds, between sending two
	// acknowledged keepalives of one lease (or its grant and its first
	// keepalive, or its last one and the end of the run). A lease whose
	// gaps all stay below its TTL must live through the run.
	MaxGapMS float64 `json:"max_gap_ms"`
	// LeasesLost counts the granted leases that were gone during or after
	// the run: a keepalive answered 404 lease_not_found, or the lease was
	// missing from GET /v1/lease after the last keepalive. Any lost lease
	// fails the run (Check); LostExample names one and why.
	LeasesLost  int64  `json:"leases_lost"`
	LostExample string `json:"lost_example,omitempty"`
	// Cluster is what the nodes' /metrics say about the measured window
	// (OpsPerEntry: keepalives per raft entry).
	Cluster ClusterFigures `json:"cluster"`
	// LoadCPU is the CPU time this process used over Seconds, in CPUs.
	LoadCPU float64 `json:"load_cpu"`
	// ErrorsTotal counts the measured keepalives that failed, Errors by
	// kind (never nil). RevokeErrors counts the leases the clean-up after
	// the run could not revoke (lost leases are not tried).
	ErrorsTotal  int64        `json:"errors_total"`
	Errors       []ErrorCount `json:"errors"`
	RevokeErrors int64        `json:"revoke_errors"`
}

// ErrLeasesLost marks a leases-keepalive run that lost leases it kept
// alive.
var ErrLeasesLost = errors.New("leases kept alive were lost")

// Check returns an error wrapping ErrLeasesLost when the run lost a lease,
// and nil when it lost none.
func (r *LeasesResult) Check() error {
	if r.LeasesLost == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d of %d (longest gap between keepalives of a lease %.0f ms, TTL %.0f s); e.g. %s",
		ErrLeasesLost, r.LeasesLost, r.Leases, r.MaxGapMS, r.TTL, r.LostExample)
}

// leaseWorker is one keepalive goroutine of RunLeases: it keeps the leases
// in slots (slot s holds ids[s]; slot s belongs to worker s mod
// Connections) alive, one after another, round and round.
type leaseWorker struct {
	slots  []int
	lastAt []int64 // per slot of the run: send time of its last acknowledged keepalive (ns since base); only this worker's slots are touched
	lost   []bool  // per slot, likewise
	next   int     // endpoint of the next request
	buf    []byte
	hist   *histogram
	ops    int64
	maxGap int64
	errs   map[string]*ErrorCount
}

// RunLeases runs leases-keepalive: it grants Leases leases of TTL (lease s
// through endpoint s mod len(Endpoints)), then keeps them alive for Warmup
// and then Duration with Connections workers, each sending keepalives (POST
// /v1/lease/{id}/keepalive) one after another, round-robin over the
// endpoints, for the leases of its own (lease s belongs to worker s mod
// Connections) in turn. Afterwards it lists the leases (GET /v1/lease),
// counts every granted lease that is gone as lost, and revokes the rest.
// It fails with no figures when ctx ends, a grant fails or the leases
// cannot be listed; a run that lost leases returns its figures, and Check
// says so.
func (g *Generator) RunLeases(ctx context.Context) (*LeasesResult, error) {
	if g.o.Workload != LeasesKeepalive {
		return nil, fmt.Errorf("RunLeases runs %s, not %s", LeasesKeepalive, g.o.Workload)
	}
	if g.o.Duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	res := &LeasesResult{Workload: g.o.Workload, Endpoints: g.o.Endpoints, Connections: g.o.Connections,
		Leases: g.o.Leases, TTL: g.o.TTL.Seconds(), Warmup: g.o.Warmup.Seconds()}
	base := time.Now()
	grantedAt := make([]int64, g.o.Leases)
	ids, err := g.grantLeases(ctx, grantedAt, base)
	res.GrantSeconds = time.Since(base).Seconds()
	if err != nil {
		g.revokeLeases(ids, nil)
		return nil, err
	}

	workers := make([]*leaseWorker, g.o.Connections)
	lost := make([]bool, len(ids))
	for i := range workers {
		w := &leaseWorker{lastAt: grantedAt, lost: lost, next: i % len(g.o.Endpoints), hist: newHistogram(), errs: map[string]*ErrorCount{}}
		for s := i; s < len(ids); s += g.o.Connections {
			w.slots = append(w.slots, s)
		}
		workers[i] = w
	}
	start := time.Now()
	measureFrom := start.Add(g.o.Warmup)
	first := g.sampleClusterAt(ctx, measureFrom)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { g.keepAlive(ctx, w, ids, base, measureFrom, &stop) })
	}
	timer := time.NewTimer(g.o.Warmup + g.o.Duration)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true) // each worker finishes the keepalive it has in flight
	wg.Wait()
	end := time.Now()
	cpu1 := processCPU()
	a := <-first
	if err := ctx.Err(); err != nil {
		g.revokeLeases(ids, lost)
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	if a.err != nil {
		g.revokeLeases(ids, lost)
		return nil, fmt.Errorf("reading the nodes' metrics: %w", a.err)
	}
	b, err := g.sampleCluster(ctx)
	if err != nil {
		g.revokeLeases(ids, lost)
		return nil, fmt.Errorf("reading the nodes' metrics: %w", err)
	}

	res.Seconds = end.Sub(measureFrom).Seconds()
	hist := newHistogram()
	errs := map[string]*ErrorCount{}
	var maxGap int64
	endNS := int64(end.Sub(base))
	for _, w := range workers {
		res.Keepalives += w.ops
		hist.merge(w.hist)
		maxGap = max(maxGap, w.maxGap)
		for _, s := range w.slots {
			if !lost[s] {
				maxGap = max(maxGap, endNS-w.lastAt[s])
			}
		}
		mergeErrors(errs, w.errs)
	}
	res.KeepalivesPerSec = float64(res.Keepalives) / res.Seconds
	res.Latency = latencyMS(hist)
	res.MaxGapMS = math.Round(float64(maxGap)/1e3) / 1e3
	res.Errors, res.ErrorsTotal = sortedErrors(errs)
	if res.Seconds > 0 {
		res.LoadCPU = math.Round(100*(cpu1-a.cpu).Seconds()/res.Seconds) / 100
	}
	res.Cluster = g.clusterFigures(a.sample, b, res.Keepalives)

	// Which leases are gone: those a keepalive found gone, and those the
	// cluster no longer lists.
	for s, l := range lost {
		if l {
			res.LeasesLost++
			if res.LostExample == "" {
				res.LostExample = fmt.Sprintf("lease %s: a keepalive answered 404 lease_not_found", ids[s])
			}
		}
	}
	listed, err := g.listLeases(ctx)
	if err != nil {
		g.revokeLeases(ids, lost)
		return nil, err
	}
	for s, id := range ids {
		if !lost[s] && !listed[id] {
			lost[s] = true
			res.LeasesLost++
			if res.LostExample == "" {
				res.LostExample = fmt.Sprintf("lease %s: missing from GET /v1/lease after the run", id)
			}
		}
	}
	res.RevokeErrors = g.revokeLeases(ids, lost)
	return res, nil
}

// windowStart is the first sample of a measured window.
type windowStart struct {
	sample clusterSample
	cpu    time.Duration // processCPU then
	err    error
}

// sampleClusterAt samples the cluster, and this process's CPU, at at (or
// at once, if at has passed), in the background.
func (g *Generator) sampleClusterAt(ctx context.Context, at time.Time) <-chan windowStart {
	ch := make(chan windowStart, 1)
	go func() {
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				ch <- windowStart{err: ctx.Err()}
				return
			}
		}
		cpu := processCPU()
		s, err := g.sampleCluster(ctx)
		ch <- windowStart{sample: s, cpu: cpu, err: err}
	}()
	return ch
}

// keepAlive is one keepalive worker: it goes round its leases until stop
// is set or ctx ends. Keepalives sent before measureFrom are warm-up; a
// lease answered 404 is lost and not kept alive any more.
func (g *Generator) keepAlive(ctx context.Context, w *leaseWorker, ids []kv.LeaseID, base, measureFrom time.Time, stop *atomic.Bool) {
	live := len(w.slots)
	for i := 0; live > 0 && !stop.Load() && ctx.Err() == nil; i = (i + 1) % len(w.slots) {
		s := w.slots[i]
		if w.lost[s] {
			continue
		}
		ep := w.next
		w.next = (w.next + 1) % len(g.o.Endpoints)
		w.buf = append(append(w.buf[:0], g.o.Endpoints[ep]...), "/v1/lease/"...)
		w.buf = strconv.AppendUint(w.buf, uint64(ids[s]), 10)
		w.buf = append(w.buf, "/keepalive"...)
		sent := time.Now()
		res := g.do(ctx, http.MethodPost, string(w.buf), nil, "")
		if ctx.Err() != nil {
			return // interrupted: the request's failure says nothing
		}
		sentNS := int64(sent.Sub(base))
		switch {
		case res.kind == "":
			w.maxGap = max(w.maxGap, sentNS-w.lastAt[s])
			w.lastAt[s] = sentNS
		case strings.HasPrefix(res.kind, "http 404"):
			w.lost[s] = true
			live--
		}
		if sent.Before(measureFrom) {
			continue
		}
		if res.kind != "" {
			countError(w.errs, res.kind, res.message)
			continue
		}
		w.ops++
		w.hist.record(int64(time.Since(sent)))
	}
}

// grantLeases grants Leases leases of TTL, lease s through endpoint s mod
// len(Endpoints), and records when each grant was sent (ns since base). It
// fails on the first error, returning the leases granted until then.
func (g *Generator) grantLeases(ctx context.Context, sentAt []int64, base time.Time) ([]kv.LeaseID, error) {
	body, err := json.Marshal(struct {
		TTL kv.Duration `json:"ttl"`
	}{kv.Duration(g.o.TTL)})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ids := make([]kv.LeaseID, g.o.Leases)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(g.o.Leases, max(g.o.Connections, 16)) {
		wg.Go(func() {
			buf := make([]byte, 0, 128) // not nil: doBody discards into nil
			for {
				s := int(next.Add(1) - 1)
				if s >= g.o.Leases || ctx.Err() != nil {
					return
				}
				sent := time.Now()
				var out outcome
				target := g.o.Endpoints[s%len(g.o.Endpoints)] + "/v1/lease"
				buf, out = g.doBody(ctx, http.MethodPost, target, body, "application/json", buf[:0])
				if out.kind != "" {
					cancel(fmt.Errorf("granting lease %d of %d: %s: %s", s+1, g.o.Leases, out.kind, out.message))
					return
				}
				var ans struct {
					ID kv.LeaseID `json:"id"`
				}
				if err := json.Unmarshal(buf, &ans); err != nil || ans.ID == 0 {
					cancel(fmt.Errorf("granting lease %d of %d: POST %s answered %.80q", s+1, g.o.Leases, target, buf))
					return
				}
				ids[s], sentAt[s] = ans.ID, int64(sent.Sub(base))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		granted := ids[:0]
		for _, id := range ids {
			if id != 0 {
				granted = append(granted, id)
			}
		}
		return granted, err
	}
	return ids, nil
}

// listLeases returns the ids GET /v1/lease lists, asked of the first
// endpoint.
func (g *Generator) listLeases(ctx context.Context) (map[kv.LeaseID]bool, error) {
	var body strings.Builder
	if err := g.get(ctx, g.o.Endpoints[0]+"/v1/lease", &body); err != nil {
		return nil, fmt.Errorf("listing the leases after the run: %w", err)
	}
	var ans struct {
		Leases []struct {
			ID kv.LeaseID `json:"id"`
		} `json:"leases"`
	}
	if err := json.Unmarshal([]byte(body.String()), &ans); err != nil {
		return nil, fmt.Errorf("listing the leases after the run: %w", err)
	}
	out := make(map[kv.LeaseID]bool, len(ans.Leases))
	for _, l := range ans.Leases {
		out[l.ID] = true
	}
	return out, nil
}

// revokeLeases revokes ids[s] for every s not marked in skip (nil: none)
// and returns how many revokes failed; an id already gone (404) does not
// count. It runs on a context of its own, so that an interrupted run
// still cleans up, bounded by a minute.
func (g *Generator) revokeLeases(ids []kv.LeaseID, skip []bool) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range min(len(ids), max(g.o.Connections, 16)) {
		wg.Go(func() {
			for {
				s := int(next.Add(1) - 1)
				if s >= len(ids) {
					return
				}
				if skip != nil && skip[s] {
					continue
				}
				target := g.o.Endpoints[s%len(g.o.Endpoints)] + "/v1/lease/" + ids[s].String()
				if out := g.do(ctx, http.MethodDelete, target, nil, ""); out.kind != "" && !strings.HasPrefix(out.kind, "http 404") {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return failed.Load()
}
