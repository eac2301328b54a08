package store

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

// seedCommands holds one command of every op and every condition shape.
var seedCommands = []Command{
	{Op: OpNoop},
	{Op: OpPut, Key: []byte("a"), Value: []byte("v")},
	{Op: OpPut, Key: []byte("a/b"), Value: []byte{0, 0xff}, Cond: kv.Condition{IfModIndex: 1 << 40}},
	{Op: OpPut, Key: []byte("a"), Cond: kv.Condition{IfAbsent: true}},
	{Op: OpDelete, Key: []byte("a")},
	{Op: OpDelete, Key: []byte("a"), Cond: kv.Condition{IfModIndex: 7}},
	{Op: OpDeletePrefix, Key: []byte("a/")},
	{Op: OpDeletePrefix},
	{Op: OpSetNode, Key: []byte("n1"), Value: []byte("127.0.0.1:8001")},
	{Op: OpPut, Key: []byte("a"), Value: []byte("v"), IdemKey: []byte("req-1")},
	{Op: OpTxn, Txn: &kv.Txn{}},
	{Op: OpTxn, IdemKey: []byte("t"), Txn: &kv.Txn{
		Compare: []kv.Compare{
			{Key: []byte("a"), Target: kv.TargetValue, Op: kv.OpEqual, Value: []byte("v")},
			{Key: []byte("b"), Target: kv.TargetModIndex, Op: kv.OpLess, Number: 9},
			{Key: []byte("c"), Target: kv.TargetExists, Op: kv.OpNotEqual, Exists: true},
		},
		Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("a"), Value: []byte("w")}, {Type: kv.TxnDeletePrefix, Key: []byte("x/")}},
		Failure: []kv.TxnOp{{Type: kv.TxnGet, Key: []byte("a")}, {Type: kv.TxnDelete, Key: []byte("b")}},
	}},
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range seedCommands {
		got, err := DecodeCommand(c.Encode(nil))
		if err != nil {
			t.Fatalf("DecodeCommand(%+v): %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip: got %+v, want %+v", got, c)
		}
	}
	// Encode appends.
	c := seedCommands[1]
	if got := c.Encode([]byte("xy")); !bytes.Equal(got[2:], c.Encode(nil)) || string(got[:2]) != "xy" {
		t.Errorf("Encode does not append to dst: %q", got)
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	valid := (&Command{Op: OpPut, Key: []byte("k"), Value: []byte("v")}).Encode(nil)
	enc := func(c Command) []byte { return c.Encode(nil) }
	withByte := func(b []byte, i int, v byte) []byte { b = bytes.Clone(b); b[i] = v; return b }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"one byte", []byte{2}},
		{"unknown version", withByte(valid, 0, 9)},
		{"no commands", []byte{2, 0}},
		{"too many commands", []byte{2, 0xff, 0xff, 0x7f}},
		{"fewer commands than counted", withByte(valid, 1, 2)},
		{"op zero", []byte{2, 1, 0, 0}},
		{"unknown op", []byte{2, 1, byte(opEnd), 0}},
		{"op 255", []byte{2, 1, 255, 0}},
		{"truncated", valid[:len(valid)-1]},
		{"trailing bytes", append(bytes.Clone(valid), 0)},
		{"absurd key length", []byte{2, 1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 'k'}},
		{"uvarint overflow", []byte{2, 1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"unknown flag", withByte(valid, 3, 0x80)},
		{"put without key", enc(Command{Op: OpPut, Value: []byte("v")})},
		{"put key too long", enc(Command{Op: OpPut, Key: make([]byte, kv.MaxKeySize+1)})},
		{"noop with condition", enc(Command{Op: OpNoop, Cond: kv.Condition{IfAbsent: true}})},
		{"delete prefix with condition", enc(Command{Op: OpDeletePrefix, Cond: kv.Condition{IfAbsent: true}})},
		{"set node without id", enc(Command{Op: OpSetNode, Value: []byte("h:1")})},
		{"idempotency key too long", enc(Command{Op: OpPut, Key: []byte("k"), IdemKey: make([]byte, kv.MaxIdempotencyKeySize+1)})},
		{"txn put without key", enc(Command{Op: OpTxn, Txn: &kv.Txn{Success: []kv.TxnOp{{Type: kv.TxnPut}}}})},
		{"txn get with value", enc(Command{Op: OpTxn, Txn: &kv.Txn{Failure: []kv.TxnOp{{Type: kv.TxnGet, Key: []byte("k"), Value: []byte("v")}}}})},
		{"txn bad compare target", []byte{2, 1, 6, 0, 1, 1, 'k', 99, 1, 0, 0, 0, 0, 0}},
		{"txn exists with <", enc(Command{Op: OpTxn, Txn: &kv.Txn{Compare: []kv.Compare{{Key: []byte("k"), Target: kv.TargetExists, Op: kv.OpLess}}}})},
		{"txn too many ops", enc(Command{Op: OpTxn, Txn: &kv.Txn{Success: make([]kv.TxnOp, kv.MaxTxnOps+1)}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeCommand(tt.in)
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("DecodeCommand(%x) = %+v, %v; want ErrBadCommand", tt.in, c, err)
			}
		})
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range seedCommands {
		f.Add(c.Encode(nil))
	}
	all := make([]*Command, len(seedCommands))
	for i := range seedCommands {
		all[i] = &seedCommands[i]
	}
	f.Add(EncodeEntry(nil, all))
	for op := OpNoop; op < opEnd; op++ {
		if c, ok := opExamples[op]; ok {
			f.Add(c.Encode(nil))
			c.IdemKey = []byte("idem-" + op.String())
			f.Add(c.Encode(nil))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1, 2, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := DecodeEntry(b)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error does not wrap ErrBadCommand: %v", err)
			}
			return
		}
		ptrs := make([]*Command, len(cmds))
		for i := range cmds {
			ptrs[i] = &cmds[i]
		}
		again, err := DecodeEntry(EncodeEntry(nil, ptrs))
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", cmds, err)
		}
		if !reflect.DeepEqual(again, cmds) {
			t.Fatalf("round trip: got %+v, want %+v", again, cmds)
		}
	})
}

func ExampleCommand_Encode() {
	c := Command{Op: OpPut, Key: []byte("cfg/a"), Value: []byte("on"), Cond: kv.Condition{IfModIndex: 42}}
	b := c.Encode(nil)
	fmt.Printf("% x\n", b)

	d, err := DecodeCommand(b)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%v %s=%s if mod_index %d\n", d.Op, d.Key, d.Value, d.Cond.IfModIndex)
	// Output:
	// 02 01 02 00 05 63 66 67 2f 61 02 6f 6e 2a
	// put cfg/a=on if mod_index 42
}
