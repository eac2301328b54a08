//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
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
	unexpected []string // answers outside the HTTP contract
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
	return w
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
