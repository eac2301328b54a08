package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

// Access control in the state machine (kv/acl.go, docs/security.md). A
// token is a record in acl_tokens (8-byte id → its secret's SHA-256,
// create index, description and rules), found by its hash through
// acl_hashes (hash → id). The meta bucket holds the id sequence, the
// index of the bootstrap and the members' shared secret, which members
// present to each other's internal endpoints when the cluster runs
// without TLS. Nothing here is a key: no op of this file records an event.
var (
	bucketACLTokens = []byte("acl_tokens")
	bucketACLHashes = []byte("acl_hashes")

	keyACLNext      = []byte("acl_next")
	keyACLBootstrap = []byte("acl_bootstrap")
	keyACLSecret    = []byte("acl_member_secret")
)

// ErrACLNotBootstrapped: a reset (OpACLBootstrap without a secret)
// reached a state that was never bootstrapped.
var ErrACLNotBootstrapped = errors.New("acl not bootstrapped")

// MemberSecretSize is the size of the members' shared secret.
const MemberSecretSize = 32

// ACLState is the access control a node holds, as of one applied index:
// read-only, shared by every request (Store.ACL).
type ACLState struct {
	// Bootstrapped is the index of the bootstrap; 0 before it.
	Bootstrapped uint64
	// MemberSecret is the members' shared secret (nil before the
	// bootstrap).
	MemberSecret []byte
	byHash       map[[sha256.Size]byte]*kv.ACLToken
	tokens       []kv.ACLToken // by id
}

// Token returns the token whose secret hashes to hash.
func (a *ACLState) Token(hash [sha256.Size]byte) (kv.ACLToken, bool) {
	if a == nil {
		return kv.ACLToken{}, false
	}
	t, ok := a.byHash[hash]
	if !ok {
		return kv.ACLToken{}, false
	}
	return *t, true
}

// Tokens lists the tokens by id (never their secrets).
func (a *ACLState) Tokens() []kv.ACLToken {
	if a == nil {
		return nil
	}
	return slices.Clone(a.tokens)
}

// encodeRules is a token's description and rules, as an
// OpACLTokenCreate's Value and a token record's tail carry them:
//
//	bytes description | uvarint n | n × bytes read prefix |
//	uvarint n | n × bytes write prefix | byte admin
func encodeRules(description string, r kv.ACLRules) []byte {
	b := appendBytes(nil, []byte(description))
	for _, list := range [][]string{r.Read, r.Write} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, p := range list {
			b = appendBytes(b, []byte(p))
		}
	}
	return append(b, boolByte(r.Admin))
}

func (d *decoder) rules() (string, kv.ACLRules) {
	var r kv.ACLRules
	desc := string(d.bytes("description"))
	for _, list := range []*[]string{&r.Read, &r.Write} {
		n := d.count("prefixes", kv.MaxACLRules)
		for range n {
			p := d.bytes("prefix")
			if d.err != nil {
				return "", r
			}
			*list = append(*list, string(p))
		}
	}
	admin := d.byte("admin")
	if d.err == nil && admin > 1 {
		d.err = errors.New("admin: bad flag")
	}
	r.Admin = admin == 1
	if d.err == nil {
		req := kv.ACLTokenRequest{Description: desc, Rules: r}
		if err := req.Validate(); err != nil {
			d.err = err
		}
	}
	return desc, r
}

// decodeRules decodes encodeRules's bytes, all of them.
func decodeRules(b []byte) (string, kv.ACLRules, error) {
	d := decoder{b: b}
	desc, r := d.rules()
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return desc, r, d.err
}

// EncodeACLToken is the Value of an OpACLTokenCreate.
func EncodeACLToken(description string, r kv.ACLRules) []byte {
	return encodeRules(description, r)
}

func encodeTokenRecord(hash []byte, createIndex uint64, body []byte) []byte {
	b := make([]byte, 0, len(hash)+binary.MaxVarintLen64+len(body))
	b = append(b, hash...)
	b = binary.AppendUvarint(b, createIndex)
	return append(b, body...)
}

func decodeTokenRecord(id, v []byte) (kv.ACLToken, [sha256.Size]byte, error) {
	var h [sha256.Size]byte
	if len(id) != 8 || len(v) < sha256.Size {
		return kv.ACLToken{}, h, fmt.Errorf("corrupt token record %x", id)
	}
	copy(h[:], v)
	d := decoder{b: v[sha256.Size:]}
	t := kv.ACLToken{ID: binary.BigEndian.Uint64(id), CreateIndex: d.uvarint("create index")}
	t.Description, t.Rules = d.rules()
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return kv.ACLToken{}, h, fmt.Errorf("corrupt token record %x: %w", id, d.err)
	}
	return t, h, nil
}

// aclBuckets opens (creating them in a file written before ACLs existed)
// the ACL buckets, on the first ACL op of a batch.
func (b *buckets) aclBuckets() error {
	if b.aclTokens != nil {
		return nil
	}
	var err error
	if b.aclTokens, err = b.tx.CreateBucketIfNotExists(bucketACLTokens); err != nil {
		return err
	}
	b.aclHashes, err = b.tx.CreateBucketIfNotExists(bucketACLHashes)
	return err
}

// aclBootstrap applies an OpACLBootstrap: on a state never bootstrapped,
// it records the members' secret and creates the root token; on one
// bootstrapped already, a bootstrap with no secret (a reset, for a lost
// root token) creates a root token with this hash, and any other is a
// no-op (two leaders may both have tried). It returns the root token's
// id, or 0 when nothing was created.
func (b *buckets) aclBootstrap(hash, secret []byte, index uint64) (uint64, error) {
	if err := b.aclBuckets(); err != nil {
		return 0, err
	}
	b.rec.acl = true
	done, _ := getU64(b.meta, keyACLBootstrap)
	switch {
	case done == 0 && len(secret) == 0:
		return 0, fmt.Errorf("%w: a reset needs a bootstrapped state", ErrACLNotBootstrapped)
	case done == 0:
		if err := b.meta.Put(keyACLBootstrap, u64(index)); err != nil {
			return 0, err
		}
		if err := b.meta.Put(keyACLSecret, bytes.Clone(secret)); err != nil {
			return 0, err
		}
	case len(secret) > 0:
		return 0, nil
	}
	if id := b.aclHashes.Get(hash); id != nil {
		return 0, nil // the reset's token is a token already
	}
	return b.createToken(hash, encodeRules("root", kv.RootRules()), index)
}

// createToken applies an OpACLTokenCreate.
func (b *buckets) createToken(hash, body []byte, index uint64) (uint64, error) {
	if err := b.aclBuckets(); err != nil {
		return 0, err
	}
	b.rec.acl = true
	if b.aclHashes.Get(hash) != nil {
		// Secrets are 32 random bytes: only a replayed command does this.
		return 0, fmt.Errorf("%w: a token with this secret exists", kv.ErrBadRequest)
	}
	id, _ := getU64(b.meta, keyACLNext)
	id = max(id, 1)
	if err := b.meta.Put(keyACLNext, u64(id+1)); err != nil {
		return 0, err
	}
	if err := b.aclTokens.Put(u64(id), encodeTokenRecord(hash, index, body)); err != nil {
		return 0, err
	}
	return id, b.aclHashes.Put(bytes.Clone(hash), u64(id))
}

// deleteToken applies an OpACLTokenDelete.
func (b *buckets) deleteToken(id uint64) error {
	if err := b.aclBuckets(); err != nil {
		return err
	}
	b.rec.acl = true
	v := b.aclTokens.Get(u64(id))
	if v == nil {
		return fmt.Errorf("%w: token %d", kv.ErrNotFound, id)
	}
	if len(v) < sha256.Size {
		return fmt.Errorf("corrupt token record %d", id)
	}
	if err := b.aclHashes.Delete(bytes.Clone(v[:sha256.Size])); err != nil {
		return err
	}
	return b.aclTokens.Delete(u64(id))
}

// loadACL reads the access control tx holds.
func loadACL(tx *bbolt.Tx) (*ACLState, error) {
	a := &ACLState{byHash: map[[sha256.Size]byte]*kv.ACLToken{}}
	meta := tx.Bucket(bucketMeta)
	a.Bootstrapped, _ = getU64(meta, keyACLBootstrap)
	if s := meta.Get(keyACLSecret); s != nil {
		a.MemberSecret = bytes.Clone(s)
	}
	tb := tx.Bucket(bucketACLTokens)
	if tb == nil {
		return a, nil
	}
	var hashes [][sha256.Size]byte
	err := tb.ForEach(func(k, v []byte) error {
		t, h, err := decodeTokenRecord(k, v)
		if err != nil {
			return err
		}
		a.tokens = append(a.tokens, t)
		hashes = append(hashes, h)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, h := range hashes {
		a.byHash[h] = &a.tokens[i]
	}
	return a, nil
}

// ACL returns the access control of the applied state. It changes only
// with the ACL ops, and the value returned is never modified: callers
// may keep it.
func (s *Store) ACL() *ACLState { return s.acl.Load() }
