package raftkv_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/testkit"
)

// The README's failover walk: the leader stops, and a write and a
// linearizable read sent at once to the others are answered once a new
// leader is elected, instead of a 503 no_leader while the followers still
// name the old one, or name none.
func TestWritesAndReadsRightAfterLeaderStops(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	put(t, c, c.Leader(), "before", "1")
	for round := range 2 {
		l := c.Leader()
		var others []int
		for i := range c.Size() {
			if i != l {
				others = append(others, i)
			}
		}
		c.Stop(l)
		// At once: no poll, no wait for the election.
		resp, body := c.Do(http.MethodPut, c.URL(others[0])+"/v1/kv/still", strings.NewReader("here"), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("round %d: PUT right after the leader stopped: %d %s", round, resp.StatusCode, body)
		}
		if r, b := get(t, c, others[1], "still", ""); r.StatusCode != http.StatusOK || b != "here" {
			t.Fatalf("round %d: linearizable GET right after: %d %s", round, r.StatusCode, b)
		}
		c.Restart(l)
		c.WaitReady()
	}
}
