package store

import (
	"encoding/binary"
	"errors"
	"fmt"
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

// Op is the operation a Command performs.
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
)

func (op Op) String() string {
	switch op {
	case OpNoop:
		return "noop"
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpDeletePrefix:
		return "delete_prefix"
	case OpSetNode:
		return "set_node"
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// Command is the payload of a raft LogCommand entry.
type Command struct {
	Op    Op
	Key   []byte
	Value []byte
	Cond  kv.Condition
}

// commandVersion is the first byte of every encoded command.
const commandVersion = 1

// flagIfAbsent is bit 0 of the flags byte.
const flagIfAbsent = 1

// Encode appends the encoding of c to dst and returns the extended slice.
//
// Version 1 of the encoding is:
//
//	version byte (1) | op byte
//	uvarint len(Key)   | Key
//	uvarint len(Value) | Value
//	uvarint Cond.IfModIndex
//	flags byte (bit 0: Cond.IfAbsent)
//
// Encode does not validate c; DecodeCommand does.
func (c *Command) Encode(dst []byte) []byte {
	dst = slices.Grow(dst, 3+3*binary.MaxVarintLen64+len(c.Key)+len(c.Value))
	dst = append(dst, commandVersion, byte(c.Op))
	dst = binary.AppendUvarint(dst, uint64(len(c.Key)))
	dst = append(dst, c.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(c.Value)))
	dst = append(dst, c.Value...)
	dst = binary.AppendUvarint(dst, c.Cond.IfModIndex)
	var flags byte
	if c.Cond.IfAbsent {
		flags |= flagIfAbsent
	}
	return append(dst, flags)
}

// DecodeCommand decodes a command encoded by Encode and checks that it is
// well formed for its op. It never panics: any malformed input (unknown
// version or op, truncation, trailing bytes, lengths beyond the input, a
// missing or oversized key, fields the op does not take) yields an error
// wrapping ErrBadCommand.
//
// Key and Value share memory with b; empty fields are nil.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) < 2 {
		return Command{}, fmt.Errorf("%w: %d bytes is too short", ErrBadCommand, len(b))
	}
	if b[0] != commandVersion {
		return Command{}, fmt.Errorf("%w: unknown version %d", ErrBadCommand, b[0])
	}
	c := Command{Op: Op(b[1])}
	if c.Op < OpNoop || c.Op > OpSetNode {
		return Command{}, fmt.Errorf("%w: unknown op %d", ErrBadCommand, b[1])
	}
	d := decoder{b: b[2:]}
	c.Key = d.bytes("key")
	c.Value = d.bytes("value")
	c.Cond.IfModIndex = d.uvarint("if_mod_index")
	flags := d.byte("flags")
	switch {
	case d.err != nil:
		return Command{}, fmt.Errorf("%w: %v: %v", ErrBadCommand, c.Op, d.err)
	case len(d.b) > 0:
		return Command{}, fmt.Errorf("%w: %v: %d trailing bytes", ErrBadCommand, c.Op, len(d.b))
	case flags&^flagIfAbsent != 0:
		return Command{}, fmt.Errorf("%w: %v: unknown flags %#x", ErrBadCommand, c.Op, flags)
	}
	c.Cond.IfAbsent = flags&flagIfAbsent != 0
	if err := c.check(); err != nil {
		return Command{}, fmt.Errorf("%w: %v: %v", ErrBadCommand, c.Op, err)
	}
	return c, nil
}

// check enforces the per-op shape, so Apply can rely on it.
func (c *Command) check() error {
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
