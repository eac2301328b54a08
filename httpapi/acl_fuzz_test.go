package httpapi

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// FuzzTokenRequest feeds POST /v1/acl/tokens's decoder arbitrary bodies:
// it never panics, refuses with kv.ErrBadRequest, and whatever it accepts
// the state machine accepts too (the command a node builds from it
// decodes), so the API never hands raft a token create that every node
// would refuse.
func FuzzTokenRequest(f *testing.F) {
	for _, s := range []string{
		`{"rules":{"read":["app/"],"write":["app/config/"],"admin":true},"description":"d"}`,
		`{"rules":{}}`, `{}`, ``, `[`, `{"rules":{"read":"app/"}}`, `{"rules":{"read":["\xff"]}}`,
		`{"rules":{"read":[""]},"x":1}`, `{"rules":{"write":["a","b"]}} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeTokenRequest(body)
		if err != nil {
			if !errors.Is(err, kv.ErrBadRequest) {
				t.Fatalf("refused with %v, not bad_request", err)
			}
			return
		}
		h := kv.SecretHash("s")
		c := store.Command{Op: store.OpACLTokenCreate, Key: h[:], Value: store.EncodeACLToken(req.Description, req.Rules)}
		if _, err := store.DecodeEntry(c.Encode(nil)); err != nil {
			t.Fatalf("the API accepted %q but the state machine refuses it: %v", body, err)
		}
	})
}
