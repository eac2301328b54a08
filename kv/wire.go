package kv

import (
	"encoding/base64"
	"fmt"
	"unicode/utf8"
)

// The JSON shapes of the HTTP API (docs/http-api.md). The server writes them
// and the Go client reads them, so both live here. Byte strings (keys and
// values) travel as a JSON string when they are valid UTF-8 and as base64 in
// a sibling *_base64 field otherwise, so binary data is never mangled.

// RecordJSON is a record on the wire.
type RecordJSON struct {
	Key         string  `json:"key,omitempty"`
	KeyBase64   string  `json:"key_base64,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	CreateIndex uint64  `json:"create_index"`
	ModIndex    uint64  `json:"mod_index"`
	Version     uint64  `json:"version"`
}

// EncodeRecord converts a record to its wire form; keysOnly leaves the value out.
func EncodeRecord(r Record, keysOnly bool) RecordJSON {
	out := RecordJSON{CreateIndex: r.CreateIndex, ModIndex: r.ModIndex, Version: r.Version}
	out.Key, out.KeyBase64 = EncodeBytes(r.Key)
	if !keysOnly {
		s, b := EncodeBytes(r.Value)
		if b != "" {
			out.ValueBase64 = &b
		} else {
			out.Value = &s
		}
	}
	return out
}

// Record converts the wire form back to a Record.
func (r RecordJSON) Record() (Record, error) {
	key, err := DecodeBytes(r.Key, r.KeyBase64)
	if err != nil {
		return Record{}, fmt.Errorf("key: %w", err)
	}
	out := Record{Key: key, CreateIndex: r.CreateIndex, ModIndex: r.ModIndex, Version: r.Version}
	switch {
	case r.ValueBase64 != nil:
		if out.Value, err = base64.StdEncoding.DecodeString(*r.ValueBase64); err != nil {
			return Record{}, fmt.Errorf("value_base64: %w", err)
		}
	case r.Value != nil:
		out.Value = []byte(*r.Value)
	}
	return out, nil
}

// EncodeBytes returns b as a string when it is valid UTF-8, else as base64
// in the second result (the first then is empty).
func EncodeBytes(b []byte) (str, b64 string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}

// DecodeBytes is the inverse of EncodeBytes.
func DecodeBytes(str, b64 string) ([]byte, error) {
	if b64 != "" {
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("%w: bad base64: %w", ErrBadRequest, err)
		}
		return b, nil
	}
	return []byte(str), nil
}

// PutResponse is the body of a successful PUT /v1/kv/{key}.
type PutResponse struct {
	Key         string `json:"key,omitempty"`
	KeyBase64   string `json:"key_base64,omitempty"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
	Version     uint64 `json:"version"`
}

// DeleteResponse is the body of a DELETE /v1/kv/{key}.
type DeleteResponse struct {
	Deleted int64  `json:"deleted"`
	Index   uint64 `json:"index"`
}

// ListResponse is the body of GET /v1/kv/{prefix}?prefix.
type ListResponse struct {
	Items      []RecordJSON `json:"items"`
	More       bool         `json:"more"`
	Next       string       `json:"next,omitempty"`
	NextBase64 string       `json:"next_base64,omitempty"`
	Index      uint64       `json:"index"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody carries a stable code (see Code) and a human message.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ClusterInfo is the body of GET /v1/cluster.
type ClusterInfo struct {
	// ID of the node that answered.
	ID string `json:"id"`
	// LeaderID is empty when no leader is known.
	LeaderID     string `json:"leader_id"`
	LeaderAPI    string `json:"leader_api,omitempty"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// State of the answering node: leader, follower, candidate, shutdown.
	State string `json:"state"`
	// Bootstrapped reports whether the answering node has raft state (is a
	// member of a cluster); a node waiting for --bootstrap-expect peers is not.
	Bootstrapped bool       `json:"bootstrapped"`
	RaftAddr     string     `json:"raft_addr"`
	APIAddr      string     `json:"api_addr"`
	Nodes        []NodeInfo `json:"nodes"`
}

// NodeInfo is one member of the raft configuration.
type NodeInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// APIAddr is the node's HTTP address (host:port), empty until it registered.
	APIAddr string `json:"api_addr"`
	// Suffrage is "voter" or "nonvoter".
	Suffrage string `json:"suffrage"`
	// State is "leader" or "follower" as far as the answering node knows.
	State string `json:"state"`
}

// JoinRequest is the body of POST /v1/cluster/nodes: add (or re-address)
// a voter and record its API address.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

// DigestInfo is the body of GET /v1/debug/hash: a digest of every key,
// value and index in the answering node's state machine. Nodes that
// applied the same entries report the same applied_index and sha256.
type DigestInfo struct {
	Node         string `json:"node"`
	AppliedIndex uint64 `json:"applied_index"`
	Keys         int64  `json:"keys"`
	SHA256       string `json:"sha256"`
}
