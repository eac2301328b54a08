package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"go.etcd.io/bbolt"
)

// stateLines lists every key and value of every bucket of s's file (kv,
// meta, nodes, idem, idem_exp, and any other), in bbolt's order, one line
// each: what two stores that applied the same entries must agree on byte
// for byte. Digest covers only the kv bucket.
func stateLines(t testing.TB, s *Store) []string {
	t.Helper()
	var lines []string
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if v == nil {
					return fmt.Errorf("nested bucket %q/%q", name, k)
				}
				lines = append(lines, fmt.Sprintf("%s %x=%x", name, k, v))
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// fullState is the SHA-256 of stateLines, with the line count.
func fullState(t testing.TB, s *Store) string {
	t.Helper()
	h := sha256.New()
	lines := stateLines(t, s)
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return fmt.Sprintf("%d lines, sha256 %s", len(lines), hex.EncodeToString(h.Sum(nil)))
}

// stateDiff describes the first line where the states of a and b differ,
// or returns "" when they are equal.
func stateDiff(t testing.TB, a, b *Store) string {
	t.Helper()
	return linesDiff(stateLines(t, a), stateLines(t, b))
}

// linesDiff describes the first line where la and lb differ, or returns
// "" when they are equal.
func linesDiff(la, lb []string) string {
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  %q\n  %q", i, x, y)
		}
	}
	return ""
}
