package chaos

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"

	"github.com/raftkv/raftkv/kv"
)

// Ledger records, per key, the unconditional writes a load made: the ones
// acknowledged (with the mod_index and version the server answered) and
// the ones whose outcome is unknown. Values are unique. After a crash it
// says what a key may hold: every acknowledged write is durable, so the key
// holds the acknowledged write with the highest mod_index, or a write of
// unknown outcome that came after it (a higher mod_index), never anything
// older. It is safe for concurrent use.
type Ledger struct {
	mu   sync.Mutex
	keys map[string]*keyLedger
}

type keyLedger struct {
	acked   []AckedWrite
	unknown map[string]bool
}

// AckedWrite is a write the server acknowledged.
type AckedWrite struct {
	Value   string
	Mod     uint64
	Version uint64
}

// Observed is what a read found after the crash.
type Observed struct {
	Found   bool
	Value   string
	Mod     uint64
	Version uint64
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{keys: map[string]*keyLedger{}} }

func (l *Ledger) key(k string) *keyLedger {
	kl := l.keys[k]
	if kl == nil {
		kl = &keyLedger{unknown: map[string]bool{}}
		l.keys[k] = kl
	}
	return kl
}

// Acked records an acknowledged write.
func (l *Ledger) Acked(key, value string, mod, version uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.key(key)
	kl.acked = append(kl.acked, AckedWrite{Value: value, Mod: mod, Version: version})
}

// Unknown records a write whose outcome is unknown.
func (l *Ledger) Unknown(key, value string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.key(key).unknown[value] = true
}

// RecordPut records an unconditional PUT of value to key by what its
// HTTP round trip came to (status and body, or the transport error), as
// the contract classifies it: 200 acknowledged; 503 no_leader, 504
// timeout and a connection never made not applied (nothing recorded);
// anything else unknown.
func (l *Ledger) RecordPut(key, value string, status int, body []byte, err error) {
	switch {
	case err != nil && kv.NotSent(err):
	case err != nil:
		l.Unknown(key, value)
	case status == http.StatusOK:
		var pr kv.PutResponse
		if json.Unmarshal(body, &pr) != nil {
			l.Unknown(key, value)
			return
		}
		l.Acked(key, value, pr.ModIndex, pr.Version)
	case status == http.StatusServiceUnavailable && errorCode(body) == "no_leader",
		status == http.StatusGatewayTimeout && errorCode(body) == "timeout":
		// not applied
	default:
		l.Unknown(key, value)
	}
}

// Keys lists the keys written to, sorted.
func (l *Ledger) Keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k := range l.keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// AckedCount is the number of acknowledged writes.
func (l *Ledger) AckedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, kl := range l.keys {
		n += len(kl.acked)
	}
	return n
}

// Verify checks what a read of key found against the writes made to it.
func (l *Ledger) Verify(key string, got Observed) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[key]
	if kl == nil {
		if got.Found {
			return fmt.Errorf("key %s was never written but holds %q", key, got.Value)
		}
		return nil
	}
	acked := slices.Clone(kl.acked)
	slices.SortFunc(acked, func(a, b AckedWrite) int { return cmp.Compare(a.Mod, b.Mod) })
	for i := 1; i < len(acked); i++ {
		if acked[i].Mod == acked[i-1].Mod {
			return fmt.Errorf("key %s: two acknowledged writes at mod_index %d (%q, %q)", key, acked[i].Mod, acked[i-1].Value, acked[i].Value)
		}
	}
	if len(acked) == 0 {
		if got.Found && !kl.unknown[got.Value] {
			return fmt.Errorf("key %s holds %q, which no write wrote", key, got.Value)
		}
		return checkVersion(key, got, 0, len(kl.unknown))
	}
	last := acked[len(acked)-1]
	switch {
	case !got.Found:
		return fmt.Errorf("key %s is gone: lost the acknowledged write %q (mod_index %d)", key, last.Value, last.Mod)
	case got.Mod < last.Mod:
		return fmt.Errorf("key %s holds %q (mod_index %d): lost the acknowledged write %q (mod_index %d)", key, got.Value, got.Mod, last.Value, last.Mod)
	case got.Mod == last.Mod:
		if got.Value != last.Value {
			return fmt.Errorf("key %s at mod_index %d holds %q, but the write acknowledged at that index wrote %q", key, got.Mod, got.Value, last.Value)
		}
	case !kl.unknown[got.Value]:
		return fmt.Errorf("key %s holds %q (mod_index %d), which no write of unknown outcome wrote (last acknowledged: %q at %d)", key, got.Value, got.Mod, last.Value, last.Mod)
	}
	return checkVersion(key, got, len(acked), len(kl.unknown))
}

// checkVersion: every write is a put that adds one to the version, so the
// version counts the acknowledged writes plus some of the unknown ones.
func checkVersion(key string, got Observed, acked, unknown int) error {
	if got.Found && (got.Version < uint64(acked) || got.Version > uint64(acked+unknown)) {
		return fmt.Errorf("key %s: version %d, but %d writes were acknowledged and %d have an unknown outcome", key, got.Version, acked, unknown)
	}
	return nil
}
