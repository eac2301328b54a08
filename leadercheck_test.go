package raftkv_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// A leadership check counts an answer only from the voter it asked. The
// leader reaches a voter at the API address the replicated nodes table
// holds for it; once that address belongs to another process (the member
// restarted elsewhere, another took its old port), whoever answers there
// must not be counted as that voter: one process counted twice, or the
// leader counting itself, makes a quorum that does not exist.
func TestLeaderCheckCountsOnlyTheVoterAsked(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l := c.Leader()
	var others []int
	for i := range c.Size() {
		if i != l {
			others = append(others, i)
		}
	}
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
