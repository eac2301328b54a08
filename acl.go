package raftkv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// ACLConfig turns access control on (docs/security.md): the HTTP API then
// asks every request but /livez, /readyz and /metrics for a token.
type ACLConfig struct {
	// BootstrapToken is the root token's secret, given to the founding
	// members: the first of them to lead commits its hash, once. Later
	// members need not have it. Never logged.
	BootstrapToken string
	// BootstrapReset makes this node, when it leads, add BootstrapToken as
	// a root token to a cluster bootstrapped already: the way back from a
	// lost root token (docs/security.md). Restart without it afterwards.
	BootstrapReset bool
	// Token is what this node presents to the members it asks to join a
	// cluster (a token with admin); empty means BootstrapToken. A member
	// that has applied the bootstrap uses the members' secret instead.
	Token string
	// Metrics makes /metrics, /livez and /readyz ask for a token too.
	Metrics bool
}

func (c *ACLConfig) check() error {
	if c.BootstrapToken != "" {
		if err := kv.ValidateSecret(c.BootstrapToken); err != nil {
			return fmt.Errorf("raftkv: ACL bootstrap token: %w", err)
		}
	}
	if c.BootstrapReset && c.BootstrapToken == "" {
		return fmt.Errorf("raftkv: an ACL bootstrap reset needs the bootstrap token")
	}
	return nil
}

// joinToken is the token this node presents to other members before it
// has the members' secret.
func (c *ACLConfig) joinToken() string {
	if c == nil {
		return ""
	}
	if c.Token != "" {
		return c.Token
	}
	return c.BootstrapToken
}

// aclAuth is the node's access control, as the HTTP API asks it.
type aclAuth struct{ n *Node }

// Authenticate returns the rules of the token whose secret is given. Until
// the cluster's bootstrap is applied here, the bootstrap token (if this
// node was given it) is the root: the founding members talk to each
// other with it before any entry is committed.
func (a aclAuth) Authenticate(secret string) (kv.ACLRules, bool) {
	st := a.n.store.ACL()
	if tok, ok := st.Token(kv.SecretHash(secret)); ok {
		return tok.Rules, true
	}
	if st.Bootstrapped == 0 && a.n.cfg.ACL.BootstrapToken != "" && secret == a.n.cfg.ACL.BootstrapToken {
		return kv.RootRules(), true
	}
	return kv.ACLRules{}, false
}

// MemberSecret is the members' shared secret, nil before the bootstrap.
func (a aclAuth) MemberSecret() []byte { return a.n.store.ACL().MemberSecret }

// memberSecretTransport adds the members' secret to every request this
// node sends another member, once the node has it: without TLS it is how
// a member proves it is one (httpapi.HeaderMemberSecret).
type memberSecretTransport struct {
	base   http.RoundTripper
	secret func() []byte
}

func (t memberSecretTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s := t.secret()
	if len(s) == 0 {
		return t.base.RoundTrip(r)
	}
	r = r.Clone(r.Context()) // a RoundTripper must not change its request
	r.Header.Set(httpapi.HeaderMemberSecret, hex.EncodeToString(s))
	return t.base.RoundTrip(r)
}

// CloseIdleConnections closes the base transport's idle connections.
func (t memberSecretTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// aclTick is how often the leader checks whether the ACL bootstrap (or a
// reset) is still to be committed.
const aclTick = 200 * time.Millisecond

// runACLBootstrap is the leader's side of the ACL bootstrap, for the life
// of the node: while this node is the ready leader and the applied state
// lacks what its configuration asks (the bootstrap; with BootstrapReset,
// its bootstrap token as a token), it appends the bootstrap. The state
// machine makes a repeated or concurrent one a no-op.
func (n *Node) runACLBootstrap(ctx context.Context) {
	c := n.cfg.ACL
	tick := time.NewTicker(aclTick)
	defer tick.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !n.raft.LeaderReady() {
			continue
		}
		st := n.store.ACL()
		hash := kv.SecretHash(c.BootstrapToken)
		cmd := &store.Command{Op: store.OpACLBootstrap, Key: hash[:]}
		switch {
		case st.Bootstrapped != 0 && !c.BootstrapReset:
			return // done: nothing else to do for the node's life
		case st.Bootstrapped != 0:
			if _, ok := st.Token(hash); ok {
				return
			}
		case c.BootstrapToken == "":
			if !warned {
				n.log.Warn("ACLs are on but the cluster has no root token yet, and this leader was not given the bootstrap token: every request is refused until a member that has it leads")
				warned = true
			}
			continue
		default:
			cmd.Value = make([]byte, store.MemberSecretSize)
			_, _ = rand.Read(cmd.Value)
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := n.apply(actx, cmd, kv.WriteOptions{})
		cancel()
		switch {
		case err != nil:
			n.log.Warn("ACL bootstrap not committed; retrying", "err", err)
		case res.Token != 0 && cmd.Value == nil:
			n.log.Warn("ACL bootstrap reset: the bootstrap token is a root token again; restart this node without the reset", "token_id", res.Token, "index", res.Index)
		case res.Token != 0:
			n.log.Info("ACLs bootstrapped: root token created", "token_id", res.Token, "index", res.Index)
		}
	}
}

// CreateToken creates a token with req's rules and returns it with its
// secret, which the cluster does not keep: it is shown once. It returns
// once the token is committed and this node honours it; every other node
// honours it as soon as it has applied it.
func (n *Node) CreateToken(ctx context.Context, req kv.ACLTokenRequest) (kv.ACLToken, error) {
	if err := req.Validate(); err != nil {
		return kv.ACLToken{}, err
	}
	secret := kv.NewSecret()
	hash := kv.SecretHash(secret)
	res, err := n.apply(ctx, &store.Command{Op: store.OpACLTokenCreate, Key: hash[:], Value: store.EncodeACLToken(req.Description, req.Rules)}, kv.WriteOptions{})
	if err != nil {
		return kv.ACLToken{}, err
	}
	n.waitLocal(ctx, res.Index)
	return kv.ACLToken{ID: res.Token, Description: req.Description, Rules: req.Rules, CreateIndex: res.Index, Secret: secret}, nil
}

// Tokens lists the tokens as this node's applied state holds them (no
// secrets).
func (n *Node) Tokens() []kv.ACLToken { return n.store.ACL().Tokens() }

// RevokeToken deletes token id; it returns the index of the entry. Each
// node refuses the token from the moment it applies that entry. An
// unknown id is kv.ErrNotFound.
func (n *Node) RevokeToken(ctx context.Context, id uint64) (uint64, error) {
	if id == 0 {
		return 0, fmt.Errorf("%w: token id 0", kv.ErrBadRequest)
	}
	res, err := n.apply(ctx, &store.Command{Op: store.OpACLTokenDelete, Token: id}, kv.WriteOptions{})
	if err != nil {
		return 0, err
	}
	n.waitLocal(ctx, res.Index)
	return res.Index, nil
}

// waitLocal waits, as long as ctx lasts, until this node has applied
// index: a token created or revoked through a follower then holds there
// when the call returns. The entry is committed either way, so a node
// that lags past ctx still answers the call's success (the secret of a
// new token must not be lost to a slow follower).
func (n *Node) waitLocal(ctx context.Context, index uint64) {
	if err := n.store.WaitApplied(ctx, index); err != nil {
		n.log.Warn("ACL change committed but not yet applied on this node", "index", index, "err", err)
	}
}
