package raftkv_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/chaos"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// member returns the member id of info, if listed.
func member(info kv.ClusterInfo, id string) (kv.NodeInfo, bool) {
	i := slices.IndexFunc(info.Nodes, func(n kv.NodeInfo) bool { return n.ID == id })
	if i < 0 {
		return kv.NodeInfo{}, false
	}
	return info.Nodes[i], true
}

// waitMember polls the leader's view until member id satisfies ok, and
// returns that view of it.
func waitMember(t *testing.T, c *testkit.Cluster, id string, timeout time.Duration, ok func(kv.NodeInfo, bool) error) kv.NodeInfo {
	t.Helper()
	var got kv.NodeInfo
	err := testkit.Eventually(timeout, func() error {
		info := clusterInfo(t, c, c.Leader())
		m, found := member(info, id)
		got = m
		return ok(m, found)
	})
	if err != nil {
		t.Fatalf("member %s: %v", id, err)
	}
	return got
}

func suffrage(want string) func(kv.NodeInfo, bool) error {
	return func(m kv.NodeInfo, found bool) error {
		if !found || m.Suffrage != want || m.APIAddr == "" {
			return fmt.Errorf("want a registered %s, have %+v (listed: %v)", want, m, found)
		}
		return nil
	}
}

// voterIDs are the ids of the voters in the leader's configuration, sorted.
func voterIDs(t *testing.T, c *testkit.Cluster) []string {
	t.Helper()
	var ids []string
	for _, n := range clusterInfo(t, c, c.Leader()).Nodes {
		if n.Suffrage == kv.Voter {
			ids = append(ids, n.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func newClient(t *testing.T, urls ...string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: urls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// clusterWithCutJoiner starts three founders whose raft traffic to the
// fourth node, n4 (started by the caller with AddNode), goes through a
// proxy, cut: n4 joins over HTTP but hears nothing from the leader until
// the proxy heals.
func clusterWithCutJoiner(t *testing.T) (*testkit.Cluster, *chaos.Proxy) {
	t.Helper()
	target := freeAddr(t) // n4's raft address
	proxy, err := chaos.NewProxy("founders", "n4", target, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	proxy.Set(chaos.LinkFault{Cut: true})
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(i int, cfg *raftkv.Config) {
		if i == 3 {
			cfg.RaftAddr = target
			return
		}
		cfg.RaftPeerAddrs = map[string]string{"n4": proxy.Addr()}
	}})
	// Cleanups run last in, first out: close the proxy before the nodes,
	// so raft's requests held in it fail at once instead of at their 10 s
	// timeout while the nodes shut down.
	t.Cleanup(proxy.Close)
	return c, proxy
}

// A node started empty with Join is added as a non-voter, catches up and is
// promoted to voter by the leader; the founders stay voters throughout.
func TestJoinAsNonvoterThenPromoted(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	for i := range 20 {
		put(t, c, c.Leader(), fmt.Sprintf("before/%d", i), "x")
	}
	i := c.AddNode()
	id := c.ID(i)
	waitMember(t, c, id, 20*time.Second, suffrage(kv.Nonvoter))
	waitMember(t, c, id, 20*time.Second, suffrage(kv.Voter))
	if got, want := voterIDs(t, c), []string{"n1", "n2", "n3", "n4"}; !slices.Equal(got, want) {
		t.Fatalf("voters %v, want %v", got, want)
	}
	waitValue(t, c, i, "before/19", "x")
	put(t, c, i, "through-new-voter", "y")
	waitValue(t, c, 0, "through-new-voter", "y")
	if err := c.Node(i).WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A joiner that the leader cannot reach over raft stays a non-voter (the
// leader shows its lag) and never counts toward the quorum: writes go on
// with the founders. Once the link heals it catches up and is promoted.
func TestPartitionedJoinerStaysNonvoter(t *testing.T) {
	c, proxy := clusterWithCutJoiner(t)
	i := c.AddNode()
	m := waitMember(t, c, "n4", 20*time.Second, func(m kv.NodeInfo, found bool) error {
		if err := suffrage(kv.Nonvoter)(m, found); err != nil {
			return err
		}
		if m.Lag == nil || *m.Lag == 0 {
			return fmt.Errorf("no lag shown: %+v", m)
		}
		return nil
	})
	t.Logf("cut-off non-voter %s: lag %d", m.ID, *m.Lag)
	// Writes commit on the founders alone, for many promotion checks.
	for k := range 30 {
		put(t, c, k%3, fmt.Sprintf("cut/%d", k), "v")
	}
	info := clusterInfo(t, c, c.Leader())
	if m, _ := member(info, "n4"); m.Suffrage != kv.Nonvoter || m.CaughtUp != 0 {
		t.Fatalf("cut-off joiner is %+v, want a non-voter never caught up", m)
	}
	proxy.Heal()
	waitMember(t, c, "n4", 30*time.Second, suffrage(kv.Voter))
	waitValue(t, c, i, "cut/29", "v")
}

// POST /v1/cluster/nodes/{id}/promote makes a non-voter a voter at once,
// through any node; the answer counts the voters and warns of an even
// number. An unknown id is 404; a voter is left as it is.
func TestPromoteByHand(t *testing.T) {
	c, _ := clusterWithCutJoiner(t) // n4 never catches up: only a hand promotes it
	c.AddNode()
	waitMember(t, c, "n4", 20*time.Second, suffrage(kv.Nonvoter))

	tests := []struct {
		id         string
		status     int
		code       string
		voters     int
		warns      bool
		wantVoters []string
	}{
		{id: "n9", status: http.StatusNotFound, code: "not_found", wantVoters: []string{"n1", "n2", "n3"}},
		{id: "n4", status: http.StatusOK, voters: 4, warns: true, wantVoters: []string{"n1", "n2", "n3", "n4"}},
		{id: "n4", status: http.StatusOK, voters: 4, warns: true, wantVoters: []string{"n1", "n2", "n3", "n4"}}, // already a voter
		{id: "n1", status: http.StatusOK, voters: 4, warns: true, wantVoters: []string{"n1", "n2", "n3", "n4"}},
	}
	for _, tc := range tests {
		resp, body := c.Do(http.MethodPost, c.URL(c.Follower())+"/v1/cluster/nodes/"+tc.id+"/promote", nil, nil)
		if resp.StatusCode != tc.status {
			t.Fatalf("promote %s: %d %s, want %d", tc.id, resp.StatusCode, body, tc.status)
		}
		if tc.status != http.StatusOK {
			var e kv.ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code {
				t.Fatalf("promote %s: %s, want code %s", tc.id, body, tc.code)
			}
		} else {
			var res kv.MemberChange
			if err := json.Unmarshal(body, &res); err != nil || res.Voters != tc.voters || (res.Warning != "") != tc.warns {
				t.Fatalf("promote %s: %s (%v), want %d voters, warning %v", tc.id, body, err, tc.voters, tc.warns)
			}
		}
		if got := voterIDs(t, c); !slices.Equal(got, tc.wantVoters) {
			t.Fatalf("after promote %s: voters %v, want %v", tc.id, got, tc.wantVoters)
		}
	}
	// Four voters, one unreachable: three are a quorum, writes go on.
	put(t, c, c.Follower(), "with-four", "v")
	// Removing the unreachable voter leaves three live ones: allowed.
	res, err := c.Node(c.Follower()).RemoveMember(context.Background(), "n4", kv.RemoveOptions{})
	if err != nil || res.Voters != 3 || res.Warning != "" {
		t.Fatalf("remove n4: %+v, %v", res, err)
	}
}

// The removal rules: a removal that leaves fewer live voters than a
// quorum of the voters left is refused (409 would_lose_quorum, nothing
// changed) unless forced; one that leaves an even number warns. Here n3
// advertises an API address where nothing listens (so the leader does not
// count it live) while its raft works, so a forced removal can commit.
func TestRemoveSafetyRules(t *testing.T) {
	dead := freeAddr(t) // nothing listens there
	var deadAPI atomic.Bool
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(i int, cfg *raftkv.Config) {
		if i == 2 && deadAPI.Load() {
			cfg.HTTPAdvertise = dead
		}
	}})
	if l := c.Leader(); c.ID(l) == "n3" {
		resp, body := c.Do(http.MethodPost, c.URL(l)+"/v1/cluster/transfer-leader?id=n1", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("transfer: %d %s", resp.StatusCode, body)
		}
		err := testkit.Eventually(10*time.Second, func() error {
			if id := c.ID(c.Leader()); id != "n1" {
				return fmt.Errorf("leader %s", id)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// n3 comes back advertising the dead API address; it registers it
	// through the leader.
	deadAPI.Store(true)
	c.Stop(2)
	c.Restart(2)
	waitMember(t, c, "n3", 20*time.Second, func(m kv.NodeInfo, found bool) error {
		if !found || m.APIAddr != dead {
			return fmt.Errorf("n3 is %+v, want its API at %s", m, dead)
		}
		return nil
	})
	l := c.Leader()
	if c.ID(l) == "n3" {
		t.Fatal("n3 took the lead")
	}
	victim := "n1" // the founder that is neither the leader nor n3
	if c.ID(l) == "n1" {
		victim = "n2"
	}
	tests := []struct {
		name, query string
		status      int
		code        string
		warns       bool
		wantVoters  []string
	}{
		{name: "unknown member", query: "", status: http.StatusNotFound, code: "not_found"},
		{name: "bad force", query: "?force=maybe", status: http.StatusBadRequest, code: "bad_request"},
		{name: "no live quorum left", query: "", status: http.StatusConflict, code: "would_lose_quorum"},
		{name: "forced", query: "?force=true", status: http.StatusOK, warns: true},
	}
	all := voterIDs(t, c)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := victim
			if tc.name == "unknown member" {
				id = "n9"
			}
			// Through the founder follower, which relays it to the leader
			// (n3 may not have heard from the leader since its restart).
			via := 0
			if victim == "n2" {
				via = 1
			}
			resp, body := c.Do(http.MethodDelete, c.URL(via)+"/v1/cluster/nodes/"+id+tc.query, nil, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("DELETE %s%s: %d %s, want %d", id, tc.query, resp.StatusCode, body, tc.status)
			}
			want := all
			if tc.status == http.StatusOK {
				want = slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == victim })
				var res kv.MemberChange
				if err := json.Unmarshal(body, &res); err != nil || res.Voters != 2 || (res.Warning != "") != tc.warns {
					t.Fatalf("DELETE %s: %s, want 2 voters and a warning", id, body)
				}
			} else {
				var e kv.ErrorResponse
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code {
					t.Fatalf("DELETE %s: %s, want code %s", id, body, tc.code)
				}
			}
			if got := voterIDs(t, c); !slices.Equal(got, want) {
				t.Fatalf("voters %v, want %v", got, want)
			}
		})
	}
}

// Removing the leader hands leadership over first; the next leader
// removes it, and writes go on.
func TestRemoveLeaderHandsOver(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l := c.Leader()
	old := c.ID(l)
	cl := newClient(t, c.URL(c.Follower()))
	res, err := cl.RemoveMember(context.Background(), old, kv.RemoveOptions{})
	if err != nil {
		t.Fatalf("remove the leader %s: %v", old, err)
	}
	if res.Voters != 2 || !strings.Contains(res.Warning, "even") {
		t.Fatalf("remove the leader: %+v, want 2 voters and the even-count warning", res)
	}
	c.Stop(l)
	nl := c.Leader()
	if c.ID(nl) == old {
		t.Fatalf("%s still leads", old)
	}
	if _, found := member(clusterInfo(t, c, nl), old); found {
		t.Fatalf("%s is still a member", old)
	}
	put(t, c, c.Follower(), "after-leader-removed", "v")
}

// Replacing a dead member: remove it (two voters left: a warning), start a
// new node with a new id and an empty directory; it joins, catches up and
// is promoted, and the cluster is three voters again with every write.
func TestReplaceDeadMember(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	put(t, c, c.Leader(), "before", "1")
	deadIdx := c.Follower()
	dead := c.ID(deadIdx)
	c.Stop(deadIdx)
	put(t, c, c.Leader(), "while-dead", "2")

	resp, body := c.Do(http.MethodDelete, c.URL(c.Leader())+"/v1/cluster/nodes/"+dead, nil, nil)
	var res kv.MemberChange
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &res) != nil || res.Voters != 2 || res.Warning == "" {
		t.Fatalf("remove dead %s: %d %s", dead, resp.StatusCode, body)
	}
	i := c.AddNode()
	waitMember(t, c, c.ID(i), 30*time.Second, suffrage(kv.Voter))
	if got := voterIDs(t, c); len(got) != 3 || slices.Contains(got, dead) || !slices.Contains(got, c.ID(i)) {
		t.Fatalf("voters %v", got)
	}
	waitValue(t, c, i, "before", "1")
	waitValue(t, c, i, "while-dead", "2")
	put(t, c, i, "after", "3")
}

// A voter that restarts on new HTTP and raft addresses (a container
// rescheduled) re-registers both through a member, since no leader reaches
// it at its old address, and stays a voter; the others reach it again.
func TestMovedVoterReRegisters(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	f := c.Follower()
	id := c.ID(f)
	old, _ := member(clusterInfo(t, c, c.Leader()), id)
	c.Stop(f)
	put(t, c, c.Leader(), "while-away", "x")
	c.RestartMoved(f)
	waitMember(t, c, id, 30*time.Second, func(m kv.NodeInfo, found bool) error {
		if found && m.Suffrage != kv.Voter {
			t.Fatalf("moved voter %s demoted: %+v", id, m)
		}
		if !found || m.RaftAddr == old.RaftAddr || m.APIAddr == old.APIAddr || m.RaftAddr != c.Node(f).RaftAddr() {
			return fmt.Errorf("not re-registered: %+v (was %+v)", m, old)
		}
		return nil
	})
	c.WaitReady()
	waitValue(t, c, f, "while-away", "x")
	put(t, c, f, "from-moved", "y")
	waitValue(t, c, c.Leader(), "from-moved", "y")
}

// Members that advertise host names ("localhost") for raft and HTTP keep
// the names in the configuration and the nodes table (resolved at each
// dial, never once), and the cluster forms and serves through them.
func TestAdvertisedHostNames(t *testing.T) {
	raftAddrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(i int, cfg *raftkv.Config) {
		cfg.RaftAddr = raftAddrs[i]
		_, port, _ := net.SplitHostPort(raftAddrs[i])
		cfg.RaftAdvertise = "localhost:" + port
		_, port, _ = net.SplitHostPort(cfg.HTTPListener.Addr().String())
		cfg.HTTPAdvertise = "localhost:" + port
	}})
	info := clusterInfo(t, c, c.Leader())
	for _, n := range info.Nodes {
		if !strings.HasPrefix(n.RaftAddr, "localhost:") || !strings.HasPrefix(n.APIAddr, "localhost:") || n.Suffrage != kv.Voter {
			t.Fatalf("member %+v: want localhost names", n)
		}
	}
	put(t, c, c.Follower(), "by-name", "v") // forwarded to the leader by name
	for i := range 3 {
		waitValue(t, c, i, "by-name", "v")
	}
	// A follower restarted reaches, and is reached, by name again.
	f := c.Follower()
	c.Stop(f)
	c.Restart(f)
	c.WaitReady()
	put(t, c, f, "after-restart", "w")
}

// A cluster grows from three voters to five and back to three (the leader
// among those removed) under a write load through the Go client: no call
// fails, and every acknowledged write is there at the end.
func TestGrowAndShrinkUnderWriteLoad(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	cl := newClient(t, c.URL(0), c.URL(1), c.URL(2))

	var (
		mu     sync.Mutex
		acked  = map[string]string{}
		failed []error
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("load/%d/%d", w, k), fmt.Sprintf("v%d", k)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				_, err := cl.Put(ctx, []byte(key), []byte(val))
				cancel()
				mu.Lock()
				if err != nil {
					failed = append(failed, fmt.Errorf("put %s: %w", key, err))
				} else {
					acked[key] = val
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	progress := func(n int) {
		t.Helper()
		want := count() + n
		if err := testkit.Eventually(60*time.Second, func() error {
			if got := count(); got < want {
				return fmt.Errorf("%d writes acknowledged, want %d", got, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	progress(50)

	// Grow: 3 -> 5.
	i4, i5 := c.AddNode(), c.AddNode()
	waitMember(t, c, c.ID(i4), 60*time.Second, suffrage(kv.Voter))
	waitMember(t, c, c.ID(i5), 60*time.Second, suffrage(kv.Voter))
	if got := voterIDs(t, c); len(got) != 5 {
		t.Fatalf("voters %v, want 5", got)
	}
	progress(50)

	// Shrink: 5 -> 3, the leader first, then a founding follower.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := c.Leader()
	res, err := cl.RemoveMember(ctx, c.ID(l), kv.RemoveOptions{})
	if err != nil || res.Voters != 4 || res.Warning == "" {
		t.Fatalf("remove leader %s: %+v, %v", c.ID(l), res, err)
	}
	c.Stop(l)
	progress(30)
	f := -1
	for i := range 3 {
		if i != l {
			f = i
			break
		}
	}
	res, err = cl.RemoveMember(ctx, c.ID(f), kv.RemoveOptions{})
	if err != nil || res.Voters != 3 || res.Warning != "" {
		t.Fatalf("remove %s: %+v, %v", c.ID(f), res, err)
	}
	c.Stop(f)
	progress(50)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(failed) > 0 {
		t.Fatalf("%d writes failed, first: %v", len(failed), errors.Join(failed[:min(5, len(failed))]...))
	}
	if got := voterIDs(t, c); len(got) != 3 {
		t.Fatalf("voters %v, want 3", got)
	}
	for key, val := range acked {
		rec, err := cl.Get(ctx, []byte(key), kv.ReadOptions{})
		if err != nil || string(rec.Value) != val {
			t.Fatalf("acknowledged %s=%s: read %q, %v", key, val, rec.Value, err)
		}
	}
	t.Logf("%d acknowledged writes, all read back", len(acked))
}
