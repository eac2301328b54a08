package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/raftkv/raftkv/kv"
)

// The sentinel errors of package store. Callers branch on them with errors.Is.
var (
	// ErrBadCommand: a raft log entry does not decode as a Command of this
	// version (corruption, or an entry written by a newer version).
	ErrBadCommand = errors.New("bad command")
	// ErrBadSnapshot: a snapshot stream is truncated, corrupt, or not a
	// raftkv snapshot. Restore fails with it and keeps the old state.
	ErrBadSnapshot = errors.New("bad snapshot")
)

// Op is the operation a Command performs. What each op is (its name, and
// the properties the layers above branch on) is its row in opTable.
type Op uint8

// The operations. Their numbers are part of the log format: never reuse one.
const (
	// OpNoop changes nothing but the applied index; the leader applies one
	// after each election.
	OpNoop Op = 1
	// OpPut writes Value to Key if Cond holds.
	OpPut Op = 2
	// OpDelete removes Key if Cond holds.
	OpDelete Op = 3
	// OpDeletePrefix removes every key that starts with Key (empty: all keys).
	OpDeletePrefix Op = 4
	// OpSetNode records Value as the API address of the raft server whose
	// id is Key, in the nodes bucket; an empty Value removes the entry.
	OpSetNode Op = 5
	// OpTxn runs Txn: compares, then the success or the failure ops.
	OpTxn Op = 6
	// OpLeaseGrant grants a lease of TTL milliseconds; its id is the next
	// in the store's lease sequence (Result.Lease).
	OpLeaseGrant Op = 7
	// OpLeaseKeepalive restarts Lease's TTL: its remaining time is its
	// TTL again, as of this entry.
	OpLeaseKeepalive Op = 8
	// OpLeaseRevoke removes Lease and deletes every key attached to it.
	// With IfKeepalive it applies only if the lease's last keepalive (or
	// its grant) was at that index: the leader expires a lease so, and a
	// keepalive that reached the log first keeps it.
	OpLeaseRevoke Op = 9
	// OpLeaseCheckpoint records the remaining time of many leases, as the
	// leader's timers see them, so that a node that restarts resumes each
	// lease from it rather than from its full TTL.
	OpLeaseCheckpoint Op = 10
	// OpSetCluster records Value as the cluster's identity, if it has none
	// yet (a later one changes nothing: Result.ClusterID is the identity
	// in force). The first leader of a cluster commits it (protocol
	// version 2).
	OpSetCluster Op = 11
	// OpACLBootstrap turns access control on (store/acl.go): Key is the
	// root token's secret hash, Value the members' secret. On a state
	// bootstrapped already, an empty Value (a reset) adds a root token with
	// Key's hash, and any other is a no-op. Only a leader appends it.
	OpACLBootstrap Op = 12
	// OpACLTokenCreate creates a token: Key is its secret's SHA-256, Value
	// its description and rules (EncodeACLToken); its id is the next in
	// the token sequence (Result.Token).
	OpACLTokenCreate Op = 13
	// OpACLTokenDelete revokes token Token.
	OpACLTokenDelete Op = 14
)

// opInfo is what the layers above need to know of an op.
type opInfo struct {
	// name is what Op.String returns; empty for a number that is not an
	// op (never assigned, or retired: numbers are never reused).
	name string
	// touchesMany: the op may change keys other than its Key. Commands of
	// one entry share its index, so group commit puts such a command in
	// an entry of its own (two changes of one key must never share a
	// mod_index).
	touchesMany bool
	// forwardable: a write of the public API, which a follower may
	// forward to the leader. Internal ops (noop, set_node) are not.
	forwardable bool
	// alone: the op travels in an entry of its own although it touches
	// no key, because members of the previous protocol version cannot
	// decode it: such a member skips the whole entry (ErrBadCommand),
	// which must then hold nothing else. Every op added from protocol
	// version 2 on sets it.
	alone bool
}

// opTable has one row per op, indexed by its number. A new op needs:
//
//   - a constant above, with the next unused number (never a retired one),
//     and a row here (its name and flags; when unsure, touchesMany);
//   - its body in Command.appendBody and decoder.command, and its shape
//     in Command.check (EncodeEntry's comment and docs/architecture.md
//     describe the encoding);
//   - its effect in Store.applyCommand (and its Result fields);
//   - an example in opExamples (command_test.go): TestEveryOp walks every
//     row through encode, decode and apply, and checks the flags against
//     what apply changes; it fails for an op without one.
//
// opEnd follows from the table's length: nothing else to update.
var opTable = [...]opInfo{
	OpNoop:         {name: "noop"},
	OpPut:          {name: "put", forwardable: true},
	OpDelete:       {name: "delete", forwardable: true},
	OpDeletePrefix: {name: "delete_prefix", touchesMany: true, forwardable: true},
	OpSetNode:      {name: "set_node"},
	OpTxn:          {name: "txn", touchesMany: true, forwardable: true},
	// Grants, keepalives and checkpoints touch no key, so group commit
	// may share their entries.
	OpLeaseGrant:      {name: "lease_grant", forwardable: true},
	OpLeaseKeepalive:  {name: "lease_keepalive", forwardable: true},
	OpLeaseRevoke:     {name: "lease_revoke", touchesMany: true, forwardable: true},
	OpLeaseCheckpoint: {name: "lease_checkpoint"},
	// Protocol version 2.
	OpSetCluster: {name: "set_cluster", alone: true},
	// ACL ops touch no key either, but they are of protocol version 2
	// too: alone in their entries, so that a member of version 1 skips
	// only them.
	OpACLBootstrap:   {name: "acl_bootstrap", alone: true},
	OpACLTokenCreate: {name: "acl_token_create", forwardable: true, alone: true},
	OpACLTokenDelete: {name: "acl_token_delete", forwardable: true, alone: true},
}

// opEnd is one past the last op: every op is in [OpNoop, opEnd).
const opEnd = Op(len(opTable))

// Valid reports whether op is an op of this version (a decoded entry
// holds only valid ops).
func (op Op) Valid() bool { return op >= OpNoop && op < opEnd && opTable[op].name != "" }

func (op Op) String() string {
	if op.Valid() {
		return opTable[op].name
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// TouchesMany reports whether a command of op may change keys other than
// its Key: it must then travel alone in its log entry (group commit). It is
// true for an invalid op, which is never grouped with others.
func (op Op) TouchesMany() bool { return !op.Valid() || opTable[op].touchesMany }

// Alone reports whether a command of op must travel alone in its log
// entry: it may touch many keys (TouchesMany), or older members cannot
// decode it (see opInfo.alone). Group commit puts it in an entry of its
// own.
func (op Op) Alone() bool { return op.TouchesMany() || opTable[op].alone }

// Forwardable reports whether op is a write of the public API (put, delete,
// delete_prefix, txn), which a follower may forward to the leader; internal
// ops (noop, set_node) and invalid ones are not.
func (op Op) Forwardable() bool { return op.Valid() && opTable[op].forwardable }

// Command is one write request. A raft LogCommand entry carries one or more
// (EncodeEntry), each applied in turn with its own Result.
type Command struct {
	Op    Op
	Key   []byte
	Value []byte
	Cond  kv.Condition
	// Txn is the transaction of an OpTxn.
	Txn *kv.Txn
	// IdemKey, when set, makes the command idempotent: the state machine
	// remembers the key and the command's result for IdempotencyWindow log
	// entries, and a command with the same key returns that result instead
	// of applying again (or ErrIdempotencyKeyReused when it differs).
	IdemKey []byte
	// Lease is the lease a keepalive or revoke acts on, or that a put
	// attaches its key to (0: none; the put detaches the key).
	Lease uint64
	// TTL, in milliseconds, is a grant's TTL, or that of a lease a put
	// grants for its key (then Lease must be 0).
	TTL uint64
	// IfKeepalive guards a revoke: see OpLeaseRevoke.
	IfKeepalive uint64
	// Checkpoints are an OpLeaseCheckpoint's remaining times.
	Checkpoints []LeaseCheckpoint
	// Token is the token an OpACLTokenDelete revokes.
	Token uint64
}

// LeaseCheckpoint is one lease's remaining time in an OpLeaseCheckpoint.
type LeaseCheckpoint struct {
	Lease uint64
	// Remaining is in milliseconds.
	Remaining uint64
}

// maxCheckpoints bounds the leases one OpLeaseCheckpoint may carry.
const maxCheckpoints = 1 << 20

// Size approximates the bytes c adds to an entry: its keys, values and
// idempotency key, plus a small fixed overhead. Batching bounds use it.
func (c *Command) Size() int {
	n := len(c.Key) + len(c.Value) + len(c.IdemKey) + 16 + 20*len(c.Checkpoints)
	if c.Txn != nil {
		for _, cmp := range c.Txn.Compare {
			n += len(cmp.Key) + len(cmp.Value)
		}
		for _, ops := range [][]kv.TxnOp{c.Txn.Success, c.Txn.Failure} {
			for _, op := range ops {
				n += len(op.Key) + len(op.Value)
			}
		}
	}
	return n
}

// entryVersion is the first byte of every encoded entry.
const entryVersion = 2

// Flags of a command.
const (
	flagIfAbsent = 1 << iota
	flagIdemKey
	// flagLeased: a put's body ends with its lease section.
	flagLeased
	flagsKnown = flagIfAbsent | flagIdemKey | flagLeased
)

// Bits of a put's lease section.
const (
	leaseSectionID  = 1
	leaseSectionTTL = 2
)

// Limits the decoder enforces before allocating.
const (
	maxEntryCommands = 1 << 16
)

// Encode appends an entry holding just c to dst.
func (c *Command) Encode(dst []byte) []byte {
	return EncodeEntry(dst, []*Command{c})
}

// EncodeEntry appends the encoding of an entry holding cmds to dst.
//
// Version 2 of the encoding is:
//
//	version byte (2) | uvarint count | count commands
//	command: op byte | flags byte (bit 0 IfAbsent, bit 1 IdemKey)
//	         [bytes IdemKey] | body
//	body by op:
//	  noop:           nothing
//	  put:            bytes Key | bytes Value | uvarint IfModIndex | [lease section]
//	  lease section:  (flag bit 2) byte bits | (bit 0) uvarint Lease | (bit 1) uvarint TTL
//	  delete:         bytes Key | uvarint IfModIndex
//	  delete_prefix:  bytes Key
//	  set_node:       bytes Key | bytes Value
//	  txn:            uvarint n | n compares | uvarint n | n ops | uvarint n | n ops
//	  compare:        bytes Key | byte target | byte op | bytes Value | uvarint Number | byte Exists
//	  op:             byte type | bytes Key | bytes Value | (type 5, a put with a lease) uvarint Lease
//	  lease_grant:    uvarint TTL
//	  lease_keepalive: uvarint Lease
//	  lease_revoke:   uvarint Lease | uvarint IfKeepalive
//	  lease_checkpoint: uvarint n | n × (uvarint Lease | uvarint Remaining)
//	  set_cluster:    bytes Value (the cluster id)
//	  acl_bootstrap:  bytes Key (hash) | bytes Value (members' secret, or none)
//	  acl_token_create: bytes Key (hash) | bytes Value (description and rules)
//	  acl_token_delete: uvarint Token
//
// where bytes is a uvarint length and that many bytes. EncodeEntry does not
// validate; DecodeEntry does.
func EncodeEntry(dst []byte, cmds []*Command) []byte {
	dst = append(dst, entryVersion)
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for _, c := range cmds {
		dst = c.appendTo(dst)
	}
	return dst
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func (c *Command) appendTo(dst []byte) []byte {
	dst = slices.Grow(dst, 4+3*binary.MaxVarintLen64+len(c.Key)+len(c.Value)+len(c.IdemKey))
	var flags byte
	if c.Cond.IfAbsent {
		flags |= flagIfAbsent
	}
	if len(c.IdemKey) > 0 {
		flags |= flagIdemKey
	}
	if c.Op == OpPut && (c.Lease != 0 || c.TTL != 0) {
		flags |= flagLeased
	}
	dst = append(dst, byte(c.Op), flags)
	if len(c.IdemKey) > 0 {
		dst = appendBytes(dst, c.IdemKey)
	}
	return c.appendBody(dst)
}

// appendBody appends what the command does, without its idempotency key:
// the bytes its fingerprint is taken of.
func (c *Command) appendBody(dst []byte) []byte {
	switch c.Op {
	case OpNoop:
	case OpPut:
		dst = appendBytes(dst, c.Key)
		dst = appendBytes(dst, c.Value)
		dst = binary.AppendUvarint(dst, c.Cond.IfModIndex)
		// The section is last and present only for a leased put: the
		// body of a put without one is a strict prefix, so the two never
		// share a fingerprint.
		if c.Lease != 0 || c.TTL != 0 {
			var bits byte
			if c.Lease != 0 {
				bits |= leaseSectionID
			}
			if c.TTL != 0 {
				bits |= leaseSectionTTL
			}
			dst = append(dst, bits)
			if c.Lease != 0 {
				dst = binary.AppendUvarint(dst, c.Lease)
			}
			if c.TTL != 0 {
				dst = binary.AppendUvarint(dst, c.TTL)
			}
		}
	case OpLeaseGrant:
		dst = binary.AppendUvarint(dst, c.TTL)
	case OpLeaseKeepalive:
		dst = binary.AppendUvarint(dst, c.Lease)
	case OpLeaseRevoke:
		dst = binary.AppendUvarint(dst, c.Lease)
		dst = binary.AppendUvarint(dst, c.IfKeepalive)
	case OpLeaseCheckpoint:
		dst = binary.AppendUvarint(dst, uint64(len(c.Checkpoints)))
		for _, cp := range c.Checkpoints {
			dst = binary.AppendUvarint(dst, cp.Lease)
			dst = binary.AppendUvarint(dst, cp.Remaining)
		}
	case OpDelete:
		dst = appendBytes(dst, c.Key)
		dst = binary.AppendUvarint(dst, c.Cond.IfModIndex)
	case OpDeletePrefix:
		dst = appendBytes(dst, c.Key)
	case OpSetNode, OpACLBootstrap, OpACLTokenCreate:
		dst = appendBytes(dst, c.Key)
		dst = appendBytes(dst, c.Value)
	case OpSetCluster:
		dst = appendBytes(dst, c.Value)
	case OpACLTokenDelete:
		dst = binary.AppendUvarint(dst, c.Token)
	case OpTxn:
		t := c.Txn
		if t == nil {
			t = &kv.Txn{}
		}
		dst = binary.AppendUvarint(dst, uint64(len(t.Compare)))
		for _, cmp := range t.Compare {
			dst = appendBytes(dst, cmp.Key)
			dst = append(dst, targetCode[cmp.Target], compareCode[cmp.Op])
			dst = appendBytes(dst, cmp.Value)
			dst = binary.AppendUvarint(dst, cmp.Number)
			dst = append(dst, boolByte(cmp.Exists))
		}
		for _, ops := range [][]kv.TxnOp{t.Success, t.Failure} {
			dst = binary.AppendUvarint(dst, uint64(len(ops)))
			for _, op := range ops {
				code := txnOpCode[op.Type]
				if op.Type == kv.TxnPut && op.Lease != 0 {
					code = txnPutLeaseCode
				}
				dst = append(dst, code)
				dst = appendBytes(dst, op.Key)
				dst = appendBytes(dst, op.Value)
				if code == txnPutLeaseCode {
					dst = binary.AppendUvarint(dst, uint64(op.Lease))
				}
			}
		}
	}
	return dst
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// Wire codes of the transaction vocabulary. Part of the log format.
var (
	targetCode  = map[kv.CompareTarget]byte{kv.TargetValue: 1, kv.TargetModIndex: 2, kv.TargetCreateIndex: 3, kv.TargetVersion: 4, kv.TargetExists: 5, kv.TargetLock: 6}
	compareCode = map[kv.CompareOp]byte{kv.OpEqual: 1, kv.OpNotEqual: 2, kv.OpLess: 3, kv.OpGreater: 4}
	txnOpCode   = map[kv.TxnOpType]byte{kv.TxnPut: 1, kv.TxnDelete: 2, kv.TxnDeletePrefix: 3, kv.TxnGet: 4}
)

// txnPutLeaseCode is the wire code of a txn put that attaches its key to
// a lease: the op is followed by the lease id.
const txnPutLeaseCode = 5

func decodeCode[T comparable](codes map[T]byte, b byte) (T, bool) {
	for k, v := range codes {
		if v == b {
			return k, true
		}
	}
	var zero T
	return zero, false
}

// DecodeCommand decodes an entry that must hold exactly one command.
func DecodeCommand(b []byte) (Command, error) {
	cmds, err := DecodeEntry(b)
	if err != nil {
		return Command{}, err
	}
	if len(cmds) != 1 {
		return Command{}, fmt.Errorf("%w: entry holds %d commands, want 1", ErrBadCommand, len(cmds))
	}
	return cmds[0], nil
}

// DecodeEntry decodes an entry encoded by EncodeEntry and checks that every
// command is well formed for its op. It never panics: any malformed input
// (unknown version, op, flag or code, truncation, trailing bytes, lengths
// beyond the input, a missing or oversized key, fields the op does not
// take) yields an error wrapping ErrBadCommand.
//
// Keys and values share memory with b; empty fields are nil.
func DecodeEntry(b []byte) ([]Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrBadCommand, len(b))
	}
	if b[0] != entryVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrBadCommand, b[0])
	}
	d := decoder{b: b[1:]}
	n := d.count("commands", maxEntryCommands)
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, d.err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: entry holds no command", ErrBadCommand)
	}
	cmds := make([]Command, 0, n)
	for i := range n {
		c, err := d.command()
		if err != nil {
			return nil, fmt.Errorf("%w: command %d: %v", ErrBadCommand, i, err)
		}
		cmds = append(cmds, c)
	}
	if len(d.b) > 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, len(d.b))
	}
	return cmds, nil
}

func (d *decoder) command() (Command, error) {
	c := Command{Op: Op(d.byte("op"))}
	flags := d.byte("flags")
	if d.err != nil {
		return c, d.err
	}
	if !c.Op.Valid() {
		return c, fmt.Errorf("unknown op %d", c.Op)
	}
	if flags&^flagsKnown != 0 || flags&flagLeased != 0 && c.Op != OpPut {
		return c, fmt.Errorf("%v: unknown flags %#x", c.Op, flags)
	}
	c.Cond.IfAbsent = flags&flagIfAbsent != 0
	if flags&flagIdemKey != 0 {
		c.IdemKey = d.bytes("idempotency key")
		if d.err == nil && (len(c.IdemKey) == 0 || len(c.IdemKey) > kv.MaxIdempotencyKeySize) {
			return c, fmt.Errorf("%v: idempotency key of %d bytes", c.Op, len(c.IdemKey))
		}
	}
	switch c.Op {
	case OpNoop:
	case OpPut:
		c.Key = d.bytes("key")
		c.Value = d.bytes("value")
		c.Cond.IfModIndex = d.uvarint("if_mod_index")
		if flags&flagLeased != 0 {
			bits := d.byte("lease section")
			if d.err == nil && (bits == 0 || bits&^(leaseSectionID|leaseSectionTTL) != 0) {
				return c, fmt.Errorf("%v: bad lease section %#x", c.Op, bits)
			}
			if bits&leaseSectionID != 0 {
				c.Lease = d.uvarint("lease")
			}
			if bits&leaseSectionTTL != 0 {
				c.TTL = d.uvarint("ttl")
			}
			if d.err == nil && (bits&leaseSectionID != 0 && c.Lease == 0 || bits&leaseSectionTTL != 0 && c.TTL == 0) {
				return c, fmt.Errorf("%v: lease section with a zero field", c.Op)
			}
		}
	case OpLeaseGrant:
		c.TTL = d.uvarint("ttl")
	case OpLeaseKeepalive:
		c.Lease = d.uvarint("lease")
	case OpLeaseRevoke:
		c.Lease = d.uvarint("lease")
		c.IfKeepalive = d.uvarint("if_keepalive")
	case OpLeaseCheckpoint:
		n := d.count("checkpoints", maxCheckpoints)
		for range n {
			cp := LeaseCheckpoint{Lease: d.uvarint("lease"), Remaining: d.uvarint("remaining")}
			if d.err != nil {
				break
			}
			c.Checkpoints = append(c.Checkpoints, cp)
		}
	case OpDelete:
		c.Key = d.bytes("key")
		c.Cond.IfModIndex = d.uvarint("if_mod_index")
	case OpDeletePrefix:
		c.Key = d.bytes("prefix")
	case OpSetNode, OpACLBootstrap, OpACLTokenCreate:
		c.Key = d.bytes("key")
		c.Value = d.bytes("value")
	case OpSetCluster:
		c.Value = d.bytes("cluster id")
	case OpACLTokenDelete:
		c.Token = d.uvarint("token")
	case OpTxn:
		c.Txn = d.txn()
	default: // an op in opTable without a body here
		return c, fmt.Errorf("%v: no decoder", c.Op)
	}
	if d.err != nil {
		return c, fmt.Errorf("%v: %v", c.Op, d.err)
	}
	if err := c.check(); err != nil {
		return c, fmt.Errorf("%v: %v", c.Op, err)
	}
	return c, nil
}

func (d *decoder) txn() *kv.Txn {
	t := &kv.Txn{}
	n := d.count("compares", kv.MaxTxnOps)
	for range n {
		var cmp kv.Compare
		var ok1, ok2 bool
		cmp.Key = d.bytes("compare key")
		cmp.Target, ok1 = decodeCode(targetCode, d.byte("compare target"))
		cmp.Op, ok2 = decodeCode(compareCode, d.byte("compare op"))
		cmp.Value = d.bytes("compare value")
		cmp.Number = d.uvarint("compare number")
		ex := d.byte("compare exists")
		if d.err != nil {
			return nil
		}
		if !ok1 || !ok2 || ex > 1 {
			d.err = errors.New("bad compare code")
			return nil
		}
		cmp.Exists = ex == 1
		t.Compare = append(t.Compare, cmp)
	}
	for _, ops := range []*[]kv.TxnOp{&t.Success, &t.Failure} {
		n := d.count("ops", kv.MaxTxnOps)
		for range n {
			code := d.byte("op type")
			typ, ok := decodeCode(txnOpCode, code)
			if code == txnPutLeaseCode {
				typ, ok = kv.TxnPut, true
			}
			op := kv.TxnOp{Type: typ, Key: d.bytes("op key"), Value: d.bytes("op value")}
			if code == txnPutLeaseCode {
				op.Lease = kv.LeaseID(d.uvarint("op lease"))
				if d.err == nil && op.Lease == 0 {
					d.err = errors.New("leased txn put with lease 0")
				}
			}
			if d.err != nil {
				return nil
			}
			if !ok {
				d.err = errors.New("bad txn op code")
				return nil
			}
			*ops = append(*ops, op)
		}
	}
	return t
}

// count reads a uvarint count of at most limit.
func (d *decoder) count(field string, limit int) int {
	n := d.uvarint(field)
	if d.err == nil && n > uint64(limit) {
		d.err = fmt.Errorf("%s: %d is over the limit of %d", field, n, limit)
		return 0
	}
	return int(n)
}

// check enforces the per-op shape, so Apply can rely on it.
func (c *Command) check() error {
	if c.Op != OpTxn && c.Txn != nil {
		return errors.New("takes no transaction")
	}
	if c.Op != OpLeaseCheckpoint && len(c.Checkpoints) > 0 {
		return errors.New("takes no checkpoints")
	}
	if c.Op != OpLeaseRevoke && c.IfKeepalive != 0 {
		return errors.New("takes no keepalive condition")
	}
	if c.Op != OpACLTokenDelete && c.Token != 0 {
		return errors.New("takes no token")
	}
	switch c.Op {
	case OpPut:
		if c.Lease != 0 && c.TTL != 0 {
			return errors.New("takes a lease or a ttl, not both")
		}
		if c.TTL > maxTTLMillis {
			return fmt.Errorf("ttl of %d ms is over the limit", c.TTL)
		}
	case OpLeaseGrant:
		if c.Lease != 0 || c.TTL == 0 || c.TTL > maxTTLMillis {
			return fmt.Errorf("takes only a ttl from 1 to %d ms", maxTTLMillis)
		}
	case OpLeaseKeepalive, OpLeaseRevoke:
		if c.Lease == 0 || c.TTL != 0 {
			return errors.New("takes only a lease")
		}
	case OpLeaseCheckpoint:
		if c.Lease != 0 || c.TTL != 0 {
			return errors.New("takes only checkpoints")
		}
	default:
		if c.Lease != 0 || c.TTL != 0 {
			return errors.New("takes no lease")
		}
	}
	if c.Op >= OpLeaseGrant && c.Op <= OpLeaseCheckpoint && (len(c.Key) > 0 || len(c.Value) > 0 || !c.Cond.IsZero()) {
		return errors.New("takes no key, value or condition")
	}
	switch c.Op {
	case OpNoop:
		if len(c.Key) > 0 || len(c.Value) > 0 || !c.Cond.IsZero() {
			return errors.New("takes no fields")
		}
	case OpPut:
		return kv.ValidateKey(c.Key)
	case OpDelete:
		if len(c.Value) > 0 {
			return errors.New("takes no value")
		}
		return kv.ValidateKey(c.Key)
	case OpDeletePrefix:
		if len(c.Value) > 0 || !c.Cond.IsZero() {
			return errors.New("takes only a prefix")
		}
		if len(c.Key) > kv.MaxKeySize {
			return fmt.Errorf("prefix is %d bytes, the limit is %d", len(c.Key), kv.MaxKeySize)
		}
	case OpSetNode:
		if !c.Cond.IsZero() {
			return errors.New("takes no condition")
		}
		return kv.ValidateKey(c.Key)
	case OpSetCluster:
		if len(c.Key) > 0 || !c.Cond.IsZero() {
			return errors.New("takes only a cluster id")
		}
		return kv.ValidateClusterID(string(c.Value))
	case OpTxn:
		if c.Txn == nil || len(c.Key) > 0 || len(c.Value) > 0 || !c.Cond.IsZero() {
			return errors.New("takes only a transaction")
		}
		// The size limit was enforced by the leader; here only the shape.
		return c.Txn.Validate(math.MaxInt64)
	case OpLeaseGrant, OpLeaseKeepalive, OpLeaseRevoke, OpLeaseCheckpoint:
	case OpACLBootstrap, OpACLTokenCreate, OpACLTokenDelete:
		return c.checkACL()
	default: // an op in opTable without a shape here
		return errors.New("no shape check")
	}
	return nil
}

// checkACL enforces the ACL ops' shapes.
func (c *Command) checkACL() error {
	if !c.Cond.IsZero() {
		return errors.New("takes no condition")
	}
	switch c.Op {
	case OpACLBootstrap:
		if len(c.Key) != sha256.Size || len(c.Value) != 0 && len(c.Value) != MemberSecretSize {
			return fmt.Errorf("takes a %d-byte hash and a %d-byte secret or none", sha256.Size, MemberSecretSize)
		}
	case OpACLTokenCreate:
		if len(c.Key) != sha256.Size {
			return fmt.Errorf("takes a %d-byte hash", sha256.Size)
		}
		if _, _, err := decodeRules(c.Value); err != nil {
			return fmt.Errorf("rules: %w", err)
		}
	case OpACLTokenDelete:
		if c.Token == 0 || len(c.Key) > 0 || len(c.Value) > 0 {
			return errors.New("takes only a token id")
		}
	}
	return nil
}

// decoder reads fields off b, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%s: bad uvarint", field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%s: length %d exceeds the %d bytes left", field, n, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("%s: truncated", field)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}
