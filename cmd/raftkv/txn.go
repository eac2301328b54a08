package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

const txnSummary = `Applies a transaction atomically: if every compare holds, the success ops
run, else the failure ops. The transaction is the JSON body of POST /v1/txn,
read from FILE, or from stdin when FILE is omitted or "-":

  {"compare": [{"key": "cfg/a", "target": "mod_index", "op": "=", "value": 42}],
   "success": [{"op": "put", "key": "cfg/a", "value": "new"}],
   "failure": [{"op": "get", "key": "cfg/a"}]}

Prints the result as JSON. Exits 0 whichever branch ran; "succeeded" says
which.`

func runTxn(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newCommand("txn", "[FILE]", txnSummary, stderr).clientFlags()
	idem := c.fs.String("idempotency-key", "", "make the transaction safe to retry with this key")
	pos, err := c.parse(args, 0, 1)
	if err != nil {
		return err
	}
	in := stdin
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }() // read-only: nothing to flush
		in = f
	}
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading the transaction: %w", err)
	}
	var req kv.TxnRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return usagef("the transaction is not valid JSON: %v", err)
	}
	txn, err := req.Txn()
	if err != nil {
		return usagef("%v", err)
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Txn(ctx, txn, kv.Idempotent(*idem))
		if err != nil {
			return err
		}
		return writeJSON(stdout, kv.EncodeTxnResult(res))
	})
}
