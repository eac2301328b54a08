package raftkv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

const testRootToken = "root-token-for-tests-0123456789"

// newACLCluster starts a three-node cluster with ACLs on, every node given
// the bootstrap token, and waits until every node has applied the
// bootstrap (the root token is then a token of the replicated state).
func newACLCluster(t *testing.T, opts testkit.Options) *testkit.Cluster {
	t.Helper()
	configure := opts.Configure
	opts.Configure = func(i int, cfg *raftkv.Config) {
		cfg.ACL = &raftkv.ACLConfig{BootstrapToken: testRootToken}
		if configure != nil {
			configure(i, cfg)
		}
	}
	c := testkit.NewCluster(t, 3, opts)
	err := testkit.Eventually(20*time.Second, func() error {
		for i := range c.Size() {
			if toks := c.Node(i).Tokens(); len(toks) == 0 {
				return fmt.Errorf("node %d has not applied the ACL bootstrap", i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createToken creates a token through node i's HTTP API with the root
// token and returns its secret and id.
func createToken(t *testing.T, c *testkit.Cluster, i int, rules kv.ACLRules) (string, uint64) {
	t.Helper()
	body, _ := json.Marshal(kv.ACLTokenRequest{Description: "test", Rules: rules})
	resp, b := c.Do(http.MethodPost, c.URL(i)+"/v1/acl/tokens", strings.NewReader(string(body)), bearer(testRootToken))
	var tok kv.ACLToken
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &tok) != nil || tok.Secret == "" || tok.ID == 0 {
		t.Fatalf("create token: %d %s", resp.StatusCode, b)
	}
	return tok.Secret, tok.ID
}

func bearer(secret string) map[string]string {
	if secret == "" {
		return nil
	}
	return map[string]string{"Authorization": "Bearer " + secret}
}

// TestACLRights is the rights table: each operation through HTTP on a real
// cluster, with no token, a wrong one, too few rights and exactly enough,
// on the leader and on followers; a refused write changes nothing; a
// revoked token stops working on every node within a second.
func TestACLRights(t *testing.T) {
	c := newACLCluster(t, testkit.Options{})
	l, f := c.Leader(), c.Follower()
	root := testRootToken
	app, appID := createToken(t, c, f, kv.ACLRules{Read: []string{"app/"}, Write: []string{"app/config/"}})
	admin, _ := createToken(t, c, l, kv.ACLRules{Admin: true})
	none, _ := createToken(t, c, l, kv.ACLRules{})
	locker, _ := createToken(t, c, f, kv.ACLRules{Write: []string{kv.LockPrefix + "job/"}, Read: []string{kv.ElectionPrefix + "e/"}})

	// Seed: app/x, and a key attached to a lease for the revoke rows.
	for _, k := range []string{"app/x", "other/x"} {
		if resp, b := c.Do(http.MethodPut, c.URL(l)+"/v1/kv/"+k, strings.NewReader("seed"), bearer(root)); resp.StatusCode != http.StatusOK {
			t.Fatalf("seed %s: %d %s", k, resp.StatusCode, b)
		}
	}
	grant := func(tok, key string) string {
		t.Helper()
		resp, b := c.Do(http.MethodPost, c.URL(f)+"/v1/lease", strings.NewReader(`{"ttl":"60s"}`), bearer(tok))
		var out struct {
			ID string `json:"id"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.ID == "" {
			t.Fatalf("grant: %d %s", resp.StatusCode, b)
		}
		resp, b = c.Do(http.MethodPut, c.URL(f)+"/v1/kv/"+key+"?lease="+out.ID, strings.NewReader("v"), bearer(root))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("leased put: %d %s", resp.StatusCode, b)
		}
		return out.ID
	}
	lease1, lease2 := grant(none, "app/config/leased1"), grant(none, "app/config/leased2")

	txn := func(ops string) string {
		return `{"compare":[{"key":"app/x","target":"exists","op":"=","value":true}],"success":[` + ops + `]}`
	}
	tests := []struct {
		name, method, path, body, token string
		node                            int
		status                          int
		code                            string
	}{
		{"get, no token", "GET", "/v1/kv/app/x", "", "", f, 401, "unauthenticated"},
		{"get, unknown token", "GET", "/v1/kv/app/x", "", "no-such-token-0123456789", f, 401, "unauthenticated"},
		{"get, malformed header", "GET", "/v1/kv/app/x", "", "\x00basic", l, 401, "unauthenticated"},
		{"get, read right", "GET", "/v1/kv/app/x", "", app, f, 200, ""},
		{"get, no right on the key", "GET", "/v1/kv/other/x", "", app, f, 403, "permission_denied"},
		{"get, token without rules", "GET", "/v1/kv/app/x", "", none, l, 403, "permission_denied"},
		{"put, read only", "PUT", "/v1/kv/app/x", "changed", app, f, 403, "permission_denied"},
		{"put, write right (follower)", "PUT", "/v1/kv/app/config/a", "v", app, f, 200, ""},
		{"put, write right (leader)", "PUT", "/v1/kv/app/config/b", "v", app, l, 200, ""},
		{"fenced put, no read on the lock", "PUT", "/v1/kv/app/config/c?lock=job&token=1", "v", app, l, 403, "permission_denied"},
		{"list, covered prefix", "GET", "/v1/kv/app/?prefix", "", app, f, 200, ""},
		{"list, every key", "GET", "/v1/kv/?prefix", "", app, f, 403, "permission_denied"},
		{"list, a wider prefix", "GET", "/v1/kv/ap?prefix", "", app, l, 403, "permission_denied"},
		{"prefix delete, write on a part only", "DELETE", "/v1/kv/app/?prefix", "", app, f, 403, "permission_denied"},
		{"prefix delete, covered", "DELETE", "/v1/kv/app/config/zz/?prefix", "", app, f, 200, ""},
		{"delete, read only", "DELETE", "/v1/kv/app/x", "", app, l, 403, "permission_denied"},
		{"txn, compare read and put write", "POST", "/v1/txn", txn(`{"op":"put","key":"app/config/t","value":"v"}`), app, f, 200, ""},
		{"txn, put without write", "POST", "/v1/txn", txn(`{"op":"put","key":"other/t","value":"v"}`), app, f, 403, "permission_denied"},
		{"txn, get without read", "POST", "/v1/txn", txn(`{"op":"get","key":"other/x"}`), app, l, 403, "permission_denied"},
		{"txn, delete_prefix wider than write", "POST", "/v1/txn", txn(`{"op":"delete_prefix","key":"app/"}`), app, l, 403, "permission_denied"},
		{"watch, no read", "GET", "/v1/watch/other/?prefix", "", app, f, 403, "permission_denied"},
		{"lease grant, any token", "POST", "/v1/lease", `{"ttl":"30s"}`, none, f, 200, ""},
		{"lease revoke, no write on its key", "DELETE", "/v1/lease/" + lease1, "", none, f, 403, "permission_denied"},
		{"lease revoke, write on its key", "DELETE", "/v1/lease/" + lease2, "", app, l, 200, ""},
		{"lock, write on its queue", "POST", "/v1/lock/job", `{"ttl":"10s"}`, locker, f, 200, ""},
		{"lock, no right", "POST", "/v1/lock/job", `{"ttl":"10s"}`, app, f, 403, "permission_denied"},
		{"election leader, read on its queue", "GET", "/v1/election/e", "", locker, l, 404, "no_election_leader"},
		{"election leader, no right", "GET", "/v1/election/e", "", app, l, 403, "permission_denied"},
		{"campaign, read only", "POST", "/v1/election/e", `{"ttl":"10s","value":"x"}`, locker, l, 403, "permission_denied"},
		{"cluster, any token", "GET", "/v1/cluster", "", none, f, 200, ""},
		{"cluster, no token", "GET", "/v1/cluster", "", "", f, 401, "unauthenticated"},
		{"create token, no admin", "POST", "/v1/acl/tokens", `{"rules":{"read":["app/"]}}`, app, f, 403, "permission_denied"},
		{"create token, admin", "POST", "/v1/acl/tokens", `{"rules":{"read":["app/"]}}`, admin, f, 201, ""},
		{"create token, bad rules", "POST", "/v1/acl/tokens", `{"rules":{"read":"app/"}}`, admin, f, 400, "bad_request"},
		{"list tokens, no admin", "GET", "/v1/acl/tokens", "", app, l, 403, "permission_denied"},
		{"revoke token, no admin", "DELETE", fmt.Sprintf("/v1/acl/tokens/%d", appID), "", app, l, 403, "permission_denied"},
		{"revoke unknown token", "DELETE", "/v1/acl/tokens/999", "", admin, l, 404, "not_found"},
		{"snapshot, no admin", "GET", "/v1/snapshot", "", app, f, 403, "permission_denied"},
		{"snapshot, admin", "GET", "/v1/snapshot", "", admin, f, 200, ""},
		{"digest, no admin", "GET", "/v1/debug/hash", "", none, l, 403, "permission_denied"},
		{"digest, admin", "GET", "/v1/debug/hash", "", admin, l, 200, ""},
		{"join, no admin", "POST", "/v1/cluster/nodes", `{"id":"n9","raft_addr":"127.0.0.1:1"}`, app, f, 403, "permission_denied"},
		{"remove member, no admin", "DELETE", "/v1/cluster/nodes/n9", "", app, l, 403, "permission_denied"},
		{"transfer leadership, no admin", "POST", "/v1/cluster/transfer-leader", "", app, f, 403, "permission_denied"},
		{"read index, not a member (root token)", "GET", httpapi.ReadIndexPath, "", root, l, 403, "permission_denied"},
		{"forwarded batch, not a member", "POST", httpapi.ApplyPath, "x", root, l, 403, "permission_denied"},
		{"livez, open", "GET", "/livez", "", "", f, 200, ""},
		{"readyz, open", "GET", "/readyz", "", "", f, 200, ""},
		{"metrics, open", "GET", "/metrics", "", "", l, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h map[string]string
			switch {
			case strings.HasPrefix(tt.token, "\x00"):
				h = map[string]string{"Authorization": strings.TrimPrefix(tt.token, "\x00") + " abc"}
			default:
				h = bearer(tt.token)
			}
			resp, b := c.Do(tt.method, c.URL(tt.node)+tt.path, strings.NewReader(tt.body), h)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, tt.status)
			}
			if tt.code != "" {
				var e kv.ErrorResponse
				if json.Unmarshal(b, &e) != nil || e.Error.Code != tt.code {
					t.Fatalf("%s %s: body %s, want code %s", tt.method, tt.path, b, tt.code)
				}
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			if tt.status == 403 && tt.code == "permission_denied" && strings.HasPrefix(tt.path, "/v1/kv/") && !strings.Contains(string(b), "lacks") {
				t.Errorf("403 does not name the missing right: %s", b)
			}
		})
	}

	// Nothing refused was written.
	for _, k := range []string{"app/x", "other/t", "app/config/c"} {
		resp, b := c.Do(http.MethodGet, c.URL(l)+"/v1/kv/"+k, nil, bearer(root))
		switch {
		case k == "app/x" && (resp.StatusCode != 200 || string(b) != "seed"):
			t.Errorf("%s after refused writes: %d %s", k, resp.StatusCode, b)
		case k != "app/x" && resp.StatusCode != 404:
			t.Errorf("%s was written by a refused request: %d %s", k, resp.StatusCode, b)
		}
	}
	if resp, b := c.Do(http.MethodGet, c.URL(l)+"/v1/lease/"+lease1, nil, bearer(root)); resp.StatusCode != 200 || !strings.Contains(string(b), "leased1") {
		t.Errorf("lease %s after a refused revoke: %d %s", lease1, resp.StatusCode, b)
	}
	// A token sees only the attached keys it may read.
	if resp, b := c.Do(http.MethodGet, c.URL(f)+"/v1/lease/"+lease1, nil, bearer(none)); resp.StatusCode != 200 || strings.Contains(string(b), "leased1") {
		t.Errorf("lease %s read with a token without rights: %d %s", lease1, resp.StatusCode, b)
	}

	// Revoke the app token through a follower: within a second of the
	// answer, no node takes it.
	resp, b := c.Do(http.MethodDelete, fmt.Sprintf("%s/v1/acl/tokens/%d", c.URL(f), appID), nil, bearer(admin))
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d %s", resp.StatusCode, b)
	}
	revoked := time.Now()
	for i := range c.Size() {
		err := testkit.Eventually(time.Until(revoked.Add(time.Second)), func() error {
			resp, b := c.Do(http.MethodGet, c.URL(i)+"/v1/kv/app/x", nil, bearer(app))
			if resp.StatusCode != http.StatusUnauthorized {
				return fmt.Errorf("node %d still answers the revoked token: %d %s", i, resp.StatusCode, b)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The list shows it gone, and never a secret.
	resp, b = c.Do(http.MethodGet, c.URL(l)+"/v1/acl/tokens", nil, bearer(admin))
	var list kv.ACLTokenList
	if resp.StatusCode != 200 || json.Unmarshal(b, &list) != nil || strings.Contains(string(b), "secret") {
		t.Fatalf("list: %d %s", resp.StatusCode, b)
	}
	for _, tok := range list.Tokens {
		if tok.ID == appID {
			t.Fatalf("revoked token %d still listed", appID)
		}
	}
}

// With ACLs on and --acl-metrics, the probes and /metrics ask for a token
// too; without the bootstrap token, a node trusts only the replicated
// tokens; and a cluster with ACLs and TLS forwards between members on
// their certificates.
func TestACLMetricsAndTLS(t *testing.T) {
	c := newACLCluster(t, testkit.Options{TLS: true, Configure: func(i int, cfg *raftkv.Config) {
		cfg.ACL.Metrics = true
	}})
	f := c.Follower()
	for _, p := range []string{"/metrics", "/livez", "/readyz"} {
		if resp, b := c.Do(http.MethodGet, c.URL(f)+p, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d %s", p, resp.StatusCode, b)
		}
	}
	none, _ := createToken(t, c, f, kv.ACLRules{})
	if resp, b := c.Do(http.MethodGet, c.URL(f)+"/metrics", nil, bearer(none)); resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics with a token: %d %s", resp.StatusCode, b)
	}
	// A write through a follower is forwarded over mutual TLS.
	w, _ := createToken(t, c, f, kv.ACLRules{Write: []string{"w/"}})
	if resp, b := c.Do(http.MethodPut, c.URL(f)+"/v1/kv/w/1", strings.NewReader("v"), bearer(w)); resp.StatusCode != http.StatusOK {
		t.Fatalf("put through a follower: %d %s", resp.StatusCode, b)
	}
	// The Go API is not behind ACLs: an embedder holds the node.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rec, err := c.Node(f).Get(ctx, []byte("w/1"), kv.ReadOptions{}); err != nil || string(rec.Value) != "v" {
		t.Fatalf("Go API read: %+v %v", rec, err)
	}
}

// A member that joins later is given an admin token, not the bootstrap
// token: it surveys and joins with it, then talks to the others as a
// member (forwarded writes) once it has applied the bootstrap.
func TestACLJoinWithToken(t *testing.T) {
	var joinToken string
	joiner := -1
	c := newACLCluster(t, testkit.Options{Configure: func(i int, cfg *raftkv.Config) {
		if i == joiner {
			cfg.ACL = &raftkv.ACLConfig{Token: joinToken}
		}
	}})
	l := c.Leader()
	admin, _ := createToken(t, c, l, kv.ACLRules{Admin: true})
	victim := c.Follower()
	id := c.Node(victim).ID()
	if resp, b := c.Do(http.MethodDelete, c.URL(l)+"/v1/cluster/nodes/"+id, nil, bearer(admin)); resp.StatusCode != http.StatusOK {
		t.Fatalf("remove %s: %d %s", id, resp.StatusCode, b)
	}
	c.Stop(victim)
	if resp, b := c.Do(http.MethodPut, c.URL(l)+"/v1/kv/while-removed", strings.NewReader("x"), bearer(testRootToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("put: %d %s", resp.StatusCode, b)
	}
	if err := os.RemoveAll(c.Dir(victim)); err != nil {
		t.Fatal(err)
	}
	joinToken, joiner = admin, victim
	c.Restart(victim)
	c.WaitReady()
	w, _ := createToken(t, c, l, kv.ACLRules{Write: []string{""}})
	err := testkit.Eventually(20*time.Second, func() error {
		resp, b := c.Do(http.MethodGet, c.URL(victim)+"/v1/kv/while-removed", nil, bearer(w))
		if resp.StatusCode != http.StatusOK || string(b) != "x" {
			return fmt.Errorf("read on the rejoined node: %d %s", resp.StatusCode, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A write through it is forwarded with the members' secret.
	if resp, b := c.Do(http.MethodPut, c.URL(victim)+"/v1/kv/through-new", strings.NewReader("y"), bearer(w)); resp.StatusCode != http.StatusOK {
		t.Fatalf("put through the rejoined node: %d %s", resp.StatusCode, b)
	}
}

// A lost root token: every member restarted, one at a time, with a new
// bootstrap token and the reset flag; whichever leads commits the new
// token as a root token, once.
func TestACLBootstrapReset(t *testing.T) {
	const newRoot = "the-new-root-token-0123456789"
	reset := false
	c := newACLCluster(t, testkit.Options{Configure: func(i int, cfg *raftkv.Config) {
		if reset {
			cfg.ACL = &raftkv.ACLConfig{BootstrapToken: newRoot, BootstrapReset: true}
		}
	}})
	l := c.Leader()
	if resp, b := c.Do(http.MethodDelete, c.URL(l)+"/v1/acl/tokens/1", nil, bearer(testRootToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke root: %d %s", resp.StatusCode, b)
	}
	reset = true
	for i := range c.Size() {
		c.Stop(i)
		c.Restart(i)
		c.WaitReady()
	}
	err := testkit.Eventually(20*time.Second, func() error {
		for i := range c.Size() {
			resp, b := c.Do(http.MethodGet, c.URL(i)+"/v1/acl/tokens", nil, bearer(newRoot))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("node %d: %d %s", i, resp.StatusCode, b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp, b := c.Do(http.MethodGet, c.URL(l)+"/v1/acl/tokens", nil, bearer(testRootToken)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the revoked root after the reset: %d %s", resp.StatusCode, b)
	}
	// Exactly one new root token, whatever the number of restarts.
	var roots int
	for _, tok := range c.Node(l).Tokens() {
		if tok.Rules.Admin {
			roots++
		}
	}
	if roots != 1 {
		t.Fatalf("%d admin tokens after the reset, want 1", roots)
	}
}
