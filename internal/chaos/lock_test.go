//go:build unix

package chaos

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/concurrency"
	"github.com/raftkv/raftkv/kv"
)

const (
	// lockName is the lock the clients take; lockKey the key its holders
	// write, fenced by their token; lockDataPrefix the prefix of the
	// history read for it (lockKey and the end marker).
	lockName       = "mx"
	lockKey        = "mx/data"
	lockDataPrefix = "mx/"
	// lockTTL is the clients' lease TTL: short, so that faults make
	// holders lose their leases and the lock pass on by expiry.
	lockTTL = 3 * time.Second
	// lockWait bounds a wait for the lock.
	lockWait = 8 * time.Second
	// lockCallTimeout bounds a guarded write, a read, an unlock: not cut
	// short when the test stops the clients (an abandoned write would be an
	// unknown outcome).
	lockCallTimeout = 10 * time.Second
	// harnessClient is the client id of the harness's own acquisitions
	// (the final liveness check).
	harnessClient = 1000
	// pausedClient is the paused holder's client id.
	pausedClient = 100
)

// TestLockMutualExclusionUnderFaults is the issue's "mutual exclusion under
// faults": two clients per node (a client.Client configured with that
// node, which fails over to the others it learns) loop lock → a put of
// mx/data fenced by the lock's token, whose value names the token and the
// client (one time in thirty after holding the lock 0.5-3 s, as work
// would) → sometimes a linearizable read of it → unlock, on a lock whose
// leases have a 3 s TTL: half of them through concurrency.Session and
// Mutex, half with Lock{TTL} and concurrency.KeepAlive on the lock's own
// lease (revoked after the unlock). A paused holder (pausedHolder) takes
// the lock, writes, stops keeping its lease alive and sleeps past its TTL
// with waiters queued behind it, then writes with its stale token: that
// write must be refused (412), as must its unlock. Meanwhile the harness
// SIGKILLs a random node, SIGSTOPs the leader, isolates the leader,
// SIGSTOPs a follower and SIGKILLs every node (each once in the short pass;
// with -chaos.duration, picked at random until it is up). Then the lock
// must be acquirable within 30 s (no handoff stuck), and CheckLocks runs on
// the committed history of the lock's queue and of mx/data (read from every
// node, which must agree): every guarded write applied while its token
// held the lock, tokens strictly increasing, no write answered 412 or
// "not applied" (or a paused holder's) there, every acknowledged one
// there, every acquisition a client was told of true at its index. The
// history of mx/data must be linearizable (porcupine, RegisterModel: a
// 412 is a fenced put that changed nothing). About 40 s in the short pass.
func TestLockMutualExclusionUnderFaults(t *testing.T) {
	for rd := 1; rd <= *flagRounds; rd++ {
		t.Run("round"+itoa(rd), func(t *testing.T) {
			args, err := watchHistoryArgs() // the whole history, for the check
			if err != nil {
				t.Fatal(err)
			}
			r := newRoundConfig(t, roundSeed(500, rd), roundConfig{args: args})
			lc := r.startLockClients(2)
			lc.waitWrites(r, 10, "the start")

			// Each fault heals, the cluster recovers (afterHeal), and then
			// the clients must get guarded writes through again: a lock
			// stuck after a fault fails the round here.
			fault := func(desc string, inject func(), hold time.Duration, heal func()) {
				r.fault(desc, inject, hold, heal)
				lc.waitWrites(r, 3, desc+" healed")
			}
			killOne := func() {
				id := pick(r, r.c.IDs())
				fault("SIGKILL "+id+" and restart it", func() { r.must(r.c.Kill(id)) }, r.hold()/2, func() {
					r.must(r.c.StartNode(id))
					r.waitReady()
				})
			}
			pauseLeader := func() {
				l := r.leader()
				fault("SIGSTOP leader "+l+", then SIGCONT", func() { r.must(r.c.Pause(l)) }, r.hold()/2+time.Second, func() {
					r.must(r.c.Resume(l))
				})
			}
			pauseFollower := func() {
				f := pick(r, r.followers(r.leader()))
				fault("SIGSTOP follower "+f+", then SIGCONT", func() { r.must(r.c.Pause(f)) }, r.hold()/2+time.Second, func() {
					r.must(r.c.Resume(f))
				})
			}
			isolateLeader := func() {
				l := r.leader()
				fault("isolate leader "+l, func() { r.c.Isolate(l) }, r.hold()/2, r.c.Heal)
			}
			killAll := func() {
				fault("SIGKILL every node and restart them", func() { r.must(r.c.KillAll()) }, r.hold()/3, func() {
					r.must(r.c.Start())
					r.waitReady()
				})
			}
			faults := []func(){killOne, pauseLeader, isolateLeader, pauseFollower, killAll}
			r.cycles(func(i int) {
				if i == 0 {
					for _, f := range faults {
						f()
					}
					return
				}
				pick(r, faults)()
			})
			lc.waitProbe(r)
			r.finishLocks(lc)
		})
	}
}

// lockClients are the lock workers and the paused holder of a round.
type lockClients struct {
	rec    *Recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	// gate is closed (a channel Resume closes) while paused: each client
	// passes it before each iteration (iterations under way finish).
	gateMu  sync.Mutex
	gate    chan struct{}
	clients []*client.Client
	workers []*lockWorker
	paused  *pausedHolder

	mu       sync.Mutex
	acqs     []Acquisition
	writes   []GuardedWrite
	problems []string
	acked    int
}

// Pause stops the clients from starting another iteration (afterHeal
// holds them while the members converge); Resume lets them go on.
func (lc *lockClients) Pause() {
	lc.gateMu.Lock()
	defer lc.gateMu.Unlock()
	lc.gate = make(chan struct{})
}

// Resume lets the clients go on after Pause.
func (lc *lockClients) Resume() {
	lc.gateMu.Lock()
	defer lc.gateMu.Unlock()
	close(lc.gate)
	lc.gate = nil
}

// pass waits while the clients are paused; false when ctx ended.
func (lc *lockClients) pass(ctx context.Context) bool {
	lc.gateMu.Lock()
	g := lc.gate
	lc.gateMu.Unlock()
	if g == nil {
		return ctx.Err() == nil
	}
	select {
	case <-g:
		return true
	case <-ctx.Done():
		return false
	}
}

func (lc *lockClients) problem(format string, args ...any) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if len(lc.problems) < 50 {
		lc.problems = append(lc.problems, fmt.Sprintf(format, args...))
	}
}

func (lc *lockClients) acquired(a Acquisition) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.acqs = append(lc.acqs, a)
}

// lockWorker is one client looping lock → guarded write → unlock.
type lockWorker struct {
	id      int
	node    string // the endpoint its client was configured with
	cl      *client.Client
	session bool // concurrency.Session and Mutex; else Lock{TTL} and KeepAlive
	rng     *rand.Rand
	pid     int
	seq     int

	sess  *concurrency.Session
	mutex *concurrency.Mutex

	// Counts, written by the worker's goroutine, read after it ended.
	acquisitions, worked, timeouts, lockErrs, lockUnknown int
	writes                                                map[Outcome]int
	reads                                                 int
	unlocks, unlockLost, unlockErrs                       int
	sessions, sessionsLost, keepersLost                   int
	lastErr                                               string
}

// startLockClients starts perNode workers per node (alternately on a
// Session and on Lock{TTL}), each pair sharing a client configured with
// that node only, and the paused holder on a client configured with
// every node.
func (r *round) startLockClients(perNode int) *lockClients {
	ctx, cancel := context.WithCancel(context.Background())
	lc := &lockClients{rec: r.rec, cancel: cancel}
	var urls []string
	for _, id := range r.c.IDs() {
		urls = append(urls, r.c.URL(id))
		cl, err := client.New(client.Config{
			Endpoints:      []string{r.c.URL(id)},
			AttemptTimeout: 1500 * time.Millisecond, // shorter than a pause: paused nodes are given up
		})
		if err != nil {
			r.fatalf("client: %v", err)
		}
		lc.clients = append(lc.clients, cl)
		for range perNode {
			i := len(lc.workers)
			lc.workers = append(lc.workers, &lockWorker{
				id: i, node: id, cl: cl, session: i%2 == 0,
				rng: rand.New(rand.NewPCG(r.seed, uint64(i)+501)), pid: r.rec.NewProcess(),
				writes: map[Outcome]int{},
			})
		}
	}
	pcl, err := client.New(client.Config{Endpoints: urls, AttemptTimeout: 1500 * time.Millisecond})
	if err != nil {
		r.fatalf("client: %v", err)
	}
	lc.clients = append(lc.clients, pcl)
	lc.paused = &pausedHolder{cl: pcl, rng: rand.New(rand.NewPCG(r.seed, 599)), pid: r.rec.NewProcess(), logf: r.logf}
	for _, w := range lc.workers {
		lc.wg.Add(1)
		go func() {
			defer lc.wg.Done()
			w.run(ctx, lc)
		}()
	}
	lc.wg.Add(1)
	go func() {
		defer lc.wg.Done()
		lc.paused.run(ctx, lc)
	}()
	r.t.Cleanup(lc.stop)
	r.pausers = append(r.pausers, lc)
	r.logf("%d lock workers (%d per node, half on sessions), and a paused holder", len(lc.workers), perNode)
	return lc
}

// stop ends the clients (each finishes its iteration and closes its
// session) and closes them; it may be called twice.
func (lc *lockClients) stop() {
	lc.once.Do(func() {
		lc.cancel()
		lc.wg.Wait()
		for _, cl := range lc.clients {
			cl.Close()
		}
	})
}

// waitWrites waits until n more guarded writes have been acknowledged
// (30 s: waiters whose answers a fault lost hold their places until their
// leases end).
func (lc *lockClients) waitWrites(r *round, n int, since string) {
	r.t.Helper()
	lc.mu.Lock()
	from := lc.acked
	lc.mu.Unlock()
	err := Poll(context.Background(), 30*time.Second, func() error {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		if got := lc.acked - from; got < n {
			return fmt.Errorf("%d guarded writes acknowledged since %s", got, since)
		}
		return nil
	})
	if err != nil {
		r.fatalf("lock clients made no progress: %v", err)
	}
}

// waitProbe waits until the paused holder has completed a probe (its stale
// write refused), so that every run checks one.
func (lc *lockClients) waitProbe(r *round) {
	r.t.Helper()
	err := Poll(context.Background(), 60*time.Second, func() error {
		if n := lc.paused.completed(); n == 0 {
			return errors.New("the paused holder has not completed a probe")
		}
		return nil
	})
	if err != nil {
		r.fatalf("%v", err)
	}
}

func (w *lockWorker) run(ctx context.Context, lc *lockClients) {
	defer w.dropSession()
	backoff := false
	for ctx.Err() == nil {
		think := time.Duration(w.rng.Int64N(int64(10 * time.Millisecond)))
		if backoff {
			think += 50*time.Millisecond + time.Duration(w.rng.Int64N(int64(100*time.Millisecond)))
		}
		if !sleepCtx(ctx, think) { // pacing between iterations
			return
		}
		if !lc.pass(ctx) {
			return
		}
		backoff = !w.iteration(ctx, lc)
	}
}

// iteration acquires the lock, writes, maybe reads, and releases; false
// when it could not acquire.
func (w *lockWorker) iteration(ctx context.Context, lc *lockClients) bool {
	var hold kv.Hold
	var keeper *concurrency.Keeper
	if w.session {
		if w.sess != nil {
			select {
			case <-w.sess.Done():
				w.sessionsLost++
				w.lastErr = fmt.Sprintf("session lost: %v", w.sess.Err())
				w.dropSession()
			default:
			}
		}
		if w.sess == nil {
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := concurrency.NewSession(gctx, w.cl, lockTTL)
			cancel()
			if err != nil {
				w.lockErrs++
				w.lastErr = err.Error()
				return false
			}
			w.sess, w.mutex = s, concurrency.NewMutex(s, lockName)
			w.sessions++
		}
		lctx, cancel := context.WithTimeout(ctx, lockWait)
		err := w.mutex.Lock(lctx)
		cancel()
		if err != nil {
			w.lockFailed(err)
			if !errors.Is(err, kv.ErrTimeout) {
				// It may hold the lock or a place in its queue: revoke.
				w.dropSession()
			}
			return false
		}
		hold = w.mutex.Hold()
	} else {
		lctx, cancel := context.WithTimeout(ctx, lockWait+5*time.Second)
		h, err := w.cl.Lock(lctx, lockName, kv.LockOptions{TTL: lockTTL, Wait: lockWait})
		cancel()
		if err != nil {
			w.lockFailed(err)
			return false
		}
		hold = h
		keeper = concurrency.KeepAlive(context.WithoutCancel(ctx), w.cl, hold.Lease, lockTTL)
	}
	w.acquisitions++
	lc.acquired(Acquisition{Client: w.id, Key: string(hold.Key), Token: hold.Token, Index: hold.Index})
	if w.rng.IntN(30) == 0 {
		// Work while holding the lock (the workload, not a wait for
		// state): a fault may strike meanwhile and end the lease.
		w.worked++
		sleepCtx(ctx, 500*time.Millisecond+time.Duration(w.rng.Int64N(int64(2500*time.Millisecond))))
	}

	w.seq++
	out := lc.guardedPut(ctx, w.cl, w.id, w.pid, w.node, hold.Token, guardedValue(hold.Token, w.id, w.seq), false)
	w.writes[out]++
	if out == Unknown {
		w.pid = lc.rec.NewProcess()
	}
	if w.rng.IntN(3) == 0 {
		lc.read(ctx, w.cl, w.pid, w.node)
		w.reads++
	}

	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockCallTimeout)
	defer cancel()
	var err error
	if w.session {
		err = w.mutex.Unlock(uctx)
	} else {
		_, err = w.cl.Unlock(uctx, lockName, hold.Token)
	}
	switch {
	case err == nil:
		w.unlocks++
	case errors.Is(err, kv.ErrPreconditionFailed):
		w.unlockLost++ // its lease ran out while it held the lock
	default:
		w.unlockErrs++
		w.lastErr = fmt.Sprintf("unlock: %v", err)
		if w.session {
			w.dropSession() // it may still hold the lock: revoke
		}
	}
	if keeper != nil {
		select {
		case <-keeper.Done():
			w.keepersLost++
		default:
		}
		keeper.Stop()
		// Its own lease holds nothing now (or the lock, if the unlock
		// failed): revoke it; a failure leaves it to expire.
		if _, err := w.cl.Revoke(uctx, hold.Lease); err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
			w.lastErr = fmt.Sprintf("revoke: %v", err)
		}
	}
	return true
}

func (w *lockWorker) lockFailed(err error) {
	switch {
	case errors.Is(err, kv.ErrTimeout):
		w.timeouts++
	case errors.Is(err, kv.ErrOutcomeUnknown):
		w.lockUnknown++
	default:
		w.lockErrs++
	}
	w.lastErr = fmt.Sprintf("lock: %v", err)
}

// dropSession closes the worker's session (revoking its lease: whatever
// it held goes), if it has one.
func (w *lockWorker) dropSession() {
	if w.sess == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.sess.Close(ctx); err != nil {
		w.lastErr = fmt.Sprintf("session close: %v", err) // the lease expires by itself
	}
	w.sess, w.mutex = nil, nil
}

// guardedPut puts value to lockKey fenced by token, records it (history and
// writes) and returns its outcome.
func (lc *lockClients) guardedPut(ctx context.Context, cl *client.Client, id, pid int, node string, token uint64, value string, stale bool) Outcome {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockCallTimeout)
	defer cancel()
	in := Input{Kind: OpPut, Key: lockKey, Value: value, Fence: kv.Fence{Lock: lockName, Token: token}}
	call := lc.rec.Now()
	res, err := cl.Put(wctx, []byte(lockKey), []byte(value), kv.WithFence(lockName, token))
	ret := lc.rec.Now()
	var out Output
	switch {
	case err == nil:
		out = Output{Outcome: Ok, ModIndex: res.ModIndex, CreateIndex: res.CreateIndex, Version: res.Version}
	case errors.Is(err, kv.ErrPreconditionFailed):
		out = Output{Outcome: PreconditionFailed}
	case errors.Is(err, kv.ErrOutcomeUnknown):
		out = Output{Outcome: Unknown}
	case definitelyNotApplied(err):
		out = Output{Outcome: NotApplied}
	default:
		// Outside the client's contract for a keyed write: may have
		// applied, and a finding.
		out = Output{Outcome: Unknown}
		lc.problem("client %d: guarded write %q: %v", id, value, err)
	}
	lc.rec.Add(pid, node, in, out, call, ret)
	lc.mu.Lock()
	lc.writes = append(lc.writes, GuardedWrite{Client: id, Token: token, Value: value, Outcome: out.Outcome, ModIndex: out.ModIndex, Call: call, Return: ret, Stale: stale})
	if out.Outcome == Ok {
		lc.acked++
	}
	lc.mu.Unlock()
	return out.Outcome
}

// read reads lockKey linearizably and records it; a failed read is left
// out of the check.
func (lc *lockClients) read(ctx context.Context, cl *client.Client, pid int, node string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	in := Input{Kind: OpGet, Key: lockKey}
	call := lc.rec.Now()
	rec, err := cl.Get(rctx, []byte(lockKey), kv.ReadOptions{})
	ret := lc.rec.Now()
	switch {
	case err == nil:
		lc.rec.Add(pid, node, in, Output{Outcome: Ok, Value: string(rec.Value), ModIndex: rec.ModIndex, CreateIndex: rec.CreateIndex, Version: rec.Version}, call, ret)
	case errors.Is(err, kv.ErrNotFound):
		lc.rec.Add(pid, node, in, Output{Outcome: NotFound}, call, ret)
	default:
		lc.rec.Drop(pid, node, in, call, ret, err.Error())
	}
}

// pausedHolder plays a holder that stops: it takes the lock on a lease of
// its own (Lock{TTL}), writes with its token, then keeps no keepalive
// going and sleeps past the TTL (as a process paused by GC or SIGSTOP
// would) while others queue behind it. Once the cluster says its lease is
// gone, it wakes and writes with its token: that write must be refused
// with 412, and so must its unlock. The harness's clients run in the test
// process, so the pause is the holder's own.
type pausedHolder struct {
	cl   *client.Client
	rng  *rand.Rand
	pid  int
	seq  int
	logf func(string, ...any)

	mu sync.Mutex
	// probes completed (the stale write answered 412), the time from
	// acquiring to the lease being gone, and problems.
	probes  int
	expiry  []time.Duration
	aborted int // probes cut short (lock not acquired, the test stopped)
}

func (p *pausedHolder) completed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probes
}

func (p *pausedHolder) run(ctx context.Context, lc *lockClients) {
	for ctx.Err() == nil {
		// Between probes (each holds the lock 3 s and more) the lock is
		// the workers'.
		if !sleepCtx(ctx, 3*time.Second+time.Duration(p.rng.Int64N(int64(4*time.Second)))) {
			return
		}
		if !lc.pass(ctx) {
			return
		}
		if !p.probe(ctx, lc) {
			p.mu.Lock()
			p.aborted++
			p.mu.Unlock()
		}
	}
}

// probe runs one acquire → write → pause → stale write; false when it was
// cut short.
func (p *pausedHolder) probe(ctx context.Context, lc *lockClients) bool {
	lctx, cancel := context.WithTimeout(ctx, 2*lockWait)
	hold, err := p.cl.Lock(lctx, lockName, kv.LockOptions{TTL: lockTTL, Wait: 2 * lockWait})
	cancel()
	if err != nil {
		return false
	}
	acquired := time.Now()
	lc.acquired(Acquisition{Client: pausedClient, Key: string(hold.Key), Token: hold.Token, Index: hold.Index})
	p.seq++
	if lc.guardedPut(ctx, p.cl, pausedClient, p.pid, "any", hold.Token, guardedValue(hold.Token, pausedClient, p.seq), false) == Unknown {
		p.pid = lc.rec.NewProcess()
	}

	// The pause: no keepalive, past the TTL.
	if !sleepCtx(ctx, lockTTL) {
		return false
	}
	err = Poll(ctx, 30*time.Second, func() error {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		l, err := p.cl.LeaseInfo(c, hold.Lease)
		switch {
		case errors.Is(err, kv.ErrLeaseNotFound):
			return nil
		case err == nil:
			return fmt.Errorf("lease %s still there, %s remaining", hold.Lease, l.Remaining)
		}
		return err
	})
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		lc.problem("paused holder: its lease %s (TTL %s, no keepalive since it acquired the lock %s ago) is not gone: %v",
			hold.Lease, lockTTL, time.Since(acquired).Round(time.Millisecond), err)
		return false
	}
	gone := time.Since(acquired)

	// It wakes up and writes with its stale token, until it has an answer.
	var out Outcome
	err = Poll(context.Background(), 30*time.Second, func() error {
		p.seq++
		out = lc.guardedPut(ctx, p.cl, pausedClient, p.pid, "any", hold.Token, guardedValue(hold.Token, pausedClient, p.seq), true)
		if out == Unknown {
			p.pid = lc.rec.NewProcess()
		}
		if out == Unknown || out == NotApplied {
			return fmt.Errorf("its write's outcome: %s", out)
		}
		return nil
	})
	switch {
	case err != nil:
		lc.problem("paused holder: no answer to its stale write within 30s: %v", err)
		return false
	case out != PreconditionFailed:
		lc.problem("paused holder: its write with token %d, after its lease %s was gone, was answered %s, not 412", hold.Token, hold.Lease, out)
	}
	uctx, cancel := context.WithTimeout(context.Background(), lockCallTimeout)
	defer cancel()
	if _, err := p.cl.Unlock(uctx, lockName, hold.Token); err == nil {
		lc.problem("paused holder: its unlock with token %d, after its lease %s was gone, succeeded", hold.Token, hold.Lease)
	} else if !errors.Is(err, kv.ErrPreconditionFailed) {
		p.logf("paused holder: unlock of token %d: %v", hold.Token, err)
	}
	p.mu.Lock()
	p.probes++
	p.expiry = append(p.expiry, gone)
	p.mu.Unlock()
	p.logf("paused holder: token %d, lease %s gone %s after it acquired the lock (TTL %s); its stale write: %s",
		hold.Token, hold.Lease, gone.Round(time.Millisecond), lockTTL, out)
	return true
}

// finishLocks heals everything, checks recovery, stops the clients, checks
// that the lock can still be taken, then reads the committed history of the
// lock's queue and of mx/data from every node and runs CheckLocks and
// porcupine.
func (r *round) finishLocks(lc *lockClients) {
	r.t.Helper()
	ctx := context.Background()
	r.c.Heal()
	for _, id := range r.c.IDs() {
		if r.c.Paused(id) {
			_ = r.c.Resume(id)
		}
	}
	r.afterHeal()
	lc.stop()
	if ex := r.c.UnexpectedExits(); len(ex) > 0 {
		r.fatalf("raftkv crashed: %s", strings.Join(ex, "; "))
	}

	var urls []string
	for _, id := range r.c.IDs() {
		urls = append(urls, r.c.URL(id))
	}
	cl, err := client.New(client.Config{Endpoints: urls})
	if err != nil {
		r.fatalf("client: %v", err)
	}
	defer cl.Close()
	// Liveness: with every client gone, the lock is free within the TTL
	// (leases revoked, or left to expire): a handoff stuck for good shows
	// here.
	take := func() kv.Hold {
		lctx, cancel := context.WithTimeout(ctx, 40*time.Second)
		defer cancel()
		start := time.Now()
		h, err := cl.Lock(lctx, lockName, kv.LockOptions{TTL: lockTTL, Wait: 30 * time.Second})
		if err != nil {
			r.fatalf("the lock could not be taken within 30s after the clients stopped (a holder or a waiter stuck?): %v", err)
		}
		r.logf("the harness took the lock (token %d) after %s", h.Token, time.Since(start).Round(time.Millisecond))
		return h
	}
	release := func(h kv.Hold) uint64 {
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		idx, err := cl.Unlock(uctx, lockName, h.Token)
		if err != nil {
			r.fatalf("the harness's unlock of token %d: %v", h.Token, err)
		}
		if _, err := cl.Revoke(uctx, h.Lease); err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
			r.fatalf("the harness's revoke of lease %s: %v", h.Lease, err)
		}
		return idx
	}
	h := take()
	lc.acquired(Acquisition{Client: harnessClient, Key: string(h.Key), Token: h.Token, Index: h.Index})
	release(h)

	// The committed history, through an index every node reached; then a
	// write under each prefix marks the end of the streams.
	ids := r.c.IDs()
	d, err := r.c.WaitConverged(ctx, 30*time.Second, ids, 0)
	if err != nil {
		r.fatalf("lock check: the nodes did not converge: %v", err)
	}
	through := d[0].AppliedIndex
	untilData, err := r.c.PutRetry(ctx, 10*time.Second, lockDataPrefix+"~end", "end")
	if err != nil {
		r.fatalf("lock check: the end marker: %v", err)
	}
	untilQueue := release(take())
	queuePrefix := string(kv.LockQueue(lockName))
	read := func(id, prefix string, until uint64) History {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		h, err := r.c.ReadHistory(rctx, id, prefix, 1, through, until)
		if err != nil {
			r.fatalf("lock check: reading %s's history of %s: %v", id, prefix, err)
		}
		return h
	}
	var problems []string
	var queue, data History
	for i, id := range ids {
		q, dh := read(id, queuePrefix, untilQueue), read(id, lockDataPrefix, untilData)
		if i == 0 {
			queue, data = q, dh
			continue
		}
		for _, e := range []error{CompareHistories(ids[0], queue, id, q), CompareHistories(ids[0], data, id, dh)} {
			if e != nil {
				problems = append(problems, e.Error())
			}
		}
	}
	lc.mu.Lock()
	acqs, writes := slices.Clone(lc.acqs), slices.Clone(lc.writes)
	problems = append(problems, lc.problems...)
	lc.mu.Unlock()
	check := CheckLocks(queue, data, lockKey, acqs, writes, guardedToken)
	problems = append(problems, check.Problems...)

	// What each client did, and what the history says it held.
	held, waited, handoffs := holdersByClient(check.Holders)
	var lines []string
	for _, w := range lc.workers {
		kind := "Lock{TTL} + KeepAlive"
		if w.session {
			kind = fmt.Sprintf("Session + Mutex, %d sessions (%d lost)", w.sessions, w.sessionsLost)
		}
		line := fmt.Sprintf("client %d (%s; %s): %d acquisitions (%d holds in the history, %d handed over from another client, %d from a waiting position; %d held while it worked), %d lock timeouts, %d lock errors, %d of unknown outcome; writes %d ok, %d refused, %d unknown, %d not applied; %d reads; %d unlocks, %d found the lock lost, %d failed",
			w.id, w.node, kind, w.acquisitions, held[w.id], handoffs[w.id], waited[w.id], w.worked, w.timeouts, w.lockErrs, w.lockUnknown,
			w.writes[Ok], w.writes[PreconditionFailed], w.writes[Unknown], w.writes[NotApplied], w.reads, w.unlocks, w.unlockLost, w.unlockErrs)
		if !w.session {
			line += fmt.Sprintf("; %d keepers gave up while holding", w.keepersLost)
		}
		if w.acquisitions == 0 {
			problems = append(problems, fmt.Sprintf("client %d never acquired the lock (last error: %s)", w.id, w.lastErr))
		}
		lines = append(lines, line)
	}
	p := lc.paused
	p.mu.Lock()
	var longest time.Duration
	for _, e := range p.expiry {
		longest = max(longest, e)
	}
	lines = append(lines, fmt.Sprintf("paused holder (client %d): %d probes, each stale write refused with 412 (%d cut short); %d holds in the history; its lease gone at most %s after it acquired the lock (TTL %s)",
		pausedClient, p.probes, p.aborted, held[pausedClient], longest.Round(time.Millisecond), lockTTL))
	if p.probes == 0 {
		problems = append(problems, "the paused holder completed no probe")
	}
	p.mu.Unlock()
	lines = append(lines, fmt.Sprintf("holds no client was told of: %d; the harness's: %d", held[-1], held[harnessClient]))
	if acked := countOutcomes(writes, Ok); acked < 10 {
		problems = append(problems, fmt.Sprintf("only %d guarded writes were acknowledged: the check saw too little", acked))
	}
	r.logf("lock check: %s", check.Stats)
	for _, l := range lines {
		r.logf("lock check: %s", l)
	}
	r.t.Logf("%s: lock check: %s\n  %s", r.name, check.Stats, joinLines(lines))
	if len(problems) > 0 || *flagKeep {
		file := r.writeLockHistory(queue, data, check, writes)
		if len(problems) > 0 {
			r.fatalf("lock check: %d problems:\n  %s\n  the histories, holders and writes: %s", len(problems), joinLines(problems), file)
		}
	}
	r.checkHistory()
}

func countOutcomes(ws []GuardedWrite, outcomes ...Outcome) int {
	n := 0
	for _, w := range ws {
		if slices.Contains(outcomes, w.Outcome) {
			n++
		}
	}
	return n
}

// writeLockHistory writes lock-history.txt into the run directory: the
// committed history of the queue and of the guarded key merged in index
// order, the holders, and every guarded write sent.
func (r *round) writeLockHistory(queue, data History, check LockCheck, writes []GuardedWrite) string {
	path := filepath.Join(r.dir, "lock-history.txt")
	f, err := os.Create(path)
	if err != nil {
		r.t.Logf("writing %s: %v", path, err)
		return path
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# the committed history of the lock's queue and the guarded key, in index order")
	all := append(slices.Clone(queue.Responses), data.Responses...)
	slices.SortStableFunc(all, func(a, b kv.WatchResponse) int { return cmp.Compare(a.Index, b.Index) })
	for _, resp := range all {
		fmt.Fprintln(w, responseString(resp))
	}
	fmt.Fprintln(w, "# holders: from_index token key client (-1: none told) waited")
	for _, h := range check.Holders {
		fmt.Fprintf(w, "%d %d %s %d %t\n", h.From, h.Token, h.Key, h.Client, h.Waited)
	}
	fmt.Fprintln(w, "# guarded writes sent: call_ms return_ms client token outcome mod_index stale value")
	for _, g := range writes {
		fmt.Fprintf(w, "%.3f %.3f %d %d %s %d %t %q\n", float64(g.Call)/1e6, float64(g.Return)/1e6, g.Client, g.Token, g.Outcome, g.ModIndex, g.Stale, g.Value)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		r.t.Logf("writing %s: %v", path, err)
	}
	return path
}
