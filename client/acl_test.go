package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The token calls' wire form: paths, bodies, the bearer credential of
// Config.Token on every request, no idempotency key on the writes.
func TestTokenWire(t *testing.T) {
	var auth, idem atomic.Value
	ws := newWireServer(t, func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		idem.Store(r.Header.Get("Idempotency-Key"))
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/acl/tokens":
			writeJSON(w, http.StatusCreated, kv.ACLToken{ID: 4, Description: "app", Rules: kv.ACLRules{Read: []string{"app/"}}, CreateIndex: 20, Secret: "s3cret-of-the-new-token"})
		case "GET /v1/acl/tokens":
			writeJSON(w, http.StatusOK, kv.ACLTokenList{Tokens: []kv.ACLToken{
				{ID: 1, Description: "root", Rules: kv.RootRules(), CreateIndex: 3},
				{ID: 4, Description: "app", Rules: kv.ACLRules{Read: []string{"app/"}}, CreateIndex: 20},
			}})
		case "DELETE /v1/acl/tokens/4":
			writeJSON(w, http.StatusOK, map[string]uint64{"id": 4, "index": 21})
		default:
			writeJSON(w, http.StatusNotFound, kv.ErrorResponse{Error: kv.ErrorBody{Code: "not_found", Message: "not found: token 5"}})
		}
	})
	c := newClient(t, Config{Endpoints: []string{ws.srv.URL}, Token: "root-secret-0123456789"})
	ctx := context.Background()
	checkAuth := func(call string) {
		t.Helper()
		if got := auth.Load(); got != "Bearer root-secret-0123456789" {
			t.Errorf("%s: Authorization %q", call, got)
		}
		if got := idem.Load(); got != "" {
			t.Errorf("%s: Idempotency-Key %q, want none", call, got)
		}
	}

	req := kv.ACLTokenRequest{Description: "app", Rules: kv.ACLRules{Read: []string{"app/"}}}
	tok, err := c.CreateToken(ctx, req)
	if err != nil || tok.ID != 4 || tok.Secret != "s3cret-of-the-new-token" || tok.CreateIndex != 20 {
		t.Fatalf("CreateToken = %+v, %v", tok, err)
	}
	checkAuth("CreateToken")
	var sent kv.ACLTokenRequest
	if got := ws.last(); got.contentType != "application/json" || json.Unmarshal([]byte(got.body), &sent) != nil ||
		sent.Description != "app" || len(sent.Rules.Read) != 1 || sent.Rules.Read[0] != "app/" || sent.Rules.Admin {
		t.Errorf("CreateToken sent %+v", got)
	}

	toks, err := c.Tokens(ctx)
	if err != nil || len(toks) != 2 || toks[0].ID != 1 || !toks[0].Rules.Admin || toks[1].Rules.Read[0] != "app/" {
		t.Fatalf("Tokens = %+v, %v", toks, err)
	}
	checkAuth("Tokens")
	if got := ws.last().query; got != "" {
		t.Errorf("Tokens sent the query %q, want none", got)
	}

	index, err := c.RevokeToken(ctx, 4)
	if err != nil || index != 21 {
		t.Fatalf("RevokeToken = %d, %v", index, err)
	}
	checkAuth("RevokeToken")
	if _, err := c.RevokeToken(ctx, 5); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("RevokeToken of an unknown id = %v, want not found", err)
	}

	// Refused before a request is sent.
	n := ws.count()
	if _, err := c.RevokeToken(ctx, 0); !errors.Is(err, kv.ErrBadRequest) {
		t.Errorf("RevokeToken(0) = %v, want bad request", err)
	}
	if _, err := c.CreateToken(ctx, kv.ACLTokenRequest{Rules: kv.ACLRules{Read: []string{"\xff"}}}); !errors.Is(err, kv.ErrBadRequest) {
		t.Errorf("CreateToken of an invalid prefix = %v, want bad request", err)
	}
	if ws.count() != n {
		t.Errorf("%d requests sent for calls refused by the client", ws.count()-n)
	}
}

// Each token call is resent as its class says: a list after any failure,
// a create or a revoke only when certainly not applied; a 401 or 403 is
// the answer, returned at once and matched by errors.Is.
func TestTokenCallsRetryAndRefusals(t *testing.T) {
	calls := map[string]func(c *Client) error{
		"create": func(c *Client) error {
			_, err := c.CreateToken(context.Background(), kv.ACLTokenRequest{Rules: kv.ACLRules{Admin: true}})
			return err
		},
		"list": func(c *Client) error {
			_, err := c.Tokens(context.Background())
			return err
		},
		"revoke": func(c *Client) error {
			_, err := c.RevokeToken(context.Background(), 4)
			return err
		},
	}
	type refusal struct {
		status int
		code   string
	}
	var (
		internal     = refusal{http.StatusInternalServerError, "internal"}
		noLeader     = refusal{http.StatusServiceUnavailable, "no_leader"}
		unauthorized = refusal{http.StatusUnauthorized, "unauthenticated"}
		forbidden    = refusal{http.StatusForbidden, "permission_denied"}
	)
	tests := []struct {
		call     string
		first    refusal // the first attempt's answer; then 2xx
		requests int
		want     error // nil: the call succeeds
	}{
		{"create", internal, 1, kv.ErrOutcomeUnknown},
		{"create", noLeader, 2, nil},
		{"create", unauthorized, 1, kv.ErrUnauthenticated},
		{"create", forbidden, 1, kv.ErrPermissionDenied},
		{"list", internal, 2, nil},
		{"list", noLeader, 2, nil},
		{"list", unauthorized, 1, kv.ErrUnauthenticated},
		{"list", forbidden, 1, kv.ErrPermissionDenied},
		{"revoke", internal, 1, kv.ErrOutcomeUnknown},
		{"revoke", noLeader, 2, nil},
		{"revoke", unauthorized, 1, kv.ErrUnauthenticated},
		{"revoke", forbidden, 1, kv.ErrPermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.call+" "+tt.first.code, func(t *testing.T) {
			var n atomic.Int32
			ws := newWireServer(t, func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					if tt.first.status == http.StatusUnauthorized {
						w.Header().Set("WWW-Authenticate", `Bearer realm="raftkv"`)
					}
					writeJSON(w, tt.first.status, kv.ErrorResponse{Error: kv.ErrorBody{Code: tt.first.code, Message: tt.first.code + " (test)"}})
					return
				}
				switch r.Method {
				case http.MethodPost:
					writeJSON(w, http.StatusCreated, kv.ACLToken{ID: 4, Rules: kv.ACLRules{Admin: true}, CreateIndex: 9, Secret: "new-secret-0123456789"})
				case http.MethodGet:
					writeJSON(w, http.StatusOK, kv.ACLTokenList{Tokens: []kv.ACLToken{}})
				default:
					writeJSON(w, http.StatusOK, map[string]uint64{"id": 4, "index": 10})
				}
			})
			c := newClient(t, Config{Endpoints: []string{ws.srv.URL}, Token: "a-token-0123456789", MaxBackoff: 10 * time.Millisecond})
			err := calls[tt.call](c)
			switch {
			case tt.want == nil && err != nil:
				t.Errorf("err = %v, want success", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("err = %v, want one that wraps %v", err, tt.want)
			}
			if got := ws.count(); got != tt.requests {
				t.Errorf("%d requests, want %d", got, tt.requests)
			}
		})
	}
}
