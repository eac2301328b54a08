package raftkv_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

func clusterInfo(t *testing.T, c *testkit.Cluster, i int) kv.ClusterInfo {
	t.Helper()
	resp, body := c.Do(http.MethodGet, c.URL(i)+"/v1/cluster", nil, nil)
	var info kv.ClusterInfo
	if err := json.Unmarshal(body, &info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("cluster on node %d: %d %s", i, resp.StatusCode, body)
	}
	return info
}

func TestTransferLeadershipThroughFollower(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	target := clusterInfo(t, c, f).ID
	// Sent to the follower, forwarded to the leader, which hands over.
	resp, body := c.Do(http.MethodPost, c.URL(f)+"/v1/cluster/transfer-leader?id="+target, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("transfer: %d %s", resp.StatusCode, body)
	}
	err := testkit.Eventually(10*time.Second, func() error {
		if info := clusterInfo(t, c, l); info.LeaderID != target {
			return fmt.Errorf("leader is %q, want %s", info.LeaderID, target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitReady()
	put(t, c, l, "after-transfer", "ok")
}

func TestRemoveNodeAndRejoinEmpty(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	victim := c.Follower()
	id := clusterInfo(t, c, victim).ID
	resp, body := c.Do(http.MethodDelete, c.URL(c.Leader())+"/v1/cluster/nodes/"+id, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("remove %s: %d %s", id, resp.StatusCode, body)
	}
	c.Stop(victim)
	l := c.Leader()
	if n := len(clusterInfo(t, c, l).Nodes); n != 2 {
		t.Fatalf("%d members after removal, want 2", n)
	}
	put(t, c, l, "while-removed", "x")

	// A removed node comes back with an empty directory and joins again.
	if err := os.RemoveAll(c.Dir(victim)); err != nil {
		t.Fatal(err)
	}
	c.Restart(victim)
	c.WaitReady()
	waitValue(t, c, victim, "while-removed", "x")
	err := testkit.Eventually(10*time.Second, func() error {
		info := clusterInfo(t, c, c.Leader())
		if len(info.Nodes) != 3 {
			return fmt.Errorf("members %+v", info.Nodes)
		}
		for _, n := range info.Nodes {
			if n.APIAddr == "" || n.Suffrage != "voter" {
				return fmt.Errorf("member %+v", n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
