package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Leases (POST/GET/DELETE /v1/lease...). A grant and a revoke are writes
// without an idempotency key: resent only when certainly not applied (a
// grant resent after an unknown outcome could leave a lease nobody knows
// of, kept alive by nothing until it expires; a revoke's second answer,
// 404, could not tell whether the first applied). A keepalive is resent
// after any failure: whether it applied once or twice, the effect is one
// restart of the lease's TTL, so no answer of it is an unknown outcome.

// Grant creates a lease of ttl (POST /v1/lease); the node checks ttl's
// bounds (kv.ErrBadRequest, saying them). The result has ID, TTL and the
// Index of the grant.
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (kv.Lease, error) {
	if ttl <= 0 {
		return kv.Lease{}, fmt.Errorf("%w: ttl must be positive, not %s", kv.ErrBadRequest, ttl)
	}
	body, err := json.Marshal(struct {
		TTL kv.Duration `json:"ttl"`
	}{kv.Duration(ttl)})
	if err != nil {
		return kv.Lease{}, fmt.Errorf("grant: %w", err)
	}
	return c.lease(ctx, request{method: http.MethodPost, path: "/v1/lease", header: jsonHeader(), body: body, class: unkeyedWrite})
}

// KeepAliveOnce restarts the TTL of lease id (POST
// /v1/lease/{id}/keepalive) and returns ID, TTL and the Index of the
// keepalive; the error wraps kv.ErrLeaseNotFound when the lease is gone
// (expired or revoked). It is resent after any failure, to any node:
// applying it twice restarts the TTL as once does.
func (c *Client) KeepAliveOnce(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	if id == 0 {
		return kv.Lease{}, fmt.Errorf("%w: lease id 0", kv.ErrBadRequest)
	}
	return c.lease(ctx, request{method: http.MethodPost, path: leasePath(id) + "/keepalive", class: repeatableWrite})
}

// Revoke deletes lease id and every key attached to it, in one raft entry
// (DELETE /v1/lease/{id}); the error wraps kv.ErrLeaseNotFound when the
// lease is gone already.
func (c *Client) Revoke(ctx context.Context, id kv.LeaseID) (kv.RevokeResult, error) {
	if id == 0 {
		return kv.RevokeResult{}, fmt.Errorf("%w: lease id 0", kv.ErrBadRequest)
	}
	var resp revokeResponse
	if err := c.call(ctx, request{method: http.MethodDelete, path: leasePath(id), class: unkeyedWrite}, &resp); err != nil {
		return kv.RevokeResult{}, err
	}
	return kv.RevokeResult(resp), nil
}

// revokeResponse is the answer to DELETE /v1/lease/{id}.
type revokeResponse struct {
	ID      kv.LeaseID `json:"id"`
	Deleted int64      `json:"deleted"`
	Index   uint64     `json:"index"`
}

// LeaseInfo describes lease id (GET /v1/lease/{id}): its TTL, the time
// it has left as the leader sees it, its keys, and the applied index the
// answer reflects; kv.ErrLeaseNotFound when it is gone.
func (c *Client) LeaseInfo(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	if id == 0 {
		return kv.Lease{}, fmt.Errorf("%w: lease id 0", kv.ErrBadRequest)
	}
	return c.lease(ctx, request{method: http.MethodGet, path: leasePath(id)})
}

// Leases lists the leases (GET /v1/lease): ID, TTL and Remaining of each;
// Index is the applied index the answer reflects.
func (c *Client) Leases(ctx context.Context) ([]kv.Lease, error) {
	var resp struct {
		Leases []kv.LeaseJSON `json:"leases"`
		Index  uint64         `json:"index"`
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: "/v1/lease"}, &resp); err != nil {
		return nil, err
	}
	out := make([]kv.Lease, 0, len(resp.Leases))
	for i, lj := range resp.Leases {
		l, err := lj.Lease()
		if err != nil {
			return nil, fmt.Errorf("lease list: item %d: %w", i, err)
		}
		if l.Index == 0 {
			l.Index = resp.Index
		}
		out = append(out, l)
	}
	return out, nil
}

// lease makes the call req, whose answer is a kv.LeaseJSON.
func (c *Client) lease(ctx context.Context, req request) (kv.Lease, error) {
	var resp kv.LeaseJSON
	if err := c.call(ctx, req, &resp); err != nil {
		return kv.Lease{}, err
	}
	l, err := resp.Lease()
	if err != nil {
		return kv.Lease{}, fmt.Errorf("%s %s: response: %w", req.method, req.path, err)
	}
	return l, nil
}

func leasePath(id kv.LeaseID) string { return "/v1/lease/" + id.String() }

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }
