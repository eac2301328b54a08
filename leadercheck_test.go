package raftkv_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// nodesBut lists c's nodes other than l.
func nodesBut(c *testkit.Cluster, l int) []int {
	var others []int
	for i := range c.Size() {
		if i != l {
			others = append(others, i)
		}
	}
	return others
}

// A leadership check counts an answer only from the voter it asked. The
// leader reaches a voter at the API address the replicated nodes table
// holds for it; once that address belongs to another process (the member
// restarted elsewhere, another took its old port), whoever answers there
// must not be counted as that voter: one process counted twice, or the
// leader counting itself, makes a quorum that does not exist.
func TestLeaderCheckCountsOnlyTheVoterAsked(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l := c.Leader()
	others := nodesBut(c, l)
	leader, a, b := c.Node(l), c.Node(others[0]), c.Node(others[1])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	setAddr := func(id, addr string) {
		t.Helper()
		if err := raftkv.SetNodeAPIAddr(ctx, leader, id, addr); err != nil {
			t.Fatalf("record %s's API address as %s: %v", id, addr, err)
		}
	}

	// Control: at its own address, a voter's answer counts.
	if err := raftkv.CheckFollows(ctx, leader, a.ID()); err != nil {
		t.Fatalf("check of %s at its own address: %v", a.ID(), err)
	}
	for _, tt := range []struct{ name, addr string }{
		{"another voter's address", b.HTTPAddr()},
		{"the leader's own address", leader.HTTPAddr()},
	} {
		setAddr(a.ID(), tt.addr)
		err := raftkv.CheckFollows(ctx, leader, a.ID())
		if err == nil {
			t.Errorf("%s recorded at %s: the leader counted the process there as %s", a.ID(), tt.name, a.ID())
		} else if !errors.Is(err, kv.ErrWrongNode) {
			t.Errorf("%s recorded at %s: %v, want wrong_node", a.ID(), tt.name, err)
		}
	}

	// The member at the wrong address says so when asked for another id.
	resp, body := c.Do(http.MethodGet, c.URL(others[1])+"/v1/internal/leader-check?id="+a.ID(), nil, nil)
	var e kv.ErrorResponse
	if resp.StatusCode != http.StatusMisdirectedRequest || json.Unmarshal(body, &e) != nil || e.Error.Code != "wrong_node" {
		t.Errorf("leader check for %s at %s: %d %s, want 421 wrong_node", a.ID(), b.ID(), resp.StatusCode, body)
	}
	// Asked for its own id, it answers with it.
	resp, body = c.Do(http.MethodGet, c.URL(others[1])+"/v1/internal/leader-check?id="+b.ID(), nil, nil)
	var lc httpapi.LeaderCheckResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &lc) != nil || lc.ID != b.ID() || lc.LeaderID != leader.ID() {
		t.Errorf("leader check for %s at %s: %d %s", b.ID(), b.ID(), resp.StatusCode, body)
	}

	// With a's address at the leader's own and b stopped, only the leader
	// answers: no quorum, whatever the leader answers itself.
	setAddr(a.ID(), leader.HTTPAddr())
	c.Stop(others[1])
	if err := raftkv.ConfirmLeadership(leader); err == nil {
		t.Errorf("leadership confirmed with %s recorded at the leader's address and %s stopped", a.ID(), b.ID())
	}
	// Back at its own address, a confirms the leader again.
	setAddr(a.ID(), a.HTTPAddr())
	if err := raftkv.ConfirmLeadership(leader); err != nil {
		t.Errorf("with %s at its own address: %v", a.ID(), err)
	}
}

// A follower's read index in a cluster of three rests on the follower's
// word: its term, read after its reads began, is the leader's, and the two
// of them are a quorum, so the leader answers without a leadership check
// of its own (docs/consistency.md, "Linearizable reads on followers").
// A word that does not make that quorum (another term, the leader's own
// id, a stranger) gets the check, and a term that is not a number is a bad
// request.
func TestFollowerReadIndexOnItsWord(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	counter := func(name string) int {
		t.Helper()
		v, err := strconv.Atoi(metricValue(t, c, l, name))
		if err != nil {
			t.Fatalf("leader's %s: %v", name, err)
		}
		return v
	}
	const checks, vouched = "raftkv_leadership_checks_total", "raftkv_read_index_vouched_total"

	// Linearizable reads on the follower, one after another: each is its
	// own read-index round, each on the follower's word.
	put(t, c, l, "word", "v1")
	checks0, vouched0 := counter(checks), counter(vouched)
	const reads = 20
	for i := range reads {
		if resp, body := get(t, c, f, "word", ""); resp.StatusCode != http.StatusOK || body != "v1" {
			t.Fatalf("read %d on the follower: %d %q", i, resp.StatusCode, body)
		}
	}
	if got := counter(vouched) - vouched0; got != reads {
		t.Errorf("%d read indexes on the follower's word for %d follower reads, one after another; want one each", got, reads)
	}
	if got := counter(checks) - checks0; got != 0 {
		t.Errorf("the leader ran %d leadership checks for %d follower reads; want none", got, reads)
	}

	term := metricValue(t, c, l, "raftkv_raft_term")
	url := c.URL(l) + httpapi.ReadIndexPath
	for _, tt := range []struct {
		name      string
		by, term  string
		vouchedBy int // how much the vouched counter moves
	}{
		{"the follower in the leader's term", c.ID(f), term, 1},
		{"the follower in an older term", c.ID(f), "1", 0},
		{"the leader's own id", c.ID(l), term, 0},
		{"a server id that is no member", "stranger", term, 0},
		{"no term", c.ID(f), "", 0},
	} {
		v0, c0 := counter(vouched), counter(checks)
		h := map[string]string{httpapi.HeaderForwardedBy: tt.by}
		if tt.term != "" {
			h[httpapi.HeaderTerm] = tt.term
		}
		resp, body := c.Do(http.MethodGet, url, nil, h)
		var ri httpapi.ReadIndexResponse
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ri) != nil || ri.Index == 0 {
			t.Errorf("%s: %d %s", tt.name, resp.StatusCode, body)
			continue
		}
		if got := counter(vouched) - v0; got != tt.vouchedBy {
			t.Errorf("%s: vouched counter moved by %d, want %d", tt.name, got, tt.vouchedBy)
		}
		if tt.vouchedBy == 0 && counter(checks) == c0 {
			t.Errorf("%s: read index answered without a leadership check", tt.name)
		}
	}

	resp, body := c.Do(http.MethodGet, url, nil, map[string]string{httpapi.HeaderForwardedBy: c.ID(f), httpapi.HeaderTerm: "x"})
	var e kv.ErrorResponse
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Error.Code != "bad_request" {
		t.Errorf("term %q: %d %s, want 400 bad_request", "x", resp.StatusCode, body)
	}
}

// A leadership check in a cluster of three asks one voter, the one whose
// answer completed the last check, and the other only when that one fails
// or is slow to answer; with one of them stopped, the leader's reads go on.
func TestLeaderCheckAsksOneVoterFirst(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l := c.Leader()
	others := nodesBut(c, l)
	num := func(i int, name string) int {
		t.Helper()
		v := metricValue(t, c, i, name)
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("n%d's %s: %v", i+1, name, err)
		}
		return n
	}
	const answered = `raftkv_http_requests_total{code="200",method="GET",route="/v1/internal/leader-check"}`
	asked := func() int { return num(others[0], answered) + num(others[1], answered) }
	put(t, c, l, "check", "v1")

	checks0, asked0 := num(l, "raftkv_leadership_checks_total"), asked()
	const reads = 20
	for i := range reads {
		if resp, body := get(t, c, l, "check", ""); resp.StatusCode != http.StatusOK || body != "v1" {
			t.Fatalf("read %d on the leader: %d %q", i, resp.StatusCode, body)
		}
	}
	checks := num(l, "raftkv_leadership_checks_total") - checks0
	if checks < reads {
		t.Fatalf("%d leadership checks for %d reads on the leader, one after another", checks, reads)
	}
	// A check whose first voter is slow asks the other too: a few, not
	// one per check.
	if got := asked() - asked0; got > checks+checks/2 {
		t.Errorf("%d leadership checks asked the voters %d times; want about one request a check", checks, got)
	}

	c.Stop(others[0])
	for i := range reads {
		if resp, body := get(t, c, l, "check", ""); resp.StatusCode != http.StatusOK || body != "v1" {
			t.Fatalf("read %d on the leader with %s stopped: %d %q", i, c.ID(others[0]), resp.StatusCode, body)
		}
	}
}
