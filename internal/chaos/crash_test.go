//go:build unix

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashDurability SIGKILLs every node in the middle of a write load,
// restarts them, and reads every key: each must hold its last acknowledged
// value (or a later write of unknown outcome), never an older one.
func TestCrashDurability(t *testing.T) {
	for rd := 1; rd <= *flagRounds; rd++ {
		t.Run("round"+itoa(rd), func(t *testing.T) {
			r := newRound(t, roundSeed(100, rd))
			ledger := NewLedger()
			keys := make([]string, 32)
			for i := range keys {
				keys[i] = fmt.Sprintf("d/%02d", i)
			}
			r.cycles(func(cycle int) {
				w := r.startWriters(ledger, keys, 12, uint64(cycle))
				load := time.Second + time.Duration(r.rng.Int64N(int64(2*time.Second)))
				if r.long {
					load += time.Duration(r.rng.Int64N(int64(5 * time.Second)))
				}
				start := r.rec.Now()
				r.sleep(load) // the write load runs
				r.must(r.c.KillAll())
				w.stop()
				r.logf("crash %d: killed every node after %s of load; %d writes acknowledged so far", cycle+1, load.Round(time.Millisecond), ledger.AckedCount())
				r.must(r.c.Start())
				r.waitReady()
				r.rec.Fault(start, r.rec.Now(), "SIGKILL every node under write load")
				r.verifyLedger(ledger, keys)
			})
			r.afterHeal()
			if ex := r.c.UnexpectedExits(); len(ex) > 0 {
				r.fatalf("raftkv crashed: %s", strings.Join(ex, "; "))
			}
			t.Logf("%d acknowledged writes survived every crash", ledger.AckedCount())
		})
	}
}

type writers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (w *writers) stop() {
	w.cancel()
	w.wg.Wait()
}

// startWriters runs n goroutines that PUT unique values to random keys
// through random nodes and record every answer in the ledger.
func (r *round) startWriters(ledger *Ledger, keys []string, n int, cycle uint64) *writers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{cancel: cancel}
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewPCG(r.seed+cycle, uint64(i)))
			for seq := 0; ctx.Err() == nil; seq++ {
				ids := r.c.RunningIDs()
				if len(ids) == 0 {
					return
				}
				node := ids[rng.IntN(len(ids))]
				key := keys[rng.IntN(len(keys))]
				value := fmt.Sprintf("w%d-%d-%d", cycle, i, seq)
				rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
				st, _, b, err := r.c.Do(rctx, http.MethodPut, r.c.URL(node)+"/v1/kv/"+key, []byte(value), nil)
				rcancel()
				ledger.RecordPut(key, value, st, b, err)
			}
		}()
	}
	r.t.Cleanup(w.stop)
	return w
}

// verifyLedger reads every key linearizably, through every node in turn,
// and checks it against the ledger.
func (r *round) verifyLedger(ledger *Ledger, keys []string) {
	r.t.Helper()
	ctx := context.Background()
	ids := r.c.IDs()
	for i, key := range keys {
		node := ids[i%len(ids)]
		var got Observed
		err := Poll(ctx, 10*time.Second, func() error {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			st, h, b, err := r.c.Do(rctx, http.MethodGet, r.c.URL(node)+"/v1/kv/"+key, nil, nil)
			if err != nil {
				return err
			}
			switch st {
			case http.StatusNotFound:
				got = Observed{}
				return nil
			case http.StatusOK:
				got = Observed{Found: true, Value: string(b)}
				got.Mod, _ = strconv.ParseUint(h.Get("X-Mod-Index"), 10, 64)
				got.Version, _ = strconv.ParseUint(h.Get("X-Version"), 10, 64)
				return nil
			}
			return fmt.Errorf("GET %s on %s: %d %s", key, node, st, b)
		})
		if err != nil {
			r.fatalf("reading %s after the restart: %v", key, err)
		}
		if err := ledger.Verify(key, got); err != nil {
			r.fatalf("durability: %v (read through %s)", err, node)
		}
	}
	r.logf("verified %d keys against %d acknowledged writes", len(keys), ledger.AckedCount())
}
