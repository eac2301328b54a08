//go:build unix

package chaos

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestLinearizableUnderLeaderChanges is the consistency issue's check:
// clients run get, put, CAS, create and delete on a handful of keys through
// HTTP against all three nodes while leadership keeps moving, by transfer
// (POST /v1/cluster/transfer-leader) and by stopping the leader (SIGKILL,
// then a restart from its data dir). The history, checked per key with
// porcupine, must be linearizable. About 30 s in the short pass.
func TestLinearizableUnderLeaderChanges(t *testing.T) {
	for rd := 1; rd <= *flagRounds; rd++ {
		t.Run("round"+itoa(rd), func(t *testing.T) {
			r := newRound(t, roundSeed(100, rd))
			r.startClients(WorkloadConfig{})
			r.warmUp()
			changes := 0
			for i := 0; i < 6 || time.Now().Before(r.until); i++ {
				l := r.leader()
				if i%2 == 0 {
					r.fault("transfer leadership away from "+l, func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						status, _, body, err := r.c.Do(ctx, http.MethodPost, r.c.URL(l)+"/v1/cluster/transfer-leader", nil, nil)
						if err != nil || status != http.StatusOK {
							r.fatalf("transfer from %s: %d %s %v", l, status, body, err)
						}
					}, 500*time.Millisecond, func() {})
				} else {
					r.fault("stop leader "+l+" and restart it", func() { r.must(r.c.Kill(l)) }, r.hold()/2, func() {
						r.must(r.c.StartNode(l))
						r.waitReady()
					})
				}
				if nl := r.leader(); nl != l {
					changes++
				}
			}
			if changes < 4 {
				r.fatalf("leadership changed %d times; the test is meant to force at least 4", changes)
			}
			r.finish()
		})
	}
}
