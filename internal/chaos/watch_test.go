//go:build unix

package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// watchHistoryArgs keeps every index's events for the whole run: a
// watcher that ends with compacted is then a finding, not the history
// being too small. The window of recent events in memory is small (a few
// dozen events), so watchers also fall behind it and read the stored
// history, in pages, while the faults go on.
func watchHistoryArgs() ([]string, error) {
	if !serveFlags["watch-history"] {
		return nil, errors.New("the watch check needs `raftkv serve --watch-history`, which this binary lacks")
	}
	args := []string{"--watch-history", "10000000"}
	if serveFlags["watch-window"] {
		args = append(args, "--watch-window", "8192")
	}
	return args, nil
}

// watchEndKey, under a round's watch prefix, is written once the
// clients have stopped: its event ends the reads of the nodes' histories.
const watchEndKey = "~watch-end"

// watchSpec says what a round watches and which keys are the clients'.
type watchSpec struct {
	// prefix is the node watchers' prefix: the clients' keys (the Go
	// client's watches are within it). The watch check reads the
	// committed history of the keys under it.
	prefix string
	// keys and txnPrefix are the clients' keys (the workload's, and the
	// prefix of the transaction clients'): the writes check covers them.
	keys      []string
	txnPrefix string
	// client are the watches through the Go client. FromIndex 0 stands for
	// the round's start index.
	client []kv.WatchOptions
}

// roundWatches are a round's watchers: one per node over HTTP, and some
// through the Go client.
type roundWatches struct {
	spec    watchSpec
	start   uint64
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	nodes   []*nodeWatcher
	stops   map[*nodeWatcher]context.CancelFunc // each node watcher's own end
	clients []*clientWatcher
	cl      *client.Client
	once    sync.Once
}

func (rw *roundWatches) stop() {
	rw.once.Do(func() {
		rw.cancel()
		rw.wg.Wait()
		rw.cl.Close()
	})
}

// streams returns every watcher's record.
func (rw *roundWatches) streams() []*WatchStream {
	var out []*WatchStream
	for _, w := range rw.nodes {
		out = append(out, w.stream())
	}
	for _, w := range rw.clients {
		out = append(out, w.stream())
	}
	return out
}

// startWatchers starts, before the clients write, a watcher on every node
// over HTTP (prefix spec.prefix; n1's from index 1, n2's from now, the
// others' from the round's start index, the next index the leader applies;
// previous records on all but n2's) and spec.client through the Go
// client. r.finish checks them (checkWatches).
func (r *round) startWatchers(spec watchSpec) {
	r.t.Helper()
	leader := r.leader()
	d, err := r.c.Digest(context.Background(), leader)
	if err != nil {
		r.fatalf("watchers: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &roundWatches{spec: spec, start: d.AppliedIndex + 1, ctx: ctx, cancel: cancel, stops: map[*nodeWatcher]context.CancelFunc{}}
	var urls []string
	for i, id := range r.c.IDs() {
		urls = append(urls, r.c.URL(id))
		opts := kv.WatchOptions{Key: []byte(spec.prefix), Prefix: true, FromIndex: rw.start, PrevValue: i != 1}
		switch i {
		case 0:
			opts.FromIndex = 1
		case 1:
			opts.FromIndex = 0 // from now: it starts after its first stream's X-Raft-Index
		}
		rw.nodes = append(rw.nodes, newNodeWatcher(r.c, id, opts, r.rec.Now, r.logf))
	}
	// The membership tests turn every member over within seconds: the
	// client re-reads the members every second (as its stream delivers)
	// to keep up; its watch resumes on members it learned.
	if rw.cl, err = client.New(client.Config{Endpoints: urls, HTTPClient: r.c.ClientHTTP(), RefreshInterval: time.Second}); err != nil {
		cancel()
		r.fatalf("client: %v", err)
	}
	for _, opts := range spec.client {
		if !strings.HasPrefix(string(opts.Key), spec.prefix) {
			cancel()
			r.fatalf("watchers: the client's watch of %q is not under the prefix %q", opts.Key, spec.prefix)
		}
		if opts.FromIndex == 0 {
			opts.FromIndex = rw.start
		}
		rw.clients = append(rw.clients, newClientWatcher(rw.cl, opts, r.logf))
	}
	for _, w := range rw.nodes {
		rw.run(w)
	}
	for _, w := range rw.clients {
		rw.wg.Add(1)
		go func() {
			defer rw.wg.Done()
			w.run(ctx)
		}()
	}
	r.t.Cleanup(rw.stop)
	r.watch = rw
	var names []string
	for _, s := range rw.streams() {
		names = append(names, s.Name)
	}
	r.logf("watchers (start index %d): %s", rw.start, strings.Join(names, "; "))
}

// run runs a node watcher until the round's watchers stop or it is
// retired.
func (rw *roundWatches) run(w *nodeWatcher) {
	ctx, cancel := context.WithCancel(rw.ctx)
	rw.stops[w] = cancel
	rw.wg.Add(1)
	go func() {
		defer rw.wg.Done()
		defer cancel()
		w.run(ctx)
	}()
}

// watchNode starts a watcher over HTTP on a node that joined during the
// round, from index 1 with previous records: the history it received by
// snapshot and log must be the committed one too. Call it once the node
// is ready.
func (r *round) watchNode(id string) {
	r.t.Helper()
	if r.watch == nil {
		return
	}
	rw := r.watch
	w := newNodeWatcher(r.c, id, kv.WatchOptions{Key: []byte(rw.spec.prefix), Prefix: true, FromIndex: 1, PrevValue: true}, r.rec.Now, r.logf)
	rw.nodes = append(rw.nodes, w)
	rw.run(w)
	r.logf("watcher added: %s", w.stream().Name)
}

// unwatchNode stops the watchers over HTTP on a node that leaves the
// cluster (removed, its host deleted): what they received is still
// checked, as far as they got.
func (r *round) unwatchNode(id string) {
	if r.watch == nil {
		return
	}
	for _, w := range r.watch.nodes {
		if w.node == id {
			w.retire()
			r.watch.stops[w]()
			r.logf("watcher retired: %s", w.stream().Name)
		}
	}
}

// checkWatches is the watch check, once the clients have stopped: every
// node converges at index E and lists every key; each node's history from
// index 1 through E (read until a write after E shows) must be the same;
// that history must follow the state machine's rules, hold every
// acknowledged write and nothing no client sent (CheckHistory), and replay
// to every node's listing; then, once each watcher has caught up with the
// last index of its range, its record must equal the history of its range
// from its start index (CheckStream).
func (r *round) checkWatches() {
	r.t.Helper()
	rw := r.watch
	ctx := context.Background()
	ids := r.c.IDs()

	// The committed state, at one index on every node.
	var through uint64
	listings := map[string][]kv.Record{}
	err := Poll(ctx, 30*time.Second, func() error {
		d, err := r.c.WaitConverged(ctx, 20*time.Second, ids, 0)
		if err != nil {
			return err
		}
		through = d[0].AppliedIndex
		for _, id := range ids {
			recs, idx, err := r.c.ListAll(ctx, id, rw.spec.prefix)
			if err != nil {
				return err
			}
			if idx != through {
				return fmt.Errorf("%s listed at index %d, after converging at %d", id, idx, through)
			}
			listings[id] = recs
		}
		return nil
	})
	if err != nil {
		r.fatalf("watch check: the nodes did not settle on one state: %v", err)
	}
	// A write after it, under the prefix, marks the end of each node's
	// history stream.
	until, err := r.c.PutRetry(ctx, 10*time.Second, rw.spec.prefix+watchEndKey, "end")
	if err != nil {
		r.fatalf("watch check: the end marker: %v", err)
	}
	hists := map[string]History{}
	for _, id := range ids {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		h, err := r.c.ReadHistory(rctx, id, rw.spec.prefix, 1, through, until)
		cancel()
		if err != nil {
			r.fatalf("watch check: reading %s's history: %v", id, err)
		}
		hists[id] = h
	}
	ref := hists[ids[0]]
	var problems []string
	for _, id := range ids[1:] {
		if err := CompareHistories(ids[0], ref, id, hists[id]); err != nil {
			problems = append(problems, err.Error())
		}
	}
	writes := append(r.rec.Writes(), r.wl.TxnWrites()...)
	var prefixes []string
	if rw.spec.txnPrefix != "" {
		prefixes = append(prefixes, rw.spec.txnPrefix)
	}
	hc := CheckHistory(ref, writes, rw.spec.keys, prefixes)
	problems = append(problems, hc.Problems...)
	for _, id := range ids {
		if err := CompareState(id, hc.State, listings[id]); err != nil {
			problems = append(problems, err.Error())
		}
	}

	// Every watcher catches up with its range, then stops.
	type watcher interface {
		reached() (uint64, bool)
		stream() *WatchStream
	}
	var ws []watcher
	for _, w := range rw.nodes {
		ws = append(ws, w)
	}
	for _, w := range rw.clients {
		ws = append(ws, w)
	}
	err = Poll(ctx, 30*time.Second, func() error {
		for _, w := range ws {
			s := w.stream()
			want := ref.LastIndex(s.Opts, s.Opts.FromIndex)
			if got, ended := w.reached(); got < want && !ended {
				return fmt.Errorf("watcher %s has delivered up to %d; its range's history goes on to %d", s.Name, got, want)
			}
		}
		return nil
	})
	if err != nil {
		r.logf("watch check: %v", err) // CheckStream names the watcher that lags
	}
	rw.stop()
	streams := rw.streams()
	var stats []string
	for _, s := range streams {
		if err := CheckStream(ref, s); err != nil {
			problems = append(problems, err.Error())
		}
		events := 0
		for _, resp := range s.Responses {
			events += len(resp.Events)
		}
		st := fmt.Sprintf("%s: %d responses, %d events, up to %d", s.Name, len(s.Responses), events, s.Reached())
		if len(s.Opens) > 1 {
			st += fmt.Sprintf(", %d streams", len(s.Opens))
		}
		stats = append(stats, st)
	}
	r.logf("watch check: history %s", hc.Stats)
	for _, st := range stats {
		r.logf("watch check: %s", st)
	}
	r.t.Logf("%s: watch history %s; %d watchers: %s", r.name, hc.Stats, len(streams), strings.Join(stats, "; "))
	if len(problems) == 0 && !*flagKeep {
		return
	}
	files := r.writeWatchFiles(ref, streams)
	if len(problems) > 0 {
		r.fatalf("watch check: %d problems:\n  %s\n  every watcher's record and the history: %s",
			len(problems), strings.Join(problems, "\n  "), strings.Join(files, ", "))
	}
}

// writeWatchFiles writes the history (watch-history.ndjson) and each
// watcher's record (watch-<i>.txt: every response as its NDJSON line, the
// streams it opened marked) into the run directory.
func (r *round) writeWatchFiles(ref History, streams []*WatchStream) []string {
	var files []string
	write := func(name string, f func(w *bufio.Writer)) {
		path := filepath.Join(r.dir, name)
		fh, err := os.Create(path)
		if err != nil {
			r.t.Logf("writing %s: %v", path, err)
			return
		}
		w := bufio.NewWriter(fh)
		f(w)
		if err := errors.Join(w.Flush(), fh.Close()); err != nil {
			r.t.Logf("writing %s: %v", path, err)
		}
		files = append(files, path)
	}
	write("watch-history.ndjson", func(w *bufio.Writer) {
		for _, resp := range ref.Responses {
			fmt.Fprintln(w, responseString(resp))
		}
	})
	for i, s := range streams {
		write(fmt.Sprintf("watch-%d.txt", i+1), func(w *bufio.Writer) {
			fmt.Fprintf(w, "# %s\n", s.Name)
			if s.End != nil {
				fmt.Fprintf(w, "# ended: %v\n", s.End)
			}
			o := 0
			for j, resp := range s.Responses {
				for o < len(s.Opens) && s.Opens[o].First == j {
					fmt.Fprintf(w, "# stream %d opened at %.0fms from_index=%d (0: none), X-Raft-Index %d; it ended: %s\n", o+1, s.Opens[o].At, s.Opens[o].From, s.Opens[o].After, s.Opens[o].Ended)
					o++
				}
				fmt.Fprintf(w, "#%d %s\n", j, responseString(resp))
			}
			for ; o < len(s.Opens); o++ {
				fmt.Fprintf(w, "# stream %d opened at %.0fms from_index=%d (0: none), X-Raft-Index %d, delivered nothing; it ended: %s\n", o+1, s.Opens[o].At, s.Opens[o].From, s.Opens[o].After, s.Opens[o].Ended)
			}
		})
	}
	return files
}

// TestWatchExactUnderFaults checks that watches deliver exactly the
// committed history under faults. Clients write through every node (the
// linearizability workload on w/k0..w/k4, and transaction clients on
// w/t/: transactions with several events, a key put twice, prefix
// deletes), while one watcher per node streams /v1/watch/w/?prefix over
// HTTP, reopening on the same node after every kill, and two watch through
// the Go client (which resumes across nodes); the cluster snapshots every
// 64 entries, so restarted nodes restore history from snapshots. The
// faults: SIGKILL a node, SIGSTOP the leader, isolate the leader, SIGKILL
// every node (each once in the short pass; with -chaos.duration, picked
// at random until it is up). Then the watch check (checkWatches), and the
// history must be linearizable.
func TestWatchExactUnderFaults(t *testing.T) {
	for rd := 1; rd <= *flagRounds; rd++ {
		t.Run("round"+itoa(rd), func(t *testing.T) {
			args, err := watchHistoryArgs()
			if err != nil {
				t.Fatal(err)
			}
			snap, err := snapshotArgs()
			if err != nil {
				t.Fatal(err)
			}
			r := newRoundConfig(t, roundSeed(400, rd), roundConfig{args: append(args, snap...)})
			keys := []string{"w/k0", "w/k1", "w/k2", "w/k3", "w/k4"}
			r.startWatchers(watchSpec{
				prefix: "w/", keys: keys, txnPrefix: "w/t/",
				client: []kv.WatchOptions{
					{Key: []byte("w/t/"), Prefix: true, PrevValue: true},
					// Silent for 3 s, the client takes the stream for lost
					// and reopens it: resumes while nothing happens too.
					{Key: []byte("w/k1"), FromIndex: 1, ProgressInterval: time.Second},
				},
			})
			r.startClients(WorkloadConfig{Keys: keys, TxnClients: 2, TxnPrefix: "w/t/", TxnKeys: []string{"w/t/a", "w/t/b", "w/t/c", "w/t/d"}})
			r.warmUp()
			killOne := func() {
				id := pick(r, r.c.IDs())
				r.fault("SIGKILL "+id+" and restart it", func() { r.must(r.c.Kill(id)) }, r.hold()/2, func() {
					r.must(r.c.StartNode(id))
					r.waitReady()
				})
			}
			pauseLeader := func() {
				l := r.leader()
				r.fault("SIGSTOP leader "+l+", then SIGCONT", func() { r.must(r.c.Pause(l)) }, r.hold()/2+time.Second, func() {
					r.must(r.c.Resume(l))
				})
			}
			isolateLeader := func() {
				l := r.leader()
				r.fault("isolate leader "+l, func() { r.c.Isolate(l) }, r.hold()/2, r.c.Heal)
			}
			killAll := func() {
				r.fault("SIGKILL every node and restart them", func() { r.must(r.c.KillAll()) }, r.hold()/3, func() {
					r.must(r.c.Start())
					r.waitReady()
				})
			}
			faults := []func(){killOne, pauseLeader, isolateLeader, killAll}
			r.cycles(func(i int) {
				if i == 0 {
					for _, f := range faults {
						f()
					}
					return
				}
				pick(r, faults)()
			})
			r.finish()
			// The kills must have made the per-node watchers resume on
			// their node, or the test did not test that.
			resumed := 0
			for _, w := range r.watch.nodes {
				if n := len(w.stream().Opens); n > 1 {
					resumed += n - 1
				}
			}
			if resumed == 0 {
				r.fatalf("no per-node watcher reopened its stream: the kills did not reach them")
			}
		})
	}
}
