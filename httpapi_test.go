package raftkv_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// The bad-input table: every malformed request gets its 4xx, a JSON error
// with a stable code, and changes nothing.
func TestBadInput(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{MaxValueSize: 1024})
	l := c.Leader()
	put(t, c, l, "existing", "v")
	longKey := strings.Repeat("k", kv.MaxKeySize+1)
	tests := []struct {
		name, method, path string
		body               string
		header             map[string]string
		status             int
		code               string
	}{
		{"empty key put", "PUT", "/v1/kv/", "x", nil, 400, "invalid_key"},
		{"empty key get", "GET", "/v1/kv/", "", nil, 400, "invalid_key"},
		{"empty key delete", "DELETE", "/v1/kv/", "", nil, 400, "invalid_key"},
		{"key over 4 KiB", "PUT", "/v1/kv/" + longKey, "x", nil, 400, "invalid_key"},
		{"key over 4 KiB get", "GET", "/v1/kv/" + longKey, "", nil, 400, "invalid_key"},
		{"body over the limit", "PUT", "/v1/kv/big", strings.Repeat("x", 1025), nil, 413, "too_large"},
		{"unknown consistency", "GET", "/v1/kv/existing?consistency=eventual", "", nil, 400, "bad_request"},
		{"unknown parameter", "GET", "/v1/kv/existing?colour=blue", "", nil, 400, "bad_request"},
		{"unknown put parameter", "PUT", "/v1/kv/existing?ttl=banana", "x", nil, 400, "bad_request"},
		{"repeated parameter", "GET", "/v1/kv/existing?consistency=stale&consistency=stale", "", nil, 400, "bad_request"},
		{"bad limit", "GET", "/v1/kv/?prefix&limit=abc", "", nil, 400, "bad_request"},
		{"zero limit", "GET", "/v1/kv/?prefix&limit=0", "", nil, 400, "bad_request"},
		{"huge limit", "GET", "/v1/kv/?prefix&limit=100000000", "", nil, 400, "bad_request"},
		{"limit without prefix", "GET", "/v1/kv/existing?limit=5", "", nil, 400, "bad_request"},
		{"bad prefix flag", "GET", "/v1/kv/?prefix=maybe", "", nil, 400, "bad_request"},
		{"bad format", "GET", "/v1/kv/existing?format=xml", "", nil, 400, "bad_request"},
		{"bad max_stale", "GET", "/v1/kv/existing?consistency=stale&max_stale=soon", "", nil, 400, "bad_request"},
		{"bad If-Match", "PUT", "/v1/kv/existing", "x", map[string]string{"If-Match": "7"}, 400, "bad_request"},
		{"bad If-None-Match", "PUT", "/v1/kv/existing", "x", map[string]string{"If-None-Match": `"3"`}, 400, "bad_request"},
		{"wrong method on kv", "POST", "/v1/kv/existing", "x", nil, 405, "method_not_allowed"},
		{"wrong method on cluster", "DELETE", "/v1/cluster", "", nil, 405, "method_not_allowed"},
		{"unknown route", "GET", "/v2/everything", "", nil, 404, "not_found"},
		{"double slash", "GET", "//", "", nil, 404, "not_found"},
		{"missing key", "GET", "/v1/kv/missing", "", nil, 404, "not_found"},
		{"join with bad json", "POST", "/v1/cluster/nodes", "{", nil, 400, "bad_request"},
		{"join with unknown field", "POST", "/v1/cluster/nodes", `{"id":"x","raft_addr":"127.0.0.1:1","colour":1}`, nil, 400, "bad_request"},
		{"join without id", "POST", "/v1/cluster/nodes", `{"raft_addr":"127.0.0.1:1"}`, nil, 400, "bad_request"},
		{"precondition on missing key", "PUT", "/v1/kv/nope", "x", map[string]string{"If-Match": `"5"`}, 412, "precondition_failed"},
	}
	for _, tt := range tests {
		for _, node := range []int{l, c.Follower()} {
			t.Run(fmt.Sprintf("%s/node%d", tt.name, node), func(t *testing.T) {
				resp, body := c.Do(tt.method, c.URL(node)+tt.path, strings.NewReader(tt.body), tt.header)
				if resp.StatusCode != tt.status {
					t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
				}
				var e kv.ErrorResponse
				if err := json.Unmarshal(body, &e); err != nil {
					t.Fatalf("body %q is not a JSON error: %v", body, err)
				}
				if e.Error.Code != tt.code || e.Error.Message == "" {
					t.Fatalf("error %+v, want code %q with a message", e.Error, tt.code)
				}
				if resp.Header.Get("X-Raft-Node") == "" || resp.Header.Get("X-Raft-Index") == "" {
					t.Errorf("missing X-Raft-Node / X-Raft-Index on an error: %v", resp.Header)
				}
				if tt.status == 405 && resp.Header.Get("Allow") == "" {
					t.Errorf("405 without Allow")
				}
			})
		}
	}
	// Nothing was written by any of them.
	resp, body := c.Do("GET", c.URL(l)+"/v1/kv/?prefix", nil, nil)
	var list kv.ListResponse
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if len(list.Items) != 1 || list.Items[0].Key != "existing" || *list.Items[0].Value != "v" {
		t.Fatalf("store changed by bad input: %s", body)
	}
}

func TestOversizedBodyRefusedBeforeReading(t *testing.T) {
	c := testkit.NewCluster(t, 1, testkit.Options{MaxValueSize: 1024})
	// Announce a 1 GiB body and send none of it: the server must answer
	// from the headers alone, without waiting for (or buffering) the body.
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.URL(0), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "PUT /v1/kv/big HTTP/1.1\r\nHost: raftkv\r\nContent-Length: %d\r\n\r\n", 1<<30)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	var e kv.ErrorResponse
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error.Code != "too_large" {
		t.Fatalf("error body %+v (%v)", e, err)
	}
	if r, _ := get(t, c, 0, "big", ""); r.StatusCode != http.StatusNotFound {
		t.Fatalf("refused put was written: GET big = %d", r.StatusCode)
	}
}

func TestNoLeaderAnswers503(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	survivor := c.Follower()
	for i := range c.Size() {
		if i != survivor {
			c.Stop(i)
		}
	}
	// The lone survivor cannot elect itself: no leader.
	err := testkit.Eventually(10*time.Second, func() error {
		resp, body := c.Do(http.MethodPut, c.URL(survivor)+"/v1/kv/k", strings.NewReader("v"), nil)
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("status %d %s", resp.StatusCode, body)
		}
		var e kv.ErrorResponse
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != "no_leader" {
			return fmt.Errorf("body %s", body)
		}
		if resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("no Retry-After")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Linearizable reads refuse too; stale reads are still served.
	resp, body := c.Do(http.MethodGet, c.URL(survivor)+"/v1/kv/k", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("linearizable read without leader: %d %s", resp.StatusCode, body)
	}
	resp, _ = c.Do(http.MethodGet, c.URL(survivor)+"/v1/kv/k?consistency=stale", nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("stale read without leader: %d", resp.StatusCode)
	}
	resp, _ = c.Do(http.MethodGet, c.URL(survivor)+"/readyz", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without leader: %d", resp.StatusCode)
	}
	resp, _ = c.Do(http.MethodGet, c.URL(survivor)+"/livez", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/livez: %d", resp.StatusCode)
	}
}
