package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

// TestACLState drives the ACL ops through Apply and checks what Store.ACL
// shows after each, across a reopen and a snapshot restore.
func TestACLState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a := s.ACL(); a == nil || a.Bootstrapped != 0 || a.MemberSecret != nil || len(a.Tokens()) != 0 {
		t.Fatalf("a new store's ACL state: %+v", a)
	}
	secret := bytes.Repeat([]byte{9}, MemberSecretSize)
	appRules := kv.ACLRules{Read: []string{"app/"}, Write: []string{"app/config/"}}

	// A reset before any bootstrap fails and changes nothing.
	if res := applyOne(t, s, 1, Command{Op: OpACLBootstrap, Key: hashOf("root")}); !errors.Is(res.Err, ErrACLNotBootstrapped) {
		t.Fatalf("reset before bootstrap: %v", res.Err)
	}
	if res := mustApply(t, s, 2, Command{Op: OpACLBootstrap, Key: hashOf("root"), Value: secret}); res.Token != 1 {
		t.Fatalf("bootstrap created token %d, want 1", res.Token)
	}
	// A second bootstrap (another leader's) is a no-op.
	if res := mustApply(t, s, 3, Command{Op: OpACLBootstrap, Key: hashOf("other"), Value: bytes.Repeat([]byte{1}, MemberSecretSize)}); res.Token != 0 {
		t.Fatalf("second bootstrap created token %d", res.Token)
	}
	if res := mustApply(t, s, 4, Command{Op: OpACLTokenCreate, Key: hashOf("app-secret"), Value: EncodeACLToken("app", appRules)}); res.Token != 2 {
		t.Fatalf("create: token %d, want 2", res.Token)
	}
	if res := applyOne(t, s, 5, Command{Op: OpACLTokenCreate, Key: hashOf("app-secret"), Value: EncodeACLToken("dup", appRules)}); !errors.Is(res.Err, kv.ErrBadRequest) {
		t.Fatalf("create with a used hash: %v", res.Err)
	}

	check := func(s *Store, wantIDs ...uint64) {
		t.Helper()
		a := s.ACL()
		if a.Bootstrapped != 2 || !bytes.Equal(a.MemberSecret, secret) {
			t.Fatalf("bootstrapped %d secret %x", a.Bootstrapped, a.MemberSecret)
		}
		var ids []uint64
		for _, tok := range a.Tokens() {
			ids = append(ids, tok.ID)
		}
		if !reflect.DeepEqual(ids, wantIDs) {
			t.Fatalf("tokens %v, want %v", ids, wantIDs)
		}
		if tok, ok := a.Token(kv.SecretHash("root")); !ok || tok.ID != 1 || !reflect.DeepEqual(tok.Rules, kv.RootRules()) || tok.CreateIndex != 2 {
			t.Fatalf("root token: %+v %v", tok, ok)
		}
		tok, ok := a.Token(kv.SecretHash("app-secret"))
		if want := len(wantIDs) > 1; ok != want {
			t.Fatalf("app token found %v, want %v", ok, want)
		}
		if ok && (tok.ID != 2 || tok.Description != "app" || !reflect.DeepEqual(tok.Rules, appRules) || tok.CreateIndex != 4) {
			t.Fatalf("app token: %+v", tok)
		}
		if _, ok := a.Token(kv.SecretHash("other")); ok {
			t.Fatal("the second bootstrap's hash is a token")
		}
	}
	check(s, 1, 2)

	// Reopen: the state is read back from kv.db.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	check(s, 1, 2)

	// A snapshot taken now restores the tokens into another store, even
	// after the token is revoked at the source.
	snap := snapshotBytes(t, s)
	if res := mustApply(t, s, 6, Command{Op: OpACLTokenDelete, Token: 2}); res.Err != nil {
		t.Fatal(res.Err)
	}
	check(s, 1)
	if res := applyOne(t, s, 7, Command{Op: OpACLTokenDelete, Token: 2}); !errors.Is(res.Err, kv.ErrNotFound) {
		t.Fatalf("second revoke: %v", res.Err)
	}
	other := openTemp(t)
	if err := restoreBytes(other, snap); err != nil {
		t.Fatal(err)
	}
	check(other, 1, 2)
	if err := restoreBytes(s, snap); err != nil {
		t.Fatal(err)
	}
	check(s, 1, 2)

	// A reset adds a root token for a new secret, once.
	if res := mustApply(t, s, 8, Command{Op: OpACLBootstrap, Key: hashOf("new-root")}); res.Token != 3 {
		t.Fatalf("reset created token %d, want 3", res.Token)
	}
	if res := mustApply(t, s, 9, Command{Op: OpACLBootstrap, Key: hashOf("new-root")}); res.Token != 0 {
		t.Fatalf("a repeated reset created token %d", res.Token)
	}
	if tok, ok := s.ACL().Token(kv.SecretHash("new-root")); !ok || !tok.Rules.Admin {
		t.Fatalf("reset root token: %+v %v", tok, ok)
	}
}

// TestACLCommandShapes: the decoder refuses ACL ops of the wrong shape.
func TestACLCommandShapes(t *testing.T) {
	bad := []Command{
		{Op: OpACLBootstrap, Key: []byte("short")},
		{Op: OpACLBootstrap, Key: hashOf("r"), Value: []byte("short secret")},
		{Op: OpACLTokenCreate, Key: hashOf("r"), Value: []byte{1}},
		{Op: OpACLTokenCreate, Key: hashOf("r"), Value: append(EncodeACLToken("x", kv.ACLRules{}), 0)},
		{Op: OpACLTokenCreate, Key: hashOf("r"), Value: EncodeACLToken("x", kv.ACLRules{Read: []string{"\xff"}})},
		{Op: OpACLTokenDelete},
	}
	for _, c := range bad {
		if _, err := DecodeEntry(c.Encode(nil)); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%+v decodes: %v", c, err)
		}
	}
	// Fields the encoding of an op leaves out: check refuses them.
	for _, c := range []Command{
		{Op: OpACLTokenDelete, Token: 1, Key: []byte("k")},
		{Op: OpPut, Key: []byte("k"), Token: 1},
	} {
		if err := c.check(); err == nil {
			t.Errorf("%+v passes check", c)
		}
	}
}
