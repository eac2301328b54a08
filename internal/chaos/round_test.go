//go:build unix

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// round is one run of one fault on a fresh cluster: the cluster, the
// clients, the history, and the run directory that keeps everything when
// the round fails.
type round struct {
	t     *testing.T
	name  string
	seed  uint64
	rng   *rand.Rand
	dir   string
	until time.Time // inject faults until then (one cycle at least)
	long  bool      // -chaos.duration was given

	c           *Cluster
	rec         *Recorder
	wl          *Workload
	stopClients func()
	watch       *roundWatches // startWatchers; checked by finish
	// pausers are further clients afterHeal holds while the members
	// converge (the workload is one too).
	pausers []interface {
		Pause()
		Resume()
	}

	logMu sync.Mutex
	log   *os.File
	heals int

	checked bool // checkHistory wrote the history files
}

// newRound starts a cluster for t with extra serve flags. The run
// directory is removed when the test passes (unless -chaos.keep).
func newRound(t *testing.T, seed uint64, extra ...string) *round {
	t.Helper()
	return newRoundConfig(t, seed, roundConfig{args: extra})
}

// roundConfig adjusts a round's cluster.
type roundConfig struct {
	// args are extra `raftkv serve` flags.
	args []string
	// proxyHTTP routes the members' HTTP to each other through proxies too
	// (Config.ProxyHTTP), so that partitions cut it.
	proxyHTTP bool
	// hosts runs every node in a network namespace of its own
	// (Config.Hosts); the caller has checked requireHosts.
	hosts bool
}

// newRoundConfig is newRound with more settings.
func newRoundConfig(t *testing.T, seed uint64, rc roundConfig) *round {
	t.Helper()
	base := *flagDir
	if base == "" {
		base = os.TempDir()
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	dir, err := os.MkdirTemp(base, fmt.Sprintf("raftkv-chaos-%s-seed%d-", name, seed))
	if err != nil {
		t.Fatal(err)
	}
	r := &round{
		t: t, name: t.Name(), seed: seed, dir: dir,
		rng:   rand.New(rand.NewPCG(seed, 0x5eed)),
		until: time.Now().Add(*flagDuration),
		long:  *flagDuration > 0,
		rec:   NewRecorder(),
	}
	if r.log, err = os.Create(filepath.Join(dir, "harness.log")); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the cluster is gone.
	t.Cleanup(func() {
		if t.Failed() && !r.checked {
			r.saveHistory() // the round failed before its history was checked
		}
		_ = r.log.Close()
		if t.Failed() || *flagKeep {
			t.Logf("run directory kept: %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	r.c, err = NewCluster(Config{Binary: raftkvBin, Dir: dir, Seed: seed, ExtraArgs: rc.args, ProxyHTTP: rc.proxyHTTP, Hosts: rc.hosts, Logf: r.logf})
	if err != nil {
		r.fatalf("cluster: %v", err)
	}
	t.Cleanup(r.c.Close)
	if err := r.c.Start(); err != nil {
		r.fatalf("start: %v", err)
	}
	if err := r.c.WaitReady(context.Background(), 30*time.Second, r.c.IDs()); err != nil {
		r.fatalf("cluster never became ready: %v", err)
	}
	r.logf("cluster ready")
	return r
}

// logf writes a line to the run's harness.log (and, with -chaos.verbose,
// the test log).
func (r *round) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.logMu.Lock()
	fmt.Fprintf(r.log, "%s [%9.3fms] %s\n", time.Now().Format("15:04:05.000"), float64(r.rec.Now())/1e6, msg)
	r.logMu.Unlock()
	if *flagVerbose {
		r.t.Log(msg)
	}
}

// fatalf fails the round, naming the seed and the run directory.
func (r *round) fatalf(format string, args ...any) {
	r.t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.logf("FAIL: %s", msg)
	r.t.Fatalf("%s\n  seed %d (base seed %d): replay with go test ./internal/chaos -run '^%s$' -chaos.seed=%d -chaos.duration=%s -chaos.rounds=%d\n  run directory (node logs, data dirs, history): %s",
		msg, r.seed, baseSeed, strings.ReplaceAll(regexp.QuoteMeta(r.name), "/", "$/^"), baseSeed, *flagDuration, *flagRounds, r.dir)
}

// startClients starts the workload; Stop runs in the test's cleanup too.
func (r *round) startClients(cfg WorkloadConfig) {
	cfg.Seed = r.seed
	if cfg.Think == 0 && r.long {
		cfg.Think = 40 * time.Millisecond
	}
	r.wl = StartWorkload(r.c, r.rec, cfg)
	var once sync.Once
	stop := func() { once.Do(r.wl.Stop) }
	r.t.Cleanup(stop)
	r.stopClients = stop
}

// cycles runs f at least once and again until the round's duration is up.
func (r *round) cycles(f func(i int)) {
	for i := 0; i == 0 || time.Now().Before(r.until); i++ {
		f(i)
	}
}

// hold is how long a fault stays: long enough for the nodes that lost the
// leader to notice (heartbeat timeout 1-2 s) and elect another (1-2 s more).
func (r *round) hold() time.Duration {
	if r.long {
		return 2*time.Second + time.Duration(r.rng.Int64N(int64(6*time.Second)))
	}
	return 3*time.Second + time.Duration(r.rng.Int64N(int64(time.Second)))
}

// sleep holds a fault for d (not a wait for state: the fault's duration).
func (r *round) sleep(d time.Duration) { time.Sleep(d) }

// pick returns a random element.
func pick[T any](r *round, xs []T) T { return xs[r.rng.IntN(len(xs))] }

// eitherWay orders a and b at random: the two ends of a one-way cut.
func (r *round) eitherWay(a, b string) (from, to string) {
	if r.rng.IntN(2) == 0 {
		return b, a
	}
	return a, b
}

// leader waits for the leader (10 s).
func (r *round) leader() string {
	r.t.Helper()
	l, err := r.c.Leader(context.Background(), 10*time.Second)
	if err != nil {
		r.fatalf("no leader within 10s: %v", err)
	}
	return l
}

// followers lists the running nodes other than leader.
func (r *round) followers(leader string) []string {
	var out []string
	for _, id := range r.c.RunningIDs() {
		if id != leader {
			out = append(out, id)
		}
	}
	return out
}

// fault runs one fault: inject, hold, heal; the window goes into the
// history's annotations; then the cluster must recover (afterHeal).
func (r *round) fault(desc string, inject func(), hold time.Duration, heal func()) {
	r.t.Helper()
	start := r.rec.Now()
	r.logf("fault: %s (hold %s)", desc, hold.Round(time.Millisecond))
	inject()
	r.sleep(hold)
	heal()
	r.rec.Fault(start, r.rec.Now(), desc)
	r.logf("healed: %s", desc)
	r.afterHeal()
}

// afterHeal checks recovery: a leader within 10 s, a write that succeeds,
// and every member converging to the same applied index and state hash.
func (r *round) afterHeal() {
	r.t.Helper()
	ctx := context.Background()
	r.heals++
	leader := r.leader()
	idx, err := r.c.PutRetry(ctx, 10*time.Second, fmt.Sprintf("chaos/heal-%d", r.heals), "ok")
	if err != nil {
		r.fatalf("after heal %d: no write succeeded within 10s: %v", r.heals, err)
	}
	info, err := r.c.Info(ctx, leader)
	if err != nil {
		r.fatalf("after heal %d: cluster info from %s: %v", r.heals, leader, err)
	}
	var members []string
	for _, n := range info.Nodes {
		members = append(members, n.ID)
	}
	if r.wl != nil {
		r.wl.Pause()
	}
	for _, p := range r.pausers {
		p.Pause()
	}
	d, err := r.c.WaitConverged(ctx, 20*time.Second, members, idx)
	for _, p := range r.pausers {
		p.Resume()
	}
	if r.wl != nil {
		r.wl.Resume()
	}
	if err != nil {
		r.fatalf("after heal %d: members %v did not converge: %v", r.heals, members, err)
	}
	r.rec.Event(r.rec.Now(), fmt.Sprintf("heal %d: leader %s, converged at %d", r.heals, leader, d[0].AppliedIndex))
	r.logf("heal %d: leader %s, members %v converged at applied index %d (%s)", r.heals, leader, members, d[0].AppliedIndex, d[0].SHA256[:12])
}

// finish heals everything, checks recovery once more, stops the clients
// and checks the watches (when the round has watchers) and the history.
func (r *round) finish() {
	r.t.Helper()
	r.c.Heal()
	for _, id := range r.c.IDs() {
		if r.c.Paused(id) {
			_ = r.c.Resume(id)
		}
	}
	r.afterHeal()
	r.stopClients()
	if ex := r.c.UnexpectedExits(); len(ex) > 0 {
		r.fatalf("raftkv crashed: %s", strings.Join(ex, "; "))
	}
	if ne := r.c.NetworkErrors(); len(ne) > 0 {
		r.fatalf("changes to the network failed (the faults were not what the log says): %s", strings.Join(ne, "; "))
	}
	if u := r.wl.Unexpected(); len(u) > 0 {
		r.fatalf("answers outside the HTTP contract: %s", strings.Join(u, "; "))
	}
	if r.watch != nil {
		r.checkWatches()
	}
	r.checkHistory()
}

// checkHistory runs porcupine; anything but Ok fails the round and leaves
// history.html (with the fault windows) and history.txt behind.
func (r *round) checkHistory() {
	r.t.Helper()
	timeout := 60 * time.Second
	if r.long {
		timeout = 3 * time.Minute
	}
	r.checked = true
	cr := r.rec.Check(timeout)
	r.logf("history: %s; check %s in %s", r.rec.Stats(), cr.Result, cr.Took.Round(time.Millisecond))
	r.t.Logf("%s: %s; porcupine %s in %s", r.name, r.rec.Stats(), cr.Result, cr.Took.Round(time.Millisecond))
	if err := r.rec.WriteHistory(filepath.Join(r.dir, "history.txt")); err != nil {
		r.t.Errorf("writing history: %v", err)
	}
	if cr.Result == "Ok" && !*flagKeep {
		return
	}
	html := filepath.Join(r.dir, "history.html")
	if err := r.rec.WriteVisualization(cr, html); err != nil {
		r.t.Errorf("writing visualization: %v", err)
	}
	switch cr.Result {
	case "Ok":
	case "Illegal":
		r.fatalf("history is NOT linearizable (porcupine: Illegal); see %s", html)
	default:
		r.fatalf("porcupine could not decide within %s (%s): treated as a failure; see %s", timeout, cr.Result, html)
	}
}

// saveHistory writes history.txt and, checking the history with a short
// timeout, history.html.
func (r *round) saveHistory() {
	if err := r.rec.WriteHistory(filepath.Join(r.dir, "history.txt")); err != nil {
		r.t.Logf("writing history: %v", err)
	}
	cr := r.rec.Check(30 * time.Second)
	r.logf("history of the failed round: %s; porcupine %s", r.rec.Stats(), cr.Result)
	if err := r.rec.WriteVisualization(cr, filepath.Join(r.dir, "history.html")); err != nil {
		r.t.Logf("writing visualization: %v", err)
	}
}

// roundSeed derives the seed of a fault's round from the base seed.
func roundSeed(fault, round int) uint64 {
	return baseSeed + uint64(fault)*1000 + uint64(round)
}

func itoa(i int) string { return strconv.Itoa(i) }
