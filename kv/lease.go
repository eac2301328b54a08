package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LeaseID names a lease. The state machine numbers leases from 1 in the
// order they are granted and never reuses a number; 0 is no lease. On the
// wire it is a decimal string ("id":"42").
type LeaseID uint64

// String is the decimal form of id.
func (id LeaseID) String() string { return strconv.FormatUint(uint64(id), 10) }

// MarshalJSON writes id as a decimal string.
func (id LeaseID) MarshalJSON() ([]byte, error) {
	return []byte(`"` + id.String() + `"`), nil
}

// UnmarshalJSON reads a decimal string (or a bare number).
func (id *LeaseID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := ParseLeaseID(s)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseLeaseID parses the decimal form of a lease id. Zero, signs, spaces
// and anything else than 1 to 20 digits is an error wrapping ErrBadRequest.
func ParseLeaseID(s string) (LeaseID, error) {
	if s == "" || len(s) > 20 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: lease id %q is not a positive decimal number", ErrBadRequest, s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: lease id %q is not a positive decimal number", ErrBadRequest, s)
	}
	return LeaseID(v), nil
}

// MaxLeaseTTL is the longest TTL a lease may have. The shortest is twice
// the cluster's election timeout (a node refuses a shorter one, saying
// its bound): a lease shorter than an election could expire while the
// cluster elects a leader, however fast its holder keeps it alive.
const MaxLeaseTTL = 7 * 24 * time.Hour

// ErrLeaseNotFound: the lease does not exist (never granted, revoked, or
// expired).
var ErrLeaseNotFound = errors.New("lease not found")

// Lease describes a lease.
type Lease struct {
	ID LeaseID
	// TTL is the lease's time to live: each keepalive restarts it.
	TTL time.Duration
	// Remaining is how long the lease has left, as the leader sees it when
	// it answers (LeaseInfo, Leases); zero where the answer does not say.
	Remaining time.Duration
	// Keys are the keys attached to the lease (LeaseInfo only).
	Keys [][]byte
	// Index is the raft index of the entry that answered a grant,
	// keepalive or revoke; for LeaseInfo and Leases, the applied index the
	// answer reflects.
	Index uint64
}

// RevokeResult describes a revoked lease.
type RevokeResult struct {
	ID LeaseID
	// Deleted counts the keys the revoke removed (all those attached).
	Deleted int64
	// Index is the raft index of the entry that revoked it.
	Index uint64
}

// ValidateTTL checks a lease TTL against [min, MaxLeaseTTL], where min is
// the node's lower bound (twice its election timeout). The error wraps
// ErrBadRequest and states the bound.
func ValidateTTL(ttl, min time.Duration) error {
	switch {
	case ttl <= 0:
		return fmt.Errorf("%w: ttl must be positive (from %s to %s)", ErrBadRequest, min, MaxLeaseTTL)
	case ttl < min:
		return fmt.Errorf("%w: ttl %s is below the minimum of %s (twice the election timeout)", ErrBadRequest, ttl, min)
	case ttl > MaxLeaseTTL:
		return fmt.Errorf("%w: ttl %s is above the maximum of %s", ErrBadRequest, ttl, MaxLeaseTTL)
	case ttl%time.Millisecond != 0:
		return fmt.Errorf("%w: ttl %s is finer than a millisecond", ErrBadRequest, ttl)
	}
	return nil
}

// ParseTTL parses a TTL as the HTTP API writes it: a Go duration ("10s",
// "1m30s"). The error wraps ErrBadRequest.
func ParseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: ttl %q is not a duration such as \"10s\"", ErrBadRequest, s)
	}
	return d, nil
}

// Duration is a time.Duration that travels in JSON as a Go duration
// string ("10s"); a JSON number is read as seconds.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string, or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(b, &secs); err != nil {
			return fmt.Errorf("%w: duration %s is neither a string such as \"10s\" nor a number of seconds", ErrBadRequest, b)
		}
		if secs > float64(MaxLeaseTTL/time.Second)*1000 || secs < -float64(MaxLeaseTTL/time.Second)*1000 {
			return fmt.Errorf("%w: duration %s is out of range", ErrBadRequest, b)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := ParseTTL(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// LeaseJSON is the wire form of a Lease.
type LeaseJSON struct {
	ID        LeaseID  `json:"id"`
	TTL       Duration `json:"ttl"`
	Remaining *string  `json:"remaining,omitempty"`
	Keys      []string `json:"keys,omitempty"`
	// KeysBase64 holds the attached keys that are not valid UTF-8.
	KeysBase64 []string `json:"keys_base64,omitempty"`
	Index      uint64   `json:"index,omitempty"`
}

// EncodeLease converts l to its wire form; withRemaining includes the
// remaining time.
func EncodeLease(l Lease, withRemaining bool) LeaseJSON {
	out := LeaseJSON{ID: l.ID, TTL: Duration(l.TTL), Index: l.Index}
	if withRemaining {
		r := l.Remaining.Round(time.Millisecond).String()
		out.Remaining = &r
	}
	for _, k := range l.Keys {
		s, b := EncodeBytes(k)
		if b != "" {
			out.KeysBase64 = append(out.KeysBase64, b)
		} else {
			out.Keys = append(out.Keys, s)
		}
	}
	return out
}

// Lease converts the wire form back to a Lease.
func (l LeaseJSON) Lease() (Lease, error) {
	out := Lease{ID: l.ID, TTL: time.Duration(l.TTL), Index: l.Index}
	if l.Remaining != nil {
		r, err := time.ParseDuration(*l.Remaining)
		if err != nil {
			return Lease{}, fmt.Errorf("remaining: %w", err)
		}
		out.Remaining = r
	}
	for _, k := range l.Keys {
		out.Keys = append(out.Keys, []byte(k))
	}
	for _, k := range l.KeysBase64 {
		b, err := DecodeBytes("", k)
		if err != nil {
			return Lease{}, fmt.Errorf("keys_base64: %w", err)
		}
		out.Keys = append(out.Keys, b)
	}
	return out, nil
}
