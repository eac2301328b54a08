package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The lock and election routes (docs/http-api.md, "Locks" and
// "Elections"). POST /v1/lock/{name} and POST /v1/election/{name} block
// until the name is held, under the request's context (the client going
// away ends the wait and removes its place in the queue) and at most
// ?wait (kv.LockOptions.Wait: then 504 timeout). DELETE releases with the
// fencing token the POST answered. GET /v1/election/{name} reads the
// leader, or with ?observe streams every change of leader in the framing
// of a watch (NDJSON or server-sent events, see watch.go).

// lockBody is POST /v1/lock/{name}'s body: {"ttl":"10s"} or {"lease":"7"}.
type lockBody struct {
	leaseOn
}

// campaignBody is POST /v1/election/{name}'s body: the candidate's value
// (value, or value_base64 for bytes) and its lease.
type campaignBody struct {
	leaseOn
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
}

func (h *Handler) postLock(w http.ResponseWriter, r *http.Request) {
	name, wait, body, ok := h.holdRequest(w, r, leaseBodyLimit)
	if !ok {
		return
	}
	lb, err := decodeJSON[lockBody](body, "lock")
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := lb.lockOptions(wait)
	if err != nil {
		writeError(w, err)
		return
	}
	hold, err := h.b.Lock(r.Context(), name, opts)
	answerIndexed(w, err, hold.Index, kv.EncodeHold(hold, false))
}

func (h *Handler) deleteLock(w http.ResponseWriter, r *http.Request) {
	h.release(w, r, h.b.Unlock)
}

func (h *Handler) postCampaign(w http.ResponseWriter, r *http.Request) {
	name, wait, body, ok := h.holdRequest(w, r, h.txnBodyLimit())
	if !ok {
		return
	}
	cb, err := decodeJSON[campaignBody](body, "campaign")
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := cb.lockOptions(wait)
	if err != nil {
		writeError(w, err)
		return
	}
	var value []byte
	switch {
	case cb.Value != nil && cb.ValueBase64 != nil:
		err = fmt.Errorf("%w: campaign body takes value or value_base64, not both", kv.ErrBadRequest)
	case cb.ValueBase64 != nil:
		value, err = kv.DecodeBytes("", *cb.ValueBase64)
	case cb.Value != nil:
		value = []byte(*cb.Value)
	default:
		value = []byte{}
	}
	if err == nil && int64(len(value)) > h.maxVal {
		err = fmt.Errorf("%w: the value is %d bytes, the limit is %d", kv.ErrTooLarge, len(value), h.maxVal)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	hold, err := h.b.Campaign(r.Context(), name, value, opts)
	answerIndexed(w, err, hold.Index, kv.EncodeHold(hold, true))
}

func (h *Handler) deleteCampaign(w http.ResponseWriter, r *http.Request) {
	h.release(w, r, h.b.Resign)
}

// queueOf is the queue prefix of the lock or election r names: the keys a
// token needs rights on to take part (kv.LockQueue, kv.ElectionQueue).
func queueOf(r *http.Request, name string) []byte {
	if strings.HasPrefix(r.URL.Path, "/v1/election/") {
		return kv.ElectionQueue(name)
	}
	return kv.LockQueue(name)
}

// holdRequest reads what a lock or a campaign takes besides its body's
// fields: the name, ?wait and the body (at most limit bytes). A request
// that will block may not be cut by a write deadline: it has none. On bad
// input it answers, and reports false.
func (h *Handler) holdRequest(w http.ResponseWriter, r *http.Request, limit int64) (name string, wait time.Duration, body []byte, ok bool) {
	p, err := queryOf(r, "wait")
	if err == nil {
		wait, err = p.wait()
	}
	if err == nil {
		name, err = lockNameOf(r)
	}
	if err == nil {
		err = allow(r, kv.RightWrite, queueOf(r, name), true)
	}
	if err == nil {
		body, err = readBody(w, r, limit)
	}
	if err != nil {
		writeError(w, err)
		return "", 0, nil, false
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	return name, wait, body, true
}

// release serves DELETE /v1/lock/{name} and DELETE /v1/election/{name}
// with unlock or resign: ?token is required.
func (h *Handler) release(w http.ResponseWriter, r *http.Request, release func(ctx context.Context, name string, token uint64) (uint64, error)) {
	p, err := queryOf(r, "token")
	if err != nil {
		writeError(w, err)
		return
	}
	token, err := p.token()
	if err != nil {
		writeError(w, err)
		return
	}
	name, err := lockNameOf(r)
	if err == nil {
		err = allow(r, kv.RightWrite, queueOf(r, name), true)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	index, err := release(r.Context(), name, token)
	answerIndexed(w, err, index, indexJSON{Index: index})
}

func (h *Handler) getElection(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "observe")
	if err != nil {
		writeError(w, err)
		return
	}
	observe, err := p.flag("observe")
	if err != nil {
		writeError(w, err)
		return
	}
	name, err := lockNameOf(r)
	if err == nil {
		err = allow(r, kv.RightRead, kv.ElectionQueue(name), true)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if observe {
		h.observe(w, r, name)
		return
	}
	hold, err := h.b.ElectionLeader(r.Context(), name)
	answerIndexed(w, err, hold.Index, kv.EncodeHold(hold, true))
}

// observe streams an election's leader: the current one first, then one
// line per change (kv.ElectionLineJSON, leader null when there is none).
// The first leader is read before the status is sent, so an observation
// that cannot start is an ordinary error answer; after it, a stream the
// server ends ends with an error line, and one the client ends just
// stops, as a watch.
func (h *Handler) observe(w http.ResponseWriter, r *http.Request, name string) {
	ctx := r.Context()
	next, stop := iter.Pull2(h.b.ObserveElection(ctx, name))
	defer stop()
	hold, err, more := next()
	if !more {
		err = errObserveEnded
	}
	if err != nil {
		writeError(w, err)
		return
	}
	line := h.electionLine(hold)
	out, err := openStream(w, r, line.Index)
	if err != nil {
		return // the client is gone
	}
	for {
		b, err := json.Marshal(line)
		if err != nil {
			h.endStream(ctx, out, err)
			return
		}
		if out.object(line.Index, b) != nil || out.flush() != nil {
			return
		}
		hold, err, more = next()
		if !more {
			err = errObserveEnded
		}
		if err != nil {
			h.endStream(ctx, out, err)
			return
		}
		line = h.electionLine(hold)
	}
}

// errObserveEnded is the end of an observation that stopped while the
// request went on, giving no reason: the stream says so rather than end
// in silence.
var errObserveEnded = errors.New("the observation of the election ended")

// electionLine is the stream line of hold: the leader, or none when its
// token is 0; its index is the hold's, or when it has none this node's
// applied index.
func (h *Handler) electionLine(hold kv.Hold) kv.ElectionLineJSON {
	line := kv.ElectionLineJSON{Index: hold.Index}
	if hold.Token != 0 {
		hj := kv.EncodeHold(hold, true)
		line.Leader = &hj
	}
	if line.Index == 0 {
		line.Index = h.b.AppliedIndex()
	}
	return line
}
