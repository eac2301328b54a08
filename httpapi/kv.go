package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The key-value routes: GET, PUT and DELETE on /v1/kv/{key}, and
// POST /v1/txn. A put may attach its key to a lease (?lease, or ?ttl for a
// lease of its own); a put or delete may require a lock's fencing token
// (?lock&token), checked by the state machine in the write's entry. A write is answered here on any node: the Backend takes it
// to the leader (see Backend); only ?redirect sends the client there.

func (h *Handler) getKV(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, readParams...)
	if err != nil {
		writeError(w, err)
		return
	}
	isList, err := p.flag("prefix")
	if err != nil {
		writeError(w, err)
		return
	}
	ro, wait, err := p.readOptions()
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	r = r.WithContext(ctx)
	w.Header().Set(HeaderLastContact, strconv.FormatInt(h.b.LastContact().Milliseconds(), 10))
	if isList {
		h.list(w, r, p, ro)
		return
	}
	key, format, err := oneKeyRead(r, p)
	if err == nil {
		err = allow(r, kv.RightRead, key, false)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	rec, index, err := h.b.Get(r.Context(), key, ro)
	w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
	if err != nil {
		writeError(w, err)
		return
	}
	hd := w.Header()
	hd.Set("ETag", etag(rec.ModIndex))
	hd.Set("X-Create-Index", strconv.FormatUint(rec.CreateIndex, 10))
	hd.Set("X-Mod-Index", strconv.FormatUint(rec.ModIndex, 10))
	hd.Set("X-Version", strconv.FormatUint(rec.Version, 10))
	if format == "json" {
		writeJSON(w, http.StatusOK, kv.EncodeRecord(rec, false))
		return
	}
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.Itoa(len(rec.Value)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.Value)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, p params, ro kv.ReadOptions) {
	opts, err := listOptions(r, p, ro)
	if err == nil {
		err = allow(r, kv.RightRead, opts.Prefix, true)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := h.b.List(r.Context(), opts)
	if err != nil {
		writeError(w, err)
		return
	}
	out := kv.ListResponse{Items: make([]kv.RecordJSON, 0, len(res.Items)), More: res.More, Index: res.Index}
	for _, rec := range res.Items {
		out.Items = append(out.Items, kv.EncodeRecord(rec, opts.KeysOnly))
	}
	out.Next, out.NextBase64 = kv.EncodeBytes(res.Next)
	w.Header().Set(HeaderIndex, strconv.FormatUint(res.Index, 10))
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) putKV(w http.ResponseWriter, r *http.Request) {
	kw, err := parseKeyWrite(r, "redirect", "wait", "lease", "ttl", "lock", "token")
	if err == nil {
		err = allowKeyWrite(r, kw)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	r, cancel := withWait(r, kw.wait)
	defer cancel()
	body, err := readBody(w, r, h.maxVal)
	if err != nil {
		writeError(w, err)
		return
	}
	if h.redirect(w, r, kw.p) {
		return
	}
	res, err := h.b.Put(r.Context(), kw.key, body, kw.opts)
	out := kv.PutResponse{CreateIndex: res.CreateIndex, ModIndex: res.ModIndex, Version: res.Version, Lease: res.Lease}
	out.Key, out.KeyBase64 = kv.EncodeBytes(res.Key)
	if err == nil {
		w.Header().Set("ETag", etag(res.ModIndex))
	}
	answerWrite(w, err, res.ModIndex, out)
}

func (h *Handler) deleteKV(w http.ResponseWriter, r *http.Request) {
	kw, err := parseKeyWrite(r, "prefix", "redirect", "wait", "lock", "token")
	if err == nil {
		err = allowKeyWrite(r, kw)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	r, cancel := withWait(r, kw.wait)
	defer cancel()
	if h.redirect(w, r, kw.p) {
		return
	}
	var res kv.DeleteResult
	if kw.isPrefix {
		res, err = h.b.DeletePrefix(r.Context(), kw.key, kw.opts)
	} else {
		res, err = h.b.Delete(r.Context(), kw.key, kw.opts)
	}
	answerWrite(w, err, res.Index, kv.DeleteResponse(res))
}

// withWait bounds a write's request by its ?wait (none when 0).
func withWait(r *http.Request, wait time.Duration) (*http.Request, context.CancelFunc) {
	if wait <= 0 {
		return r, func() {}
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	return r.WithContext(ctx), cancel
}

// txnBodyLimit bounds a transaction's JSON: its keys and values may total
// maxVal, and JSON (base64 above all) takes more room than the bytes.
func (h *Handler) txnBodyLimit() int64 { return 2*h.maxVal + 1<<20 }

func (h *Handler) postTxn(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "redirect", "wait")
	if err != nil {
		writeError(w, err)
		return
	}
	wait, err := p.wait()
	if err != nil {
		writeError(w, err)
		return
	}
	r, cancel := withWait(r, wait)
	defer cancel()
	idem, err := idempotencyKey(r)
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, h.txnBodyLimit())
	if err != nil {
		writeError(w, err)
		return
	}
	txn, err := decodeTxn(body, h.maxVal)
	if err == nil {
		err = allowTxn(r, txn)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if h.redirect(w, r, p) {
		return
	}
	res, err := h.b.Txn(r.Context(), txn, kv.WriteOptions{IdempotencyKey: idem})
	answerWrite(w, err, res.Index, kv.EncodeTxnResult(res))
}

// decodeTxn decodes and checks a transaction's JSON body (kv.TxnRequest):
// unknown fields and trailing data are refused, and the keys and values
// may total maxVal bytes.
func decodeTxn(body []byte, maxVal int64) (kv.Txn, error) {
	var req kv.TxnRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return kv.Txn{}, fmt.Errorf("%w: transaction body: %w", kv.ErrBadRequest, err)
	}
	if dec.More() {
		return kv.Txn{}, fmt.Errorf("%w: transaction body: trailing data", kv.ErrBadRequest)
	}
	txn, err := req.Txn()
	if err != nil {
		return kv.Txn{}, err
	}
	if err := txn.Validate(maxVal); err != nil {
		return kv.Txn{}, err
	}
	return txn, nil
}

// answerWrite sends a write's outcome: the error, or v with the index of
// the entry that applied it. kv.ErrNotLeader (nothing applied) goes out as
// 503 no_leader, like every error that says so (writeError).
func answerWrite(w http.ResponseWriter, err error, index uint64, v any) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
	writeJSON(w, http.StatusOK, v)
}

// redirect answers a write on a follower with a 307 to the leader when the
// request asks for it (?redirect), and refuses a write marked as sent on
// by another member (HeaderForwardedBy): it reached a node that does not
// lead either. It reports whether it answered; if not, the Backend takes
// the write to the leader.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, p params) bool {
	if h.b.IsLeader() {
		return false
	}
	if by := r.Header.Get(HeaderForwardedBy); by != "" {
		writeError(w, fmt.Errorf("%w: request forwarded by %s reached %s, which is not the leader", kv.ErrNoLeader, by, h.b.ID()))
		return true
	}
	redirect, err := p.flag("redirect")
	if err != nil {
		writeError(w, err)
		return true
	}
	if !redirect {
		return false
	}
	leader := h.b.LeaderAPIAddr()
	if leader == "" {
		writeError(w, fmt.Errorf("%w: no leader to redirect to", kv.ErrNoLeader))
		return true
	}
	// 307 keeps the method and body; 301/302 would turn a PUT into a GET.
	w.Header().Set("Location", h.scheme+"://"+leader+r.URL.RequestURI())
	writeJSON(w, http.StatusTemporaryRedirect, map[string]string{"leader": leader})
	return true
}
