//go:build unix

package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// snapshotState reads a node's raft snapshot store
// (<data>/snapshots/snapshots/<term>-<index>-<ms>[.tmp]): the newest
// complete snapshot's index, and whether a snapshot is being written (a
// .tmp directory exists: taken locally or received from the leader).
func snapshotState(dataDir string) (newest uint64, inProgress []string) {
	entries, err := os.ReadDir(filepath.Join(dataDir, "snapshots", "snapshots"))
	if err != nil {
		return 0, nil
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			inProgress = append(inProgress, name)
			continue
		}
		parts := strings.Split(name, "-")
		if len(parts) != 3 {
			continue
		}
		if idx, err := strconv.ParseUint(parts[1], 10, 64); err == nil {
			newest = max(newest, idx)
		}
	}
	return newest, inProgress
}

// snapTuning is what the cluster's snapshot settings demand of a fault.
type snapTuning struct {
	threshold, trailing uint64
	wait                time.Duration // longest wait for the next snapshot
}

// currentSnapTuning is what snapshotArgs set, with raftkv's defaults
// (8192 entries, checked every 30 s plus up to 30 s, 10240 kept) for the
// flags the binary lacks.
func currentSnapTuning() snapTuning {
	t := snapTuning{threshold: 8192, trailing: 10240, wait: 90 * time.Second}
	if serveFlags["snapshot-threshold"] {
		t.threshold = 64
	}
	if serveFlags["trailing-logs"] {
		t.trailing = 32
	}
	if serveFlags["snapshot-interval"] {
		t.wait = 20 * time.Second
	}
	return t
}

// loader writes bulk keys (outside the clients' keys, so not in the
// history) straight to the current leader with many writers.
type loader struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	written atomic.Int64
}

// startLoader writes values of size bytes to bulk/<i mod keys> until
// stopped.
func (r *round) startLoader(writers, keys, size int) *loader {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loader{cancel: cancel}
	value := []byte(strings.Repeat("x", size))
	var next atomic.Int64
	for range writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				leader, err := r.c.Leader(ctx, 5*time.Second)
				if err != nil {
					continue
				}
				for ctx.Err() == nil {
					i := next.Add(1)
					rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
					st, _, _, err := r.c.Do(rctx, http.MethodPut, fmt.Sprintf("%s/v1/kv/bulk/%d", r.c.URL(leader), i%int64(keys)), value, nil)
					rcancel()
					if err != nil || st != http.StatusOK {
						break // find the leader again
					}
					l.written.Add(1)
				}
			}
		}()
	}
	r.t.Cleanup(l.stop)
	return l
}

func (l *loader) stop() {
	l.cancel()
	l.wg.Wait()
}

// F10: a follower falls so far behind that the leader, having compacted
// its log, must send it a snapshot; the follower is SIGKILLed in the middle
// of receiving it, restarted, and must still catch up.
func runSnapshotInstallKilled(r *round) {
	tune := currentSnapTuning()
	ctx := context.Background()
	r.cycles(func(int) {
		l := r.leader()
		f := pick(r, r.followers(l))
		info, err := r.c.Info(ctx, f)
		if err != nil {
			r.fatalf("info %s: %v", f, err)
		}
		behind := info.AppliedIndex
		start := r.rec.Now()
		r.logf("F10: isolating follower %s at applied index %d", f, behind)
		r.c.Isolate(f)

		// Enough log entries that the follower's next entry is compacted
		// away after the majority's next snapshot (the thresholds count
		// raft entries, and group commit puts concurrent writes in one
		// entry), and big values so that the snapshot takes a while to
		// send over a throttled link.
		target := behind + tune.threshold + tune.trailing + 64
		bulk, size := int64(160), 64<<10
		if tune.threshold+tune.trailing > 1000 {
			bulk, size = 20000, 256 // thousands of entries: many small writes
		}
		ld := r.startLoader(16, int(bulk), size)
		err = Poll(ctx, 5*time.Minute, func() error {
			var idx uint64
			for _, id := range r.followers(f) {
				if info, err := r.c.Info(ctx, id); err == nil {
					idx = max(idx, info.AppliedIndex)
				}
			}
			if n := ld.written.Load(); n < bulk || idx < target {
				return fmt.Errorf("%d of %d bulk writes, raft index %d of %d", n, bulk, idx, target)
			}
			return nil
		})
		ld.stop()
		if err != nil {
			r.fatalf("F10: loading the majority while %s is cut off: %v", f, err)
		}
		var snapIdx uint64
		err = Poll(ctx, tune.wait, func() error {
			snapIdx = 0
			for i, id := range r.followers(f) {
				idx, _ := snapshotState(r.c.Node(id).DataDir)
				if i == 0 || idx < snapIdx {
					snapIdx = idx
				}
			}
			if snapIdx <= behind+tune.trailing+1 {
				return fmt.Errorf("the majority's snapshots reach %d; %s is at %d, %d entries are kept", snapIdx, f, behind, tune.trailing)
			}
			return nil
		})
		if err != nil {
			r.fatalf("F10: the leader never compacted past the isolated follower: %v", err)
		}
		r.logf("F10: majority snapshotted at %d, %s is at %d", snapIdx, f, behind)

		// Heal, but slowly: 1 MB/s towards the follower.
		for _, p := range r.c.Links() {
			if p.To == f {
				p.Set(LinkFault{Rate: 1 << 20})
			} else {
				p.Heal()
			}
		}
		var seen []string
		err = Poll(ctx, 30*time.Second, func() error {
			_, seen = snapshotState(r.c.Node(f).DataDir)
			if len(seen) == 0 {
				return fmt.Errorf("%s is not receiving a snapshot", f)
			}
			return nil
		})
		if err != nil {
			r.fatalf("F10: follower never began to install a snapshot: %v", err)
		}
		r.sleep(time.Duration(r.rng.Int64N(int64(500 * time.Millisecond))))
		r.must(r.c.Kill(f))
		_, still := snapshotState(r.c.Node(f).DataDir)
		r.logf("F10: killed %s while receiving snapshot %v (still in progress at the kill: %v)", f, seen, still)
		r.c.Heal()
		r.must(r.c.StartNode(f))
		r.waitReady()
		r.rec.Fault(start, r.rec.Now(), fmt.Sprintf("%s isolated, lagging, killed while installing snapshot %v", f, seen))
		r.afterHeal()
	})
}

// F11: a node is SIGKILLed while it writes a snapshot of its own.
func runKillDuringSnapshot(r *round) {
	tune := currentSnapTuning()
	r.cycles(func(int) {
		start := r.rec.Now()
		// A state of a few MB, so that writing a snapshot takes tens of
		// milliseconds. Without the tuning flags a snapshot needs 8192 new
		// entries first: many small writes over many keys.
		writers, keys, size := 8, 200, 16<<10
		if tune.threshold > 1000 {
			writers, keys, size = 16, 20000, 512
		}
		ld := r.startLoader(writers, keys, size)
		// Polled every millisecond: a snapshot of a few MB is written
		// in tens of milliseconds.
		var victim string
		var tmp []string
		var err error
		deadline := time.Now().Add(tune.wait)
		tick := time.NewTicker(time.Millisecond)
		for victim == "" && time.Now().Before(deadline) {
			for _, id := range r.c.RunningIDs() {
				if _, tmp = snapshotState(r.c.Node(id).DataDir); len(tmp) > 0 {
					victim = id
					err = r.c.Kill(id) // at once: the snapshot is being written now
					break
				}
			}
			<-tick.C
		}
		tick.Stop()
		if victim == "" {
			err = fmt.Errorf("no node was seen writing a snapshot")
		}
		ld.stop()
		if err != nil {
			r.fatalf("F11: never caught a node taking a snapshot within %s: %v", tune.wait, err)
		}
		_, still := snapshotState(r.c.Node(victim).DataDir)
		r.logf("F11: killed %s while it wrote snapshot %v (still unfinished after the kill: %v)", victim, tmp, still)
		r.sleep(r.hold() / 3)
		r.must(r.c.StartNode(victim))
		r.waitReady()
		r.rec.Fault(start, r.rec.Now(), fmt.Sprintf("SIGKILL %s while it wrote snapshot %v", victim, tmp))
		r.afterHeal()
	})
}
