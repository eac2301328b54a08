package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// Access control (docs/security.md). With Config.ACL set, every route has
// an auth class (route.auth): the handler's wrapper authenticates the
// request before anything else (401 unauthenticated) and checks the
// class's right (403 permission_denied); handlers of routes that touch
// keys then check the right on each key or prefix (Handler.allow) before
// they act, so a refused request changes nothing.

// HeaderMemberSecret carries the members' shared secret, hex, on the
// requests one member sends another in a cluster that runs ACLs: without
// TLS it is how a member proves it is one.
const HeaderMemberSecret = "X-Raft-Member-Secret"

// Authorizer is the access control of a node that runs ACLs (Config.ACL).
type Authorizer interface {
	// Authenticate returns the rules of the token whose secret is given,
	// or false when no token has it.
	Authenticate(secret string) (kv.ACLRules, bool)
	// MemberSecret is the members' shared secret (HeaderMemberSecret), nil
	// while this node does not have it.
	MemberSecret() []byte
}

// authClass is what a route asks of a request before its handler runs.
type authClass uint8

const (
	// authToken: any valid token; the handler checks the rights on the
	// keys it touches (allow), or none (GET /v1/cluster, leases).
	authToken authClass = iota
	// authOpen: no token (/livez, /readyz and /metrics, without
	// Config.ACLMetrics).
	authOpen
	// authProbe: authOpen, or with Config.ACLMetrics, authToken.
	authProbe
	// authAdmin: a token with admin.
	authAdmin
	// authAdminOrMember: a token with admin, or a member (join: a new
	// member presents a token; a known one, its membership).
	authAdminOrMember
	// authMember: members only (the internal endpoints), with or without
	// ACLs.
	authMember
)

// principalKey is the request context's key of the caller's rules.
type principalKey struct{}

// principal is who a request is, once authenticated: nil rules are all
// rights (ACLs off, or a member).
type principal struct{ rules *kv.ACLRules }

// member reports whether r comes from a member of the cluster: over TLS
// (Config.IsMember), a connection whose verified client certificate is a
// member's; with ACLs, a request that carries the members' secret. A
// cluster with neither lets every request in.
func (h *Handler) member(r *http.Request) bool {
	if h.isMember != nil && r.TLS != nil && h.isMember(r.TLS) {
		return true
	}
	if h.acl != nil {
		s := h.acl.MemberSecret()
		got := r.Header.Get(HeaderMemberSecret)
		return len(s) > 0 && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(hex.EncodeToString(s))) == 1
	}
	return h.isMember == nil
}

// authorize serves next to the requests class admits: it authenticates r
// and puts its principal in r's context.
func (h *Handler) authorize(class authClass, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := h.authenticate(class, r)
		if err != nil {
			writeError(w, err)
			return
		}
		if p.rules == nil {
			// All rights (ACLs off, or a member): allow finds no
			// principal and allows, and the request costs nothing more.
			next(w, r)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

func (h *Handler) authenticate(class authClass, r *http.Request) (principal, error) {
	if class == authMember || h.acl == nil {
		if class == authMember && !h.member(r) {
			return principal{}, fmt.Errorf("%w: %s serves cluster members only", kv.ErrPermissionDenied, r.URL.Path)
		}
		return principal{}, nil
	}
	if class == authOpen || class == authProbe && !h.aclMetrics {
		return principal{}, nil
	}
	if h.member(r) {
		return principal{}, nil
	}
	secret, ok, err := kv.ParseBearer(r.Header.Get("Authorization"))
	if err != nil {
		return principal{}, err
	}
	if !ok {
		return principal{}, fmt.Errorf("%w: %s needs a token (Authorization: Bearer <token>)", kv.ErrUnauthenticated, r.URL.Path)
	}
	rules, ok := h.acl.Authenticate(secret)
	if !ok {
		return principal{}, fmt.Errorf("%w: the token is not known to this cluster (revoked, or never created)", kv.ErrUnauthenticated)
	}
	switch class {
	case authAdmin, authAdminOrMember:
		if !rules.Admin {
			return principal{}, &kv.DeniedError{Right: kv.RightAdmin}
		}
	case authToken, authProbe: // any valid token; handlers check keys
	}
	return principal{rules: &rules}, nil
}

// allow checks that r's caller has right on key (a prefix, for a range:
// see kv.ACLRules.Allows); the error is a *kv.DeniedError.
func allow(r *http.Request, right kv.Right, key []byte, isPrefix bool) error {
	p, _ := r.Context().Value(principalKey{}).(principal)
	if p.rules == nil || p.rules.Allows(right, key) {
		return nil
	}
	return &kv.DeniedError{Right: right, Key: key, IsPrefix: isPrefix}
}

// allowKeyWrite checks a put's or delete's rights: write on its key (or
// prefix) and, for a write fenced by a lock, read on the lock's queue.
func allowKeyWrite(r *http.Request, kw keyWrite) error {
	if err := allow(r, kv.RightWrite, kw.key, kw.isPrefix); err != nil {
		return err
	}
	if f := kw.opts.Fence; !f.IsZero() {
		return allow(r, kv.RightRead, kv.LockQueue(f.Lock), true)
	}
	return nil
}

// allowTxn checks every compare (read) and op of t against r's caller.
func allowTxn(r *http.Request, t kv.Txn) error {
	for _, c := range t.Compare {
		key := c.Key
		if c.Target == kv.TargetLock {
			if err := allow(r, kv.RightRead, kv.LockQueue(string(c.Key)), true); err != nil {
				return err
			}
			continue
		}
		if err := allow(r, kv.RightRead, key, false); err != nil {
			return err
		}
	}
	for _, ops := range [][]kv.TxnOp{t.Success, t.Failure} {
		for _, op := range ops {
			var err error
			switch op.Type {
			case kv.TxnGet:
				err = allow(r, kv.RightRead, op.Key, false)
			case kv.TxnDeletePrefix:
				err = allow(r, kv.RightWrite, op.Key, true)
			default:
				err = allow(r, kv.RightWrite, op.Key, false)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// The token routes: POST and GET /v1/acl/tokens, DELETE
// /v1/acl/tokens/{id}; admin only (their route class).

// tokenBodyLimit bounds POST /v1/acl/tokens: every rule at its largest.
const tokenBodyLimit = 2*kv.MaxACLRules*(kv.MaxKeySize+16) + kv.MaxACLDescription + 1024

func (h *Handler) postToken(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, tokenBodyLimit)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := decodeTokenRequest(body)
	if err != nil {
		writeError(w, err)
		return
	}
	tok, err := h.b.CreateToken(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set(HeaderIndex, strconv.FormatUint(tok.CreateIndex, 10))
	writeJSON(w, http.StatusCreated, tok)
}

// decodeTokenRequest decodes and checks POST /v1/acl/tokens's body:
// unknown fields are refused.
func decodeTokenRequest(body []byte) (kv.ACLTokenRequest, error) {
	req, err := decodeJSON[kv.ACLTokenRequest](body, "token")
	if err != nil {
		return req, err
	}
	return req, req.Validate()
}

func (h *Handler) getTokens(*http.Request) (kv.ACLTokenList, error) {
	toks := h.b.Tokens()
	if toks == nil {
		toks = []kv.ACLToken{}
	}
	return kv.ACLTokenList{Tokens: toks}, nil
}

func (h *Handler) deleteToken(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, fmt.Errorf("%w: a token id is a whole number from 1, not %q", kv.ErrBadRequest, r.PathValue("id")))
		return
	}
	index, err := h.b.RevokeToken(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
	writeJSON(w, http.StatusOK, map[string]uint64{"id": id, "index": index})
}
