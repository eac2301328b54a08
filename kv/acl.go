package kv

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Access control (docs/security.md). With ACLs on, every request but the
// open ones carries a token's secret (Authorization: Bearer …). A token
// has rules: read and write on key prefixes, and admin. The cluster keeps
// tokens in its replicated state as the SHA-256 of their secrets, so a new
// or revoked token holds on every node as soon as it has applied the
// change.

// ErrUnauthenticated: the request carries no token, or one no token of the
// cluster has (401, with WWW-Authenticate: Bearer).
var ErrUnauthenticated = errors.New("unauthenticated")

// Limits of a token's rules.
const (
	// MaxACLRules bounds the prefixes of each right of one token.
	MaxACLRules = 256
	// MaxACLDescription bounds a token's description, in bytes.
	MaxACLDescription = 1024
	// MinSecretSize is the shortest secret a bootstrap token file may hold.
	MinSecretSize = 16
	// MaxSecretSize is the longest secret a request may present.
	MaxSecretSize = 512
)

// ACLRules are what a token may do. Read and Write list key prefixes
// (the empty prefix is every key); a right on a prefix covers every key
// that starts with it. Write implies read. Admin is the cluster's own
// operations: membership, tokens, snapshots and debugging; it grants no
// key (the root token has both).
type ACLRules struct {
	Read  []string `json:"read,omitempty"`
	Write []string `json:"write,omitempty"`
	Admin bool     `json:"admin,omitempty"`
}

// RootRules are the rules of the bootstrap (root) token: every key and
// admin.
func RootRules() ACLRules { return ACLRules{Write: []string{""}, Admin: true} }

// Validate checks the rules' shape: at most MaxACLRules prefixes per right,
// each valid UTF-8 and at most MaxKeySize bytes. The error wraps
// ErrBadRequest.
func (r ACLRules) Validate() error {
	for _, rs := range []struct {
		right string
		list  []string
	}{{"read", r.Read}, {"write", r.Write}} {
		if len(rs.list) > MaxACLRules {
			return fmt.Errorf("%w: %d %s prefixes, the limit is %d", ErrBadRequest, len(rs.list), rs.right, MaxACLRules)
		}
		for _, p := range rs.list {
			if len(p) > MaxKeySize {
				return fmt.Errorf("%w: a %s prefix of %d bytes, the limit is %d", ErrBadRequest, rs.right, len(p), MaxKeySize)
			}
			if !utf8.ValidString(p) {
				return fmt.Errorf("%w: a %s prefix is not valid UTF-8", ErrBadRequest, rs.right)
			}
		}
	}
	return nil
}

// Right is one right a request needs.
type Right uint8

// The rights.
const (
	RightRead Right = iota + 1
	RightWrite
	RightAdmin
)

func (r Right) String() string {
	switch r {
	case RightRead:
		return "read"
	case RightWrite:
		return "write"
	case RightAdmin:
		return "admin"
	}
	return fmt.Sprintf("right(%d)", uint8(r))
}

// covers reports whether one of prefixes is a prefix of key.
func covers(prefixes []string, key []byte) bool {
	for _, p := range prefixes {
		if bytes.HasPrefix(key, []byte(p)) {
			return true
		}
	}
	return false
}

// Allows reports whether the rules grant right on key. For a range (a
// list, a prefix delete, a watch of a prefix) pass its prefix: one rule
// must cover the whole range, and a rule prefix that is a prefix of the
// range's prefix does, as it does a single key. RightAdmin ignores key.
func (r ACLRules) Allows(right Right, key []byte) bool {
	switch right {
	case RightRead:
		return covers(r.Read, key) || covers(r.Write, key)
	case RightWrite:
		return covers(r.Write, key)
	case RightAdmin:
		return r.Admin
	}
	return false
}

// DeniedError is a request refused for a right its token lacks. It wraps
// ErrPermissionDenied and names the right.
type DeniedError struct {
	Right Right
	// Key is the key or prefix the right was needed on (none for admin).
	Key      []byte
	IsPrefix bool
}

func (e *DeniedError) Error() string {
	switch {
	case e.Right == RightAdmin:
		return "permission denied: the token lacks admin"
	case e.IsPrefix:
		return fmt.Sprintf("permission denied: the token lacks %s on the prefix %q", e.Right, e.Key)
	}
	return fmt.Sprintf("permission denied: the token lacks %s on %q", e.Right, e.Key)
}

// Unwrap returns ErrPermissionDenied.
func (e *DeniedError) Unwrap() error { return ErrPermissionDenied }

// ACLToken describes a token. Its secret is never stored: only the
// answer that creates a token carries it (Secret).
type ACLToken struct {
	// ID names the token (to list or revoke it); it is not a credential.
	ID          uint64   `json:"id"`
	Description string   `json:"description,omitempty"`
	Rules       ACLRules `json:"rules"`
	// CreateIndex is the index of the entry that created the token.
	CreateIndex uint64 `json:"create_index"`
	// Secret is the credential, in the answer to a create only.
	Secret string `json:"secret,omitempty"`
}

// ACLTokenRequest is the body of POST /v1/acl/tokens.
type ACLTokenRequest struct {
	Description string   `json:"description,omitempty"`
	Rules       ACLRules `json:"rules"`
}

// Validate checks the request (see ACLRules.Validate); the error wraps
// ErrBadRequest.
func (t ACLTokenRequest) Validate() error {
	if len(t.Description) > MaxACLDescription {
		return fmt.Errorf("%w: a description of %d bytes, the limit is %d", ErrBadRequest, len(t.Description), MaxACLDescription)
	}
	if !utf8.ValidString(t.Description) {
		return fmt.Errorf("%w: the description is not valid UTF-8", ErrBadRequest)
	}
	return t.Rules.Validate()
}

// ACLTokenList is the body of GET /v1/acl/tokens.
type ACLTokenList struct {
	Tokens []ACLToken `json:"tokens"`
}

// SecretHash is what the cluster stores of a secret.
func SecretHash(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// NewSecret returns a new random token secret: 32 random bytes, base64url.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseBearer extracts the secret of an Authorization header: "Bearer "
// (any case) and the secret, with no spaces in it. ok is false for an
// empty header; a malformed one is an error wrapping ErrUnauthenticated.
func ParseBearer(header string) (secret string, ok bool, err error) {
	if header == "" {
		return "", false, nil
	}
	scheme, rest, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false, fmt.Errorf("%w: the Authorization header is not \"Bearer <token>\"", ErrUnauthenticated)
	}
	rest = strings.TrimLeft(rest, " ")
	switch {
	case rest == "":
		return "", false, fmt.Errorf("%w: the Authorization header has an empty token", ErrUnauthenticated)
	case len(rest) > MaxSecretSize:
		return "", false, fmt.Errorf("%w: a token of %d bytes, the limit is %d", ErrUnauthenticated, len(rest), MaxSecretSize)
	case strings.ContainsAny(rest, " \t\r\n"):
		return "", false, fmt.Errorf("%w: the token holds a space", ErrUnauthenticated)
	}
	return rest, true, nil
}

// ValidateSecret checks a secret an operator chose (a bootstrap token
// file's): MinSecretSize to MaxSecretSize printable ASCII bytes, no space.
func ValidateSecret(s string) error {
	if len(s) < MinSecretSize || len(s) > MaxSecretSize {
		return fmt.Errorf("%w: a token must be %d to %d bytes, this one is %d", ErrBadRequest, MinSecretSize, MaxSecretSize, len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("%w: a token must be printable ASCII without spaces", ErrBadRequest)
		}
	}
	return nil
}
