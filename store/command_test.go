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
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"one byte", []byte{1}},
		{"unknown version", append([]byte{9}, valid[1:]...)},
		{"op zero", []byte{1, 0, 0, 0, 0, 0}},
		{"unknown op", []byte{1, 6, 0, 0, 0, 0}},
		{"truncated value", valid[:len(valid)-3]},
		{"truncated flags", valid[:len(valid)-1]},
		{"trailing bytes", append(bytes.Clone(valid), 0)},
		{"absurd key length", []byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 'k'}},
		{"uvarint overflow", []byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"unknown flag", append(valid[:len(valid)-1:len(valid)-1], 2)},
		{"put without key", enc(Command{Op: OpPut, Value: []byte("v")})},
		{"put key too long", enc(Command{Op: OpPut, Key: make([]byte, kv.MaxKeySize+1)})},
		{"noop with key", enc(Command{Op: OpNoop, Key: []byte("k")})},
		{"delete with value", enc(Command{Op: OpDelete, Key: []byte("k"), Value: []byte("v")})},
		{"delete prefix with condition", enc(Command{Op: OpDeletePrefix, Cond: kv.Condition{IfAbsent: true}})},
		{"set node without id", enc(Command{Op: OpSetNode, Value: []byte("h:1")})},
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
	f.Add([]byte{})
	f.Add([]byte{1, 2, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error does not wrap ErrBadCommand: %v", err)
			}
			return
		}
		again, err := DecodeCommand(c.Encode(nil))
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", c, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip: got %+v, want %+v", again, c)
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
	// 01 02 05 63 66 67 2f 61 02 6f 6e 2a 00
	// put cfg/a=on if mod_index 42
}
