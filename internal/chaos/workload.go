//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// WorkloadConfig tunes the clients.
type WorkloadConfig struct {
	// Clients is the number of concurrent clients (default 5).
	Clients int
	// Keys are the keys the clients work on (default k0..k4).
	Keys []string
	// Timeout bounds each request (default 2.5s).
	Timeout time.Duration
	// Think is the longest pause between two operations of one client
	// (default 20ms).
	Think time.Duration
	// Seed seeds the clients' choices.
	Seed uint64
	// TxnClients is the number of further clients that send transactions
	// (POST /v1/txn: several puts and deletes, a key put twice, a prefix
	// delete, sometimes behind a compare) and prefix deletes on TxnKeys
	// (default none). Their writes are not part of the linearizability
	// check: TxnWrites returns them, for the watch check.
	TxnClients int
	// TxnPrefix is the prefix every one of TxnKeys starts with; prefix
	// deletes remove every key under it.
	TxnPrefix string
	// TxnKeys are the keys the transaction clients write.
	TxnKeys []string
}

// Workload runs clients that get, put, compare-and-swap, create and
// delete a handful of keys over HTTP against random running nodes, and
// records every operation in a Recorder.
type Workload struct {
	c   *Cluster
	rec *Recorder
	cfg WorkloadConfig

	gate   sync.RWMutex // clients hold it shared per operation; Pause takes it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	unexpected []string    // answers outside the HTTP contract
	txnWrites  []SentWrite // the transaction clients' writes
}

// StartWorkload starts the clients; Stop ends them.
func StartWorkload(c *Cluster, rec *Recorder, cfg WorkloadConfig) *Workload {
	if cfg.Clients == 0 {
		cfg.Clients = 5
	}
	if len(cfg.Keys) == 0 {
		cfg.Keys = []string{"k0", "k1", "k2", "k3", "k4"}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2500 * time.Millisecond
	}
	if cfg.Think == 0 {
		cfg.Think = 20 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Workload{c: c, rec: rec, cfg: cfg, cancel: cancel}
	for i := range cfg.Clients {
		w.wg.Add(1)
		go w.client(ctx, i)
	}
	for i := range cfg.TxnClients {
		w.wg.Add(1)
		go w.txnClient(ctx, i)
	}
	return w
}

// TxnWrites returns the transaction clients' writes.
func (w *Workload) TxnWrites() []SentWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.txnWrites)
}

// Pause waits for every operation in flight to return and holds new ones
// until Resume.
func (w *Workload) Pause() { w.gate.Lock() }

// Resume lets the clients go on after Pause.
func (w *Workload) Resume() { w.gate.Unlock() }

// Stop ends the clients and waits for them. It must not be called while
// paused.
func (w *Workload) Stop() {
	w.cancel()
	w.wg.Wait()
}

// Unexpected lists answers that break the HTTP contract (say a 400 to a
// well-formed request).
func (w *Workload) Unexpected() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.unexpected...)
}

func (w *Workload) noteUnexpected(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.unexpected) < 50 {
		w.unexpected = append(w.unexpected, fmt.Sprintf(format, args...))
	}
}

type clientState struct {
	id   int
	pid  int
	seq  int
	rng  *rand.Rand
	mods map[string]uint64 // the mod_index this client last saw per key (0: absent)
}

func (w *Workload) client(ctx context.Context, i int) {
	defer w.wg.Done()
	cs := &clientState{id: i, pid: w.rec.NewProcess(), rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1)), mods: map[string]uint64{}}
	backoff := false
	for ctx.Err() == nil {
		think := time.Duration(cs.rng.Int64N(int64(w.cfg.Think) + 1))
		if backoff {
			// The last request failed at once (no leader, node down): a
			// client would wait before it tries again.
			think += 50*time.Millisecond + time.Duration(cs.rng.Int64N(int64(50*time.Millisecond)))
		}
		if think > 0 {
			t := time.NewTimer(think)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C: // pacing between operations
			}
		}
		w.gate.RLock()
		backoff = !w.one(ctx, cs)
		w.gate.RUnlock()
	}
}

// one runs and records one operation; false when it failed.
func (w *Workload) one(ctx context.Context, cs *clientState) bool {
	nodes := w.c.RunningIDs()
	if len(nodes) == 0 {
		return false
	}
	node := nodes[cs.rng.IntN(len(nodes))]
	key := w.cfg.Keys[cs.rng.IntN(len(w.cfg.Keys))]
	in := Input{Key: key}
	switch r := cs.rng.IntN(100); {
	case r < 40:
		in.Kind = OpGet
	case r < 65:
		in.Kind = OpPut
	case r < 87:
		in.Kind = OpCAS
	default:
		in.Kind = OpDelete
	}
	if in.Kind == OpCAS {
		if m := cs.mods[key]; m != 0 {
			in.Expect = m
		} else {
			in.Kind = OpCreate
		}
	}
	if in.Kind != OpGet && in.Kind != OpDelete {
		cs.seq++
		in.Value = fmt.Sprintf("c%d-%d", cs.id, cs.seq)
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	call := w.rec.Now()
	out, record, why := w.do(rctx, node, in)
	ret := w.rec.Now()
	if !record {
		w.rec.Drop(cs.pid, node, in, call, ret, why)
		return false
	}
	w.rec.Add(cs.pid, node, in, out, call, ret)
	switch {
	case out.Outcome == Unknown:
		cs.pid = w.rec.NewProcess()
		delete(cs.mods, key)
	case out.Outcome == Ok && in.Kind == OpDelete:
		cs.mods[key] = 0
	case out.Outcome == Ok:
		cs.mods[key] = out.ModIndex
	case out.Outcome == NotFound:
		cs.mods[key] = 0
	case out.Outcome == PreconditionFailed:
		cs.mods[key] = out.CurrentModIndex
	}
	return out.Outcome != NotApplied && out.Outcome != Unknown
}

// do sends the operation to node and classifies the answer. record is
// false for a read that failed (it tells nothing).
func (w *Workload) do(ctx context.Context, node string, in Input) (out Output, record bool, why string) {
	out, record = w.classify(ctx, node, in, &why)
	return out, record, why
}

func (w *Workload) classify(ctx context.Context, node string, in Input, why *string) (out Output, record bool) {
	url := w.c.URL(node) + "/v1/kv/" + in.Key
	var method string
	var body []byte
	hdr := map[string]string{}
	switch in.Kind {
	case OpGet:
		method = http.MethodGet
	case OpDelete:
		method = http.MethodDelete
	default:
		method, body = http.MethodPut, []byte(in.Value)
		switch in.Kind {
		case OpCAS:
			hdr["If-Match"] = strconv.Quote(strconv.FormatUint(in.Expect, 10))
		case OpCreate:
			hdr["If-None-Match"] = "*"
		}
	}
	status, h, b, err := w.c.Do(ctx, method, url, body, hdr)
	write := in.Kind != OpGet
	if err != nil {
		*why = err.Error()
		if !write {
			return Output{}, false
		}
		if kv.NotSent(err) {
			return Output{Outcome: NotApplied}, true
		}
		return Output{Outcome: Unknown}, true
	}
	code := ""
	if status >= 400 {
		code = errorCode(b)
		*why = fmt.Sprintf("%d %s", status, strings.TrimSpace(string(b)))
	}
	switch {
	case status == http.StatusOK && in.Kind == OpGet:
		out := Output{Outcome: Ok, Value: string(b)}
		var perr error
		for _, f := range []struct {
			dst  *uint64
			name string
		}{{&out.ModIndex, "X-Mod-Index"}, {&out.CreateIndex, "X-Create-Index"}, {&out.Version, "X-Version"}} {
			v, err := strconv.ParseUint(h.Get(f.name), 10, 64)
			*f.dst = v
			perr = errors.Join(perr, err)
		}
		if perr != nil {
			w.noteUnexpected("GET %s on %s: bad record headers: %v", in.Key, node, perr)
			return Output{}, false
		}
		return out, true
	case status == http.StatusOK && in.Kind == OpDelete:
		var dr kv.DeleteResponse
		if err := json.Unmarshal(b, &dr); err != nil {
			w.noteUnexpected("DELETE %s on %s: bad body %q", in.Key, node, b)
			return Output{Outcome: Unknown}, true
		}
		return Output{Outcome: Ok, Deleted: dr.Deleted, Index: dr.Index}, true
	case status == http.StatusOK:
		var pr kv.PutResponse
		if err := json.Unmarshal(b, &pr); err != nil {
			w.noteUnexpected("PUT %s on %s: bad body %q", in.Key, node, b)
			return Output{Outcome: Unknown}, true
		}
		return Output{Outcome: Ok, ModIndex: pr.ModIndex, CreateIndex: pr.CreateIndex, Version: pr.Version}, true
	case status == http.StatusNotFound && code == "not_found" && in.Kind == OpGet:
		return Output{Outcome: NotFound}, true
	case status == http.StatusPreconditionFailed && (in.Kind == OpCAS || in.Kind == OpCreate):
		cur := uint64(0)
		if et := h.Get("ETag"); et != "" {
			v, err := strconv.ParseUint(strings.Trim(et, `"`), 10, 64)
			if err != nil {
				w.noteUnexpected("412 on %s with ETag %q", node, et)
				return Output{Outcome: Unknown}, true
			}
			cur = v
		}
		return Output{Outcome: PreconditionFailed, CurrentModIndex: cur}, true
	case !write:
		if status < 500 {
			w.noteUnexpected("%s %s on %s: %d %s", method, in.Key, node, status, strings.TrimSpace(string(b)))
		}
		return Output{}, false
	case status == http.StatusServiceUnavailable && code == "no_leader",
		status == http.StatusGatewayTimeout && code == "timeout":
		// The contract: not applied (docs/http-api.md).
		return Output{Outcome: NotApplied}, true
	case status >= 500:
		return Output{Outcome: Unknown}, true
	default:
		w.noteUnexpected("%s %s on %s: %d %s", method, in.Key, node, status, strings.TrimSpace(string(b)))
		return Output{Outcome: Unknown}, true
	}
}

func errorCode(body []byte) string {
	var er kv.ErrorResponse
	if json.Unmarshal(body, &er) != nil {
		return ""
	}
	return er.Error.Code
}

// txnClient sends transactions, prefix deletes and deletes on the
// TxnKeys through random nodes, and records each with its outcome.
func (w *Workload) txnClient(ctx context.Context, i int) {
	defer w.wg.Done()
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1001))
	seq := 0
	backoff := false
	for ctx.Err() == nil {
		think := time.Duration(rng.Int64N(int64(w.cfg.Think) + 1))
		if backoff {
			think += 50*time.Millisecond + time.Duration(rng.Int64N(int64(50*time.Millisecond)))
		}
		t := time.NewTimer(think)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C: // pacing between operations
		}
		w.gate.RLock()
		nodes := w.c.RunningIDs()
		if len(nodes) == 0 {
			w.gate.RUnlock()
			backoff = true
			continue
		}
		node := nodes[rng.IntN(len(nodes))]
		sw := SentWrite{Who: fmt.Sprintf("txn client %d via %s", i, node)}
		value := func() string {
			seq++
			return fmt.Sprintf("t%d-%d", i, seq)
		}
		key := func() string { return w.cfg.TxnKeys[rng.IntN(len(w.cfg.TxnKeys))] }
		switch p := rng.IntN(100); {
		case p < 70:
			sw.Kind = WriteTxn
			steps := func(n int, puts bool) []TxnStep {
				var out []TxnStep
				for range n {
					switch q := rng.IntN(100); {
					case puts || q < 65:
						out = append(out, TxnStep{Kind: WritePut, Key: key(), Value: value()})
					case q < 90:
						out = append(out, TxnStep{Kind: WriteDelete, Key: key()})
					default:
						out = append(out, TxnStep{Kind: WriteDeletePrefix, Key: w.cfg.TxnPrefix})
					}
				}
				if n > 1 && rng.IntN(4) == 0 && out[0].Kind == WritePut {
					// The same key twice in one entry: two events at one index.
					out = append(out, TxnStep{Kind: WritePut, Key: out[0].Key, Value: value()})
				}
				return out
			}
			sw.Success = steps(1+rng.IntN(4), false)
			if rng.IntN(3) == 0 {
				sw.IfExists = key()
				sw.Failure = steps(1+rng.IntN(2), true)
			}
		case p < 88:
			sw.Kind, sw.Key = WriteDeletePrefix, w.cfg.TxnPrefix
		default:
			sw.Kind, sw.Key = WriteDelete, key()
		}
		rctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
		w.sendTxn(rctx, node, &sw)
		cancel()
		w.gate.RUnlock()
		w.mu.Lock()
		w.txnWrites = append(w.txnWrites, sw)
		w.mu.Unlock()
		backoff = sw.Outcome == NotApplied || sw.Outcome == Unknown
	}
}

// sendTxn sends a transaction client's write and classifies the answer as
// the HTTP contract says (see classify).
func (w *Workload) sendTxn(ctx context.Context, node string, sw *SentWrite) {
	var method, url string
	var body []byte
	switch sw.Kind {
	case WriteTxn:
		ops := func(steps []TxnStep) []kv.TxnOpJSON {
			out := []kv.TxnOpJSON{}
			for _, st := range steps {
				op := kv.TxnOpJSON{Key: st.Key}
				switch st.Kind {
				case WritePut:
					v := st.Value
					op.Op, op.Value = kv.TxnPut, &v
				case WriteDelete:
					op.Op = kv.TxnDelete
				case WriteDeletePrefix:
					op.Op = kv.TxnDeletePrefix
				}
				out = append(out, op)
			}
			return out
		}
		req := kv.TxnRequest{Compare: []kv.CompareJSON{}, Success: ops(sw.Success), Failure: ops(sw.Failure)}
		if sw.IfExists != "" {
			req.Compare = append(req.Compare, kv.CompareJSON{Key: sw.IfExists, Target: kv.TargetExists, Op: kv.OpEqual, Value: json.RawMessage("true")})
		}
		b, err := json.Marshal(req)
		if err != nil {
			w.noteUnexpected("encoding a transaction: %v", err)
			sw.Outcome = NotApplied
			return
		}
		method, url, body = http.MethodPost, w.c.URL(node)+"/v1/txn", b
	case WriteDeletePrefix:
		method, url = http.MethodDelete, w.c.URL(node)+"/v1/kv/"+sw.Key+"?prefix"
	default:
		method, url = http.MethodDelete, w.c.URL(node)+"/v1/kv/"+sw.Key
	}
	status, _, b, err := w.c.Do(ctx, method, url, body, nil)
	switch {
	case err != nil && kv.NotSent(err):
		sw.Outcome = NotApplied
	case err != nil:
		sw.Outcome = Unknown
	case status == http.StatusOK && sw.Kind == WriteTxn:
		var tr kv.TxnResponse
		if err := json.Unmarshal(b, &tr); err != nil {
			w.noteUnexpected("POST /v1/txn on %s: bad body %q", node, b)
			sw.Outcome = Unknown
			return
		}
		sw.Outcome, sw.Index, sw.Succeeded = Ok, tr.Index, tr.Succeeded
	case status == http.StatusOK:
		var dr kv.DeleteResponse
		if err := json.Unmarshal(b, &dr); err != nil {
			w.noteUnexpected("%s %s on %s: bad body %q", method, url, node, b)
			sw.Outcome = Unknown
			return
		}
		sw.Outcome, sw.Index, sw.Deleted = Ok, dr.Index, dr.Deleted
	case status == http.StatusServiceUnavailable && errorCode(b) == "no_leader",
		status == http.StatusGatewayTimeout && errorCode(b) == "timeout":
		sw.Outcome = NotApplied
	case status >= 500:
		sw.Outcome = Unknown
	default:
		w.noteUnexpected("%s %s on %s: %d %s", method, url, node, status, strings.TrimSpace(string(b)))
		sw.Outcome = Unknown
	}
}
