package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// Access control tokens (POST/GET /v1/acl/tokens, DELETE
// /v1/acl/tokens/{id}; docs/security.md). Each call needs a token with
// admin (Config.Token). A create and a revoke are writes without an
// idempotency key: resent only when certainly not applied (a create
// resent after an unknown outcome could make a second token whose secret
// nobody sees; a revoke's second answer, 404, could not tell whether the
// first applied). A list is a read.

// CreateToken creates a token with req's rules (POST /v1/acl/tokens) and
// returns it with its Secret, which the cluster does not keep: this is
// the only time it is shown. The node that answered honours the token
// when the call returns; every other node, as soon as it has applied it.
// Rules the cluster refuses wrap kv.ErrBadRequest; a caller without
// admin gets an error wrapping kv.ErrPermissionDenied, without a valid
// token kv.ErrUnauthenticated.
func (c *Client) CreateToken(ctx context.Context, req kv.ACLTokenRequest) (kv.ACLToken, error) {
	if err := req.Validate(); err != nil {
		return kv.ACLToken{}, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return kv.ACLToken{}, fmt.Errorf("create token: %w", err)
	}
	var tok kv.ACLToken
	if err := c.call(ctx, request{method: http.MethodPost, path: "/v1/acl/tokens", header: jsonHeader(), body: body, class: unkeyedWrite}, &tok); err != nil {
		return kv.ACLToken{}, err
	}
	if tok.ID == 0 || tok.Secret == "" {
		return kv.ACLToken{}, fmt.Errorf("create token: the answer has no id or no secret")
	}
	return tok, nil
}

// Tokens lists the cluster's tokens (GET /v1/acl/tokens) as the answering
// node has applied them: ID, Description, Rules and CreateIndex of each,
// never a secret.
func (c *Client) Tokens(ctx context.Context) ([]kv.ACLToken, error) {
	var resp kv.ACLTokenList
	if err := c.call(ctx, request{method: http.MethodGet, path: "/v1/acl/tokens"}, &resp); err != nil {
		return nil, err
	}
	return resp.Tokens, nil
}

// RevokeToken deletes token id (DELETE /v1/acl/tokens/{id}) and returns
// the index of the entry that did. The node that answered refuses the
// token when the call returns; every other node, as soon as it has
// applied the entry. An unknown id wraps kv.ErrNotFound.
func (c *Client) RevokeToken(ctx context.Context, id uint64) (uint64, error) {
	if id == 0 {
		return 0, fmt.Errorf("%w: token id 0", kv.ErrBadRequest)
	}
	var resp struct {
		ID    uint64 `json:"id"`
		Index uint64 `json:"index"`
	}
	path := "/v1/acl/tokens/" + strconv.FormatUint(id, 10)
	if err := c.call(ctx, request{method: http.MethodDelete, path: path, class: unkeyedWrite}, &resp); err != nil {
		return 0, err
	}
	return resp.Index, nil
}
