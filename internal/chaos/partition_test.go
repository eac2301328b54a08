//go:build unix

package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// partitionWrite is one PUT of the partition test and how it ended.
type partitionWrite struct {
	node       string
	writer     string // node/i: one writer's writes are sequential
	start, end time.Time
	status     int // 0: no answer (transport error or the client gave up)
	code       string
	err        error
}

// TestWritesThroughFollowersDuringPartition cuts the leader off from both
// followers, raft and the members' HTTP alike, packets dropped rather than
// refused (the proxies hold the bytes; connections stay open). The
// followers elect a new leader at once; writes sent to them must keep
// flowing: a follower whose earlier batches went to the old leader abandons
// them (their writes' outcome is unknown) instead of holding every slot
// until the client gives up. After the heal, no node stalls either. Every
// acknowledged write is on every node at the end.
func TestWritesThroughFollowersDuringPartition(t *testing.T) {
	cut := 8 * time.Second
	if *flagDuration > 0 {
		cut = max(*flagDuration, 30*time.Second)
	}
	for rd := 1; rd <= *flagRounds; rd++ {
		t.Run("round"+itoa(rd), func(t *testing.T) {
			r := newRoundConfig(t, roundSeed(300, rd), roundConfig{proxyHTTP: true})
			old := r.leader()
			ledger := NewLedger()
			pw := r.startPartitionWriters(ledger, 2)
			r.sleep(time.Second)

			cutAt := time.Now()
			r.logf("isolating the leader %s for %s", old, cut)
			r.c.Isolate(old)
			r.sleep(cut)
			healAt := time.Now()
			r.c.Heal()
			r.logf("healed")
			r.sleep(4 * time.Second)
			writes := pw.stop()

			// A new leader needs an election timeout or two (1s each, with
			// raft's randomization). A write sent to one of the majority
			// after that, and well before the heal, must be acknowledged
			// before the heal; one sent after the heal, to anyone, must be
			// acknowledged.
			const settle = 3 * time.Second
			var during, after int
			acked := map[string]int{} // per writer through the majority
			for _, w := range writes {
				took := w.end.Sub(w.start).Round(time.Millisecond)
				switch {
				case w.node != old && w.start.After(cutAt.Add(settle)) && w.start.Before(healAt.Add(-settle)):
					during++
					if w.status != http.StatusOK || w.end.After(healAt) {
						r.fatalf("a write through %s sent %s into the partition stalled or failed: after %s (the heal came %s after it was sent): %d %s %v",
							w.node, w.start.Sub(cutAt).Round(time.Millisecond), took, healAt.Sub(w.start).Round(time.Millisecond), w.status, w.code, w.err)
					}
					acked[w.writer]++
				case w.start.After(healAt.Add(settle)):
					after++
					if w.status != http.StatusOK {
						r.fatalf("a write through %s after the heal failed after %s: %d %s %v", w.node, took, w.status, w.code, w.err)
					}
				}
			}
			// A writer stuck on a write sent before the cut sends nothing
			// in the window: that is the stall.
			for _, w := range writes {
				if w.node != old && acked[w.writer] == 0 {
					r.fatalf("writes through %s stalled for the whole partition: writer %s had no write sent and acknowledged between %s after the cut and %s before the heal",
						w.node, w.writer, settle, settle)
				}
			}
			if after == 0 {
				r.fatalf("no write was sent after the heal")
			}
			r.logf("%d writes through the majority during the partition and %d after the heal, all acknowledged in time", during, after)

			leader := r.leader()
			idx, err := r.c.PutRetry(context.Background(), 10*time.Second, "chaos/partition-done", "ok")
			if err != nil {
				r.fatalf("no write after the partition: %v", err)
			}
			if _, err := r.c.WaitConverged(context.Background(), 20*time.Second, r.c.IDs(), idx); err != nil {
				r.fatalf("members did not converge (leader %s): %v", leader, err)
			}
			r.verifyLedger(ledger, ledger.Keys())
			if ex := r.c.UnexpectedExits(); len(ex) > 0 {
				r.fatalf("raftkv crashed: %s", strings.Join(ex, "; "))
			}
		})
	}
}

type partitionWriters struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	writes []partitionWrite
}

// stop ends the writers and returns every write they made.
func (p *partitionWriters) stop() []partitionWrite {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writes
}

// startPartitionWriters runs perNode writers against each node, each
// writing its own key in turn, as a client without a deadline of its own
// would (curl): the test's only bound is a 15 s client timeout, far past
// what a healthy write takes.
func (r *round) startPartitionWriters(ledger *Ledger, perNode int) *partitionWriters {
	ctx, cancel := context.WithCancel(context.Background())
	p := &partitionWriters{cancel: cancel}
	for _, node := range r.c.IDs() {
		for i := range perNode {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				key := fmt.Sprintf("part/%s/%d", node, i)
				for seq := 0; ctx.Err() == nil; seq++ {
					value := fmt.Sprintf("%s-%d-%d", node, i, seq)
					w := partitionWrite{node: node, writer: key, start: time.Now()}
					rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
					st, _, b, err := r.c.Do(rctx, http.MethodPut, r.c.URL(node)+"/v1/kv/"+key, []byte(value), nil)
					rcancel()
					w.end, w.status, w.err = time.Now(), st, err
					if err != nil {
						w.status = 0
					} else if st != http.StatusOK {
						w.code = errorCode(b)
					}
					if ctx.Err() != nil && err != nil {
						ledger.Unknown(key, value) // stopped mid-write: not judged
						return
					}
					ledger.RecordPut(key, value, st, b, err)
					p.mu.Lock()
					p.writes = append(p.writes, w)
					p.mu.Unlock()
				}
			}()
		}
	}
	r.t.Cleanup(func() { p.stop() })
	return p
}
