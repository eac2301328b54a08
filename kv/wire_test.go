package kv

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestTxnWireRoundTrip(t *testing.T) {
	in := Txn{
		Compare: []Compare{
			{Key: []byte("a"), Target: TargetValue, Op: OpEqual, Value: []byte("text")},
			{Key: []byte{0xff, 0}, Target: TargetValue, Op: OpNotEqual, Value: []byte{0, 0xfe}},
			{Key: []byte("b"), Target: TargetModIndex, Op: OpLess, Number: 1 << 50},
			{Key: []byte("c"), Target: TargetExists, Op: OpEqual, Exists: true},
			{Key: []byte("d"), Target: TargetVersion, Op: OpGreater},
			{Key: []byte("jobs"), Target: TargetLock, Op: OpEqual, Number: 42},
		},
		Success: []TxnOp{{Type: TxnPut, Key: []byte("a"), Value: []byte{1, 0xff}, Lease: 7}, {Type: TxnPut, Key: []byte("e"), Value: []byte{}}, {Type: TxnDeletePrefix, Key: []byte("p/")}},
		Failure: []TxnOp{{Type: TxnGet, Key: []byte("a")}, {Type: TxnDelete, Key: []byte("b")}},
	}
	b, err := json.Marshal(EncodeTxn(in))
	if err != nil {
		t.Fatal(err)
	}
	var req TxnRequest
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	out, err := req.Txn()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip through %s:\n got %+v\nwant %+v", b, out, in)
	}

	res := TxnResult{Succeeded: true, Index: 9, Results: []TxnOpResult{
		{Type: TxnPut, Put: PutResult{Key: []byte("a"), CreateIndex: 3, ModIndex: 9, Version: 2}},
		{Type: TxnGet, Record: &Record{Key: []byte("a"), Value: []byte{0xff}, CreateIndex: 3, ModIndex: 9, Version: 2}},
		{Type: TxnGet},
		{Type: TxnDelete, Deleted: 1},
	}}
	b, _ = json.Marshal(EncodeTxnResult(res))
	var resp TxnResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	back, err := resp.TxnResult()
	if err != nil || !reflect.DeepEqual(back, res) {
		t.Fatalf("result round trip through %s:\n got %+v (%v)\nwant %+v", b, back, err, res)
	}
}

func TestTxnWireRejects(t *testing.T) {
	for _, body := range []string{
		`{"compare":[{"key":"a","target":"mod_index","op":"=","value":"7"}]}`,
		`{"compare":[{"key":"a","target":"exists","op":"=","value":1}]}`,
		`{"compare":[{"key":"a","target":"value","op":"=","value":3}]}`,
		`{"compare":[{"key":"a","target":"version","op":"=","value":1,"value_base64":"AA=="}]}`,
		`{"compare":[{"key":"a","target":"nope","op":"=","value":1}]}`,
		`{"compare":[{"key":"jobs","target":"lock","op":"=","value":"7"}]}`,
		`{"compare":[{"key_base64":"!!","target":"exists","op":"=","value":true}]}`,
		`{"success":[{"op":"put","key":"a","value_base64":"%%"}]}`,
	} {
		var req TxnRequest
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if _, err := req.Txn(); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want bad request", body, err)
		}
	}
}

func TestCodesRoundTrip(t *testing.T) {
	for _, c := range codes {
		err := FromCode(c.code, "m")
		if !errors.Is(err, c.err) || Code(err) != c.code {
			t.Errorf("code %s does not round-trip: %v", c.code, err)
		}
	}
	if Code(errors.New("x")) != CodeInternal {
		t.Error("unknown error is not internal")
	}
}

// A Shared response encodes its JSON once for every copy, and the same as
// an unshared one.
func TestWatchResponseSharedJSON(t *testing.T) {
	r := WatchResponse{Index: 7, Events: []Event{
		{Type: EventPut, Record: Record{Key: []byte("k"), Value: []byte("v\xff"), CreateIndex: 3, ModIndex: 7, Version: 2}, Prev: &Record{Key: []byte("k"), Value: []byte("u"), CreateIndex: 3, ModIndex: 3, Version: 1}},
		{Type: EventDelete, Record: Record{Key: []byte("d"), ModIndex: 7}},
	}}
	want, err := json.Marshal(EncodeWatchResponse(r))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := r.MarshalJSON()
	if err != nil || string(plain) != string(want) {
		t.Fatalf("MarshalJSON = %s, %v; want %s", plain, err, want)
	}
	s := r.Shared()
	copy1, copy2 := s, s
	a, _ := copy1.MarshalJSON()
	b, _ := copy2.MarshalJSON()
	if string(a) != string(want) || &a[0] != &b[0] {
		t.Fatalf("shared copies: %s at %p and %p, want %s encoded once", a, &a[0], &b[0], want)
	}
	var back WatchResponseJSON
	if err := json.Unmarshal(a, &back); err != nil {
		t.Fatal(err)
	}
	got, err := back.WatchResponse()
	if err != nil || got.Index != 7 || len(got.Events) != 2 || string(got.Events[0].Value) != "v\xff" || string(got.Events[0].Prev.Value) != "u" {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
}

// DecodeWatchLine tells a response, the error line that ends a stream,
// and a malformed line apart.
func TestDecodeWatchLine(t *testing.T) {
	resp, ended, err := DecodeWatchLine([]byte(`{"index":9,"events":[{"type":"put","key":"k","value":"v","create_index":9,"mod_index":9,"version":1}]}`))
	if err != nil || ended != nil || resp.Index != 9 || len(resp.Events) != 1 || string(resp.Events[0].Value) != "v" {
		t.Fatalf("response line: %+v, %v, %v", resp, ended, err)
	}
	if _, ended, err := DecodeWatchLine([]byte(`{"error":{"code":"shutting_down","message":"bye"}}`)); err != nil || !errors.Is(ended, ErrClosed) {
		t.Fatalf("shutting_down line: %v, %v", ended, err)
	}
	_, ended, err = DecodeWatchLine([]byte(`{"error":{"code":"compacted","message":"gone","oldest_index":5,"current_index":8}}`))
	var ce *CompactedError
	if err != nil || !errors.As(ended, &ce) || ce.OldestIndex != 5 || ce.CurrentIndex != 8 {
		t.Fatalf("compacted line: %v, %v", ended, err)
	}
	for _, bad := range []string{`{"index":`, `{"index":3,"events":[{"type":"rename","key":"k"}]}`} {
		if _, ended, err := DecodeWatchLine([]byte(bad)); err == nil || ended != nil {
			t.Errorf("%s: %v, %v; want a decoding error", bad, ended, err)
		}
	}
}
