package kv

import (
	"encoding/base64"
	"encoding/json"
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
	Lease       LeaseID `json:"lease,omitempty"`
}

// EncodeRecord converts a record to its wire form; keysOnly leaves the value out.
func EncodeRecord(r Record, keysOnly bool) RecordJSON {
	out := RecordJSON{CreateIndex: r.CreateIndex, ModIndex: r.ModIndex, Version: r.Version, Lease: r.Lease}
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
	out := Record{Key: key, CreateIndex: r.CreateIndex, ModIndex: r.ModIndex, Version: r.Version, Lease: r.Lease}
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
	// Lease is the lease the key is attached to now (?lease, or the lease
	// a ?ttl granted), absent for none.
	Lease LeaseID `json:"lease,omitempty"`
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
	// AppliedIndex is set on a read that timed out waiting for min_index:
	// the index the node had applied.
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	// OldestIndex and CurrentIndex are set on a compacted error (410, or
	// the last line of a watch): the history the node keeps.
	OldestIndex  uint64 `json:"oldest_index,omitempty"`
	CurrentIndex uint64 `json:"current_index,omitempty"`
}

// ClusterInfo is the body of GET /v1/cluster.
type ClusterInfo struct {
	// ID of the node that answered.
	ID string `json:"id"`
	// ClusterID is the cluster's identity as the answering node knows it:
	// empty until the first leader has committed it (or, on a node that
	// joins, until it has caught up).
	ClusterID string `json:"cluster_id"`
	// ProtocolVersion is the member protocol the answering node speaks
	// (ProtocolVersion of its build).
	ProtocolVersion int `json:"protocol_version"`
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
	// Lag is set on the leader's answer for a non-voter it has checked:
	// how many entries the non-voter's applied index was behind the
	// leader's last index at the last check. Absent when unknown (not
	// the leader, not checked yet, or the non-voter did not answer).
	Lag *uint64 `json:"lag,omitempty"`
	// CaughtUp is set with Lag: how many checks in a row found the
	// non-voter within the promotion lag (promoted at PromoteRounds).
	CaughtUp int `json:"caught_up,omitempty"`
}

// The suffrage of a member (NodeInfo.Suffrage, JoinRequest.Suffrage).
const (
	Voter    = "voter"
	Nonvoter = "nonvoter"
)

// JoinRequest is the body of POST /v1/cluster/nodes: add a member (or
// re-address one) and record its API address.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// Suffrage of a new member: Nonvoter (also when empty) adds it as a
	// non-voter, which the leader promotes to voter once it has caught
	// up; Voter adds it as a voter at once. A member already in the
	// configuration keeps its suffrage (a voter is never demoted by a
	// join, a non-voter is promoted only when caught up or by hand).
	Suffrage string `json:"suffrage,omitempty"`
}

// RemoveOptions adjust a member's removal (DELETE /v1/cluster/nodes/{id}).
type RemoveOptions struct {
	// Force removes the member even when the voters left would be fewer
	// live ones than a quorum of the new configuration
	// (ErrWouldLoseQuorum otherwise).
	Force bool
}

// MemberChange is the body of a successful membership change: POST
// /v1/cluster/nodes/{id}/promote and DELETE /v1/cluster/nodes/{id}.
type MemberChange struct {
	// Status is "ok".
	Status string `json:"status"`
	// Voters is the number of voters in the configuration after the change.
	Voters int `json:"voters"`
	// Warning, when set, says why the configuration is not a good one to
	// stay in (an even number of voters tolerates no more failures than
	// one fewer).
	Warning string `json:"warning,omitempty"`
}

// SnapshotInfo describes a snapshot stream (GET /v1/snapshot): the
// applied index and term of the state it carries (headers X-Raft-Index,
// X-Raft-Term) and its length in bytes (X-Snapshot-Size).
type SnapshotInfo struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Size  int64  `json:"size"`
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

// TxnRequest is the body of POST /v1/txn.
type TxnRequest struct {
	Compare []CompareJSON `json:"compare"`
	Success []TxnOpJSON   `json:"success"`
	Failure []TxnOpJSON   `json:"failure"`
}

// CompareJSON is one compare on the wire. Value is a JSON string for the
// value target (or value_base64 for bytes), a number for the index and
// version targets and for the lock target (the fencing token; Key is then
// the lock's name), a boolean for exists.
type CompareJSON struct {
	Key         string          `json:"key,omitempty"`
	KeyBase64   string          `json:"key_base64,omitempty"`
	Target      CompareTarget   `json:"target"`
	Op          CompareOp       `json:"op"`
	Value       json.RawMessage `json:"value,omitempty"`
	ValueBase64 string          `json:"value_base64,omitempty"`
}

// TxnOpJSON is one op on the wire.
type TxnOpJSON struct {
	Op          TxnOpType `json:"op"`
	Key         string    `json:"key,omitempty"`
	KeyBase64   string    `json:"key_base64,omitempty"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 *string   `json:"value_base64,omitempty"`
	// Lease attaches a put's key to this lease (absent: none).
	Lease LeaseID `json:"lease,omitempty"`
}

// TxnResponse is the answer to POST /v1/txn.
type TxnResponse struct {
	Succeeded bool              `json:"succeeded"`
	Index     uint64            `json:"index"`
	Results   []TxnOpResultJSON `json:"results"`
}

// TxnOpResultJSON is one op's result: put carries the key and its new
// indexes, delete and delete_prefix the count, get found and (when found)
// the record.
type TxnOpResultJSON struct {
	Op      TxnOpType   `json:"op"`
	Deleted *int64      `json:"deleted,omitempty"`
	Found   *bool       `json:"found,omitempty"`
	Record  *RecordJSON `json:"record,omitempty"`
}

// EncodeTxn converts a transaction to its wire form.
func EncodeTxn(t Txn) TxnRequest {
	out := TxnRequest{Compare: []CompareJSON{}, Success: encodeOps(t.Success), Failure: encodeOps(t.Failure)}
	for _, c := range t.Compare {
		cj := CompareJSON{Target: c.Target, Op: c.Op}
		cj.Key, cj.KeyBase64 = EncodeBytes(c.Key)
		switch c.Target {
		case TargetValue:
			s, b64 := EncodeBytes(c.Value)
			if b64 != "" {
				cj.ValueBase64 = b64
			} else {
				cj.Value, _ = json.Marshal(s)
			}
		case TargetExists:
			cj.Value, _ = json.Marshal(c.Exists)
		default:
			cj.Value, _ = json.Marshal(c.Number)
		}
		out.Compare = append(out.Compare, cj)
	}
	return out
}

func encodeOps(ops []TxnOp) []TxnOpJSON {
	out := []TxnOpJSON{}
	for _, op := range ops {
		oj := TxnOpJSON{Op: op.Type, Lease: op.Lease}
		oj.Key, oj.KeyBase64 = EncodeBytes(op.Key)
		if op.Type == TxnPut {
			s, b64 := EncodeBytes(op.Value)
			if b64 != "" {
				oj.ValueBase64 = &b64
			} else {
				oj.Value = &s
			}
		}
		out = append(out, oj)
	}
	return out
}

// Txn converts the wire form back, checking every field's type; the
// errors wrap ErrBadRequest.
func (r TxnRequest) Txn() (Txn, error) {
	var t Txn
	for i, cj := range r.Compare {
		key, err := DecodeBytes(cj.Key, cj.KeyBase64)
		if err != nil {
			return Txn{}, fmt.Errorf("compare %d: %w", i, err)
		}
		c := Compare{Key: key, Target: cj.Target, Op: cj.Op}
		bad := func(want string) error {
			return fmt.Errorf("%w: compare %d: target %q takes %s as value", ErrBadRequest, i, cj.Target, want)
		}
		switch cj.Target {
		case TargetValue:
			if cj.ValueBase64 != "" {
				if c.Value, err = DecodeBytes("", cj.ValueBase64); err != nil {
					return Txn{}, fmt.Errorf("compare %d: %w", i, err)
				}
				break
			}
			var s string
			if json.Unmarshal(cj.Value, &s) != nil {
				return Txn{}, bad("a string (or value_base64)")
			}
			c.Value = []byte(s)
		case TargetExists:
			if json.Unmarshal(cj.Value, &c.Exists) != nil {
				return Txn{}, bad("true or false")
			}
		case TargetModIndex, TargetCreateIndex, TargetVersion, TargetLock:
			if json.Unmarshal(cj.Value, &c.Number) != nil {
				return Txn{}, bad("a whole number")
			}
		default:
			return Txn{}, fmt.Errorf("%w: compare %d: unknown target %q", ErrBadRequest, i, cj.Target)
		}
		if cj.Target != TargetValue && cj.ValueBase64 != "" {
			return Txn{}, bad("no value_base64")
		}
		t.Compare = append(t.Compare, c)
	}
	var err error
	if t.Success, err = decodeOps("success", r.Success); err != nil {
		return Txn{}, err
	}
	if t.Failure, err = decodeOps("failure", r.Failure); err != nil {
		return Txn{}, err
	}
	return t, nil
}

func decodeOps(branch string, in []TxnOpJSON) ([]TxnOp, error) {
	var out []TxnOp
	for i, oj := range in {
		key, err := DecodeBytes(oj.Key, oj.KeyBase64)
		if err != nil {
			return nil, fmt.Errorf("%s op %d: %w", branch, i, err)
		}
		op := TxnOp{Type: oj.Op, Key: key, Lease: oj.Lease}
		switch {
		case oj.ValueBase64 != nil:
			if op.Value, err = DecodeBytes("", *oj.ValueBase64); err != nil {
				return nil, fmt.Errorf("%s op %d: %w", branch, i, err)
			}
		case oj.Value != nil:
			op.Value = []byte(*oj.Value)
		}
		if oj.Op == TxnPut && op.Value == nil {
			op.Value = []byte{}
		}
		out = append(out, op)
	}
	return out, nil
}

// EncodeTxnResult converts a result to its wire form.
func EncodeTxnResult(r TxnResult) TxnResponse {
	out := TxnResponse{Succeeded: r.Succeeded, Index: r.Index, Results: []TxnOpResultJSON{}}
	for _, o := range r.Results {
		oj := TxnOpResultJSON{Op: o.Type}
		switch o.Type {
		case TxnPut:
			rec := EncodeRecord(Record{Key: o.Put.Key, CreateIndex: o.Put.CreateIndex, ModIndex: o.Put.ModIndex, Version: o.Put.Version}, true)
			oj.Record = &rec
		case TxnDelete, TxnDeletePrefix:
			d := o.Deleted
			oj.Deleted = &d
		case TxnGet:
			found := o.Record != nil
			oj.Found = &found
			if found {
				rec := EncodeRecord(*o.Record, false)
				oj.Record = &rec
			}
		}
		out.Results = append(out.Results, oj)
	}
	return out
}

// TxnResult converts the wire form back.
func (r TxnResponse) TxnResult() (TxnResult, error) {
	out := TxnResult{Succeeded: r.Succeeded, Index: r.Index}
	for i, oj := range r.Results {
		o := TxnOpResult{Type: oj.Op}
		if oj.Deleted != nil {
			o.Deleted = *oj.Deleted
		}
		if oj.Record != nil {
			rec, err := oj.Record.Record()
			if err != nil {
				return TxnResult{}, fmt.Errorf("result %d: %w", i, err)
			}
			if oj.Op == TxnPut {
				o.Put = PutResult{Key: rec.Key, CreateIndex: rec.CreateIndex, ModIndex: rec.ModIndex, Version: rec.Version}
			} else {
				if rec.Value == nil {
					rec.Value = []byte{}
				}
				o.Record = &rec
			}
		}
		out.Results = append(out.Results, o)
	}
	return out, nil
}
