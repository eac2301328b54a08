//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// TestClientFailover drives the Go client (package client) through the
// faults it is built for: writers and readers run without pause while the
// leader is SIGKILLed and restarted, the leader is SIGSTOPped past the
// election timeout and the client's attempt timeout, and the one node the
// clients were configured with is SIGKILLed (they must go on through the
// members they learned). Each worker owns its keys, so it knows exactly
// what they must hold: every put (plain or compare-and-swap on the
// mod_index it last wrote) must return the next version, every read the
// last value written, and a put that failed "not applied" must add
// nothing. A write the client reports as outcome unknown fails the round:
// with a 30 s deadline per call, every write carries an idempotency key
// and is resent until its outcome is known. About 30 s in the short pass;
// with -chaos.duration the faults repeat until it is up.
func TestClientFailover(t *testing.T) {
	for rd := 1; rd <= *flagRounds; rd++ {
		t.Run("round"+itoa(rd), func(t *testing.T) {
			r := newRound(t, roundSeed(300, rd))
			seed := r.c.IDs()[0] // the only endpoint the clients are given
			cw := r.startClientWorkers(seed, 3, 2)
			r.waitProgress(cw, "the start")

			killSeed := func() {
				r.clientFault("SIGKILL "+seed+", the clients' only configured endpoint", func() { r.must(r.c.Kill(seed)) }, func() {
					r.sleep(r.hold() / 2)
					r.waitProgress(cw, seed+" was killed") // every worker goes on without it
				}, func() {
					r.must(r.c.StartNode(seed))
					r.waitReady()
				})
			}
			killLeader := func() {
				l := r.leader()
				r.clientFault("SIGKILL leader "+l, func() { r.must(r.c.Kill(l)) }, func() {
					r.sleep(r.hold() / 2)
					r.waitProgress(cw, "leader "+l+" was killed") // through the new leader
				}, func() {
					r.must(r.c.StartNode(l))
					r.waitReady()
				})
			}
			pauseLeader := func() {
				l := r.leader()
				r.clientFault("SIGSTOP leader "+l+", then SIGCONT", func() { r.must(r.c.Pause(l)) }, func() {
					r.sleep(r.hold())
					r.waitProgress(cw, "leader "+l+" was paused") // attempts to it time out and move on
				}, func() {
					r.must(r.c.Resume(l))
					r.waitReady()
				})
			}
			r.cycles(func(i int) {
				if i == 0 {
					killSeed()
					killLeader()
					pauseLeader()
					return
				}
				pick(r, []func(){killSeed, killLeader, pauseLeader})()
			})
			r.waitProgress(cw, "the last fault healed")
			cw.stop()
			r.checkClientWorkers(cw)
		})
	}
}

// clientWorkers are goroutines that each write and read their own keys
// through a client.Client; several share one client.
type clientWorkers struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	clients []*client.Client
	workers []*clientWorker
}

// clientWorker owns its keys: only it writes them, so it knows what they
// hold.
type clientWorker struct {
	id   int
	cl   *client.Client
	rng  *rand.Rand
	keys []*ownedKey
	oks  atomic.Int64 // calls that succeeded, for progress checks

	// Set by the worker's goroutine, read after it ended.
	slow                       int           // calls that took over a second: they waited out a fault
	longest                    time.Duration // the longest call
	seq                        int
	puts, cas, gets, staleGets int
	notApplied                 int
	problems                   []string
	firstNotApplied            string
}

// ownedKey is what a worker knows of one of its keys.
type ownedKey struct {
	name    string
	version uint64 // successful puts: the key's version
	value   string
	mod     uint64
}

// startClientWorkers starts perClient workers on each of nClients clients
// configured with seed's URL alone.
func (r *round) startClientWorkers(seed string, nClients, perClient int) *clientWorkers {
	ctx, cancel := context.WithCancel(context.Background())
	cw := &clientWorkers{cancel: cancel}
	for range nClients {
		cl, err := client.New(client.Config{
			Endpoints:      []string{r.c.URL(seed)},
			AttemptTimeout: 1500 * time.Millisecond, // shorter than a pause, so paused nodes are given up
		})
		if err != nil {
			r.fatalf("client: %v", err)
		}
		cw.clients = append(cw.clients, cl)
		for range perClient {
			id := len(cw.workers)
			w := &clientWorker{id: id, cl: cl, rng: rand.New(rand.NewPCG(r.seed, uint64(id)+77))}
			for k := range 3 {
				w.keys = append(w.keys, &ownedKey{name: fmt.Sprintf("cf/w%d/k%d", id, k)})
			}
			cw.workers = append(cw.workers, w)
			cw.wg.Add(1)
			go func() {
				defer cw.wg.Done()
				w.run(ctx)
			}()
		}
	}
	r.t.Cleanup(cw.stop)
	r.logf("%d client workers on %d clients, each configured with %s only", len(cw.workers), nClients, seed)
	return cw
}

// stop ends the workers and closes the clients; it may be called twice.
func (cw *clientWorkers) stop() {
	cw.cancel()
	cw.wg.Wait()
	for _, cl := range cw.clients {
		cl.Close()
	}
}

func (w *clientWorker) problem(format string, args ...any) {
	if len(w.problems) < 20 {
		w.problems = append(w.problems, fmt.Sprintf("worker %d: ", w.id)+fmt.Sprintf(format, args...))
	}
}

func (w *clientWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		k := w.keys[w.rng.IntN(len(w.keys))]
		// Each call gets 30 s, and is not cut short when the test stops
		// the workers: an abandoned write would leave its key unknown.
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		switch p := w.rng.IntN(100); {
		case p < 35:
			w.put(cctx, k, false)
		case p < 60:
			w.put(cctx, k, true)
		case p < 90:
			w.get(cctx, k, false)
		default:
			w.get(cctx, k, true)
		}
		cancel()
		if took := time.Since(start); took > time.Second {
			w.slow++
			w.longest = max(w.longest, took)
		}
		if think := time.Duration(w.rng.IntN(5)) * time.Millisecond; think > 0 {
			time.Sleep(think) // pacing between operations, not a wait for state
		}
	}
}

// put writes a new value to k: unconditionally, or as a compare-and-swap
// on the mod_index the worker last wrote (create-only for a new key),
// which must hold since nobody else writes k.
func (w *clientWorker) put(ctx context.Context, k *ownedKey, cas bool) {
	w.seq++
	value := fmt.Sprintf("w%d-%d", w.id, w.seq)
	var opts []kv.WriteOption
	if cas {
		w.cas++
		if k.version == 0 {
			opts = append(opts, kv.IfAbsent())
		} else {
			opts = append(opts, kv.IfModIndex(k.mod))
		}
	} else {
		w.puts++
	}
	res, err := w.cl.Put(ctx, []byte(k.name), []byte(value), opts...)
	switch {
	case err == nil:
		if res.Version != k.version+1 {
			w.problem("put %s=%s (cas %v) returned version %d; %d puts to it succeeded before", k.name, value, cas, res.Version, k.version)
		}
		k.version, k.value, k.mod = res.Version, value, res.ModIndex
		w.oks.Add(1)
	case errors.Is(err, kv.ErrOutcomeUnknown):
		w.problem("put %s=%s (cas %v): outcome unknown: %v", k.name, value, cas, err)
		w.resync(k)
	case definitelyNotApplied(err):
		// Certainly not applied: k is as it was (the next read checks).
		w.notApplied++
		if w.firstNotApplied == "" {
			w.firstNotApplied = fmt.Sprintf("put %s: %v", k.name, err)
		}
	default:
		w.problem("put %s=%s (cas %v, last mod_index %d): %v", k.name, value, cas, k.mod, err)
		w.resync(k)
	}
}

// definitelyNotApplied reports whether a write's error says it was certainly not
// applied.
func definitelyNotApplied(err error) bool {
	for _, e := range []error{kv.ErrNoLeader, kv.ErrTimeout, kv.ErrClosed, client.ErrUnreachable, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// get reads k linearizably, or (stale) from any node at the mod_index the
// worker last wrote: either way it must see the last value written.
func (w *clientWorker) get(ctx context.Context, k *ownedKey, stale bool) {
	opts := kv.ReadOptions{}
	if stale {
		w.staleGets++
		opts = kv.ReadOptions{Consistency: kv.Stale, MinIndex: k.mod}
	} else {
		w.gets++
	}
	rec, err := w.cl.Get(ctx, []byte(k.name), opts)
	switch {
	case errors.Is(err, kv.ErrNotFound) && k.version == 0:
		w.oks.Add(1)
	case err != nil:
		w.problem("get %s (stale %v): %v", k.name, stale, err)
	case rec.Version != k.version || string(rec.Value) != k.value || rec.ModIndex != k.mod:
		w.problem("get %s (stale %v) = %q version %d mod_index %d; the worker wrote %q, version %d, mod_index %d",
			k.name, stale, rec.Value, rec.Version, rec.ModIndex, k.value, k.version, k.mod)
		k.version, k.value, k.mod = rec.Version, string(rec.Value), rec.ModIndex
	default:
		w.oks.Add(1)
	}
}

// resync learns what k holds after a write whose outcome the worker cannot
// know, so that one problem is reported once.
func (w *clientWorker) resync(k *ownedKey) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec, err := w.cl.Get(ctx, []byte(k.name), kv.ReadOptions{})
	switch {
	case errors.Is(err, kv.ErrNotFound):
		k.version, k.value, k.mod = 0, "", 0
	case err == nil:
		k.version, k.value, k.mod = rec.Version, string(rec.Value), rec.ModIndex
	default:
		w.problem("resync %s: %v", k.name, err)
	}
}

// clientFault injects a fault, holds it with hold (which may wait for
// progress), and heals it, while the workers keep going.
func (r *round) clientFault(desc string, inject, hold, heal func()) {
	r.t.Helper()
	start := r.rec.Now()
	r.logf("fault: %s", desc)
	inject()
	hold()
	heal()
	r.rec.Fault(start, r.rec.Now(), desc)
	r.logf("healed: %s", desc)
}

// waitProgress waits until every worker has had 3 more calls succeed.
func (r *round) waitProgress(cw *clientWorkers, since string) {
	r.t.Helper()
	from := make([]int64, len(cw.workers))
	for i, w := range cw.workers {
		from[i] = w.oks.Load()
	}
	err := Poll(context.Background(), 30*time.Second, func() error {
		var slow []string
		for i, w := range cw.workers {
			if n := w.oks.Load() - from[i]; n < 3 {
				slow = append(slow, fmt.Sprintf("worker %d: %d", w.id, n))
			}
		}
		if len(slow) > 0 {
			return fmt.Errorf("calls that succeeded since %s: %s", since, strings.Join(slow, ", "))
		}
		return nil
	})
	if err != nil {
		r.fatalf("clients made no progress: %v", err)
	}
	r.logf("every client worker made progress since %s", since)
}

// checkClientWorkers fails the round on any problem a worker saw, then
// checks every key on a converged cluster: its version is the number of
// puts to it that succeeded (each applied exactly once), its value the
// last of them.
func (r *round) checkClientWorkers(cw *clientWorkers) {
	r.t.Helper()
	ctx := context.Background()
	r.c.Heal()
	r.waitReady()
	if ex := r.c.UnexpectedExits(); len(ex) > 0 {
		r.fatalf("raftkv crashed: %s", strings.Join(ex, "; "))
	}
	var problems []string
	var puts, cas, gets, staleGets, notApplied, acked, slow int
	var longest time.Duration
	for _, w := range cw.workers {
		slow, longest = slow+w.slow, max(longest, w.longest)
		problems = append(problems, w.problems...)
		puts, cas, gets, staleGets, notApplied = puts+w.puts, cas+w.cas, gets+w.gets, staleGets+w.staleGets, notApplied+w.notApplied
		if w.firstNotApplied != "" {
			r.logf("worker %d: %d writes not applied, the first: %s", w.id, w.notApplied, w.firstNotApplied)
		}
	}
	var urls []string
	for _, id := range r.c.IDs() {
		urls = append(urls, r.c.URL(id))
	}
	check, err := client.New(client.Config{Endpoints: urls, RefreshInterval: -1})
	if err != nil {
		r.fatalf("client: %v", err)
	}
	defer check.Close()
	for _, w := range cw.workers {
		for _, k := range w.keys {
			acked += int(k.version)
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			rec, err := check.Get(rctx, []byte(k.name), kv.ReadOptions{})
			cancel()
			switch {
			case errors.Is(err, kv.ErrNotFound) && k.version == 0:
			case err != nil:
				problems = append(problems, fmt.Sprintf("final read of %s: %v", k.name, err))
			case rec.Version != k.version || string(rec.Value) != k.value:
				problems = append(problems, fmt.Sprintf("%s holds %q at version %d; %d puts to it succeeded, the last %q",
					k.name, rec.Value, rec.Version, k.version, k.value))
			}
		}
	}
	if _, err := r.c.WaitConverged(ctx, 20*time.Second, r.c.IDs(), 0); err != nil {
		problems = append(problems, fmt.Sprintf("nodes did not converge: %v", err))
	}
	stats := fmt.Sprintf("%d puts and %d compare-and-swaps (%d acknowledged, %d not applied), %d linearizable and %d stale min_index reads; %d calls took over 1s, the longest %s",
		puts, cas, acked, notApplied, gets, staleGets, slow, longest.Round(time.Millisecond))
	r.logf("client workers: %s", stats)
	r.t.Logf("%s: %s", r.name, stats)
	if len(problems) > 0 {
		r.fatalf("%d problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
}
