package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The lease routes (docs/http-api.md, "Leases"): grant, keep alive,
// revoke, describe and list. Every one of them is answered here on any
// node: the Backend takes the writes (grant, keepalive, revoke) to the
// leader, and the leader's view of a lease's remaining time answers the
// reads. A malformed id is 400 bad_request, an unknown, revoked or expired
// one 404 lease_not_found.

// grantBody is POST /v1/lease's body: {"ttl":"10s"} (or a number of
// seconds).
type grantBody struct {
	TTL *kv.Duration `json:"ttl"`
}

// revokeJSON is the answer to DELETE /v1/lease/{id}.
type revokeJSON struct {
	ID      kv.LeaseID `json:"id"`
	Deleted int64      `json:"deleted"`
	Index   uint64     `json:"index"`
}

// leaseListJSON is the answer to GET /v1/lease.
type leaseListJSON struct {
	Leases []kv.LeaseJSON `json:"leases"`
	Index  uint64         `json:"index"`
}

// indexJSON is the answer to a release (DELETE /v1/lock/{name},
// DELETE /v1/election/{name}).
type indexJSON struct {
	Index uint64 `json:"index"`
}

func (h *Handler) postLease(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, leaseBodyLimit)
	if err != nil {
		writeError(w, err)
		return
	}
	gb, err := decodeJSON[grantBody](body, "lease")
	if err == nil && gb.TTL == nil {
		err = fmt.Errorf("%w: lease body needs a ttl, such as {\"ttl\":\"10s\"}", kv.ErrBadRequest)
	}
	if err == nil {
		err = checkTTL(time.Duration(*gb.TTL))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	l, err := h.b.Grant(r.Context(), time.Duration(*gb.TTL))
	answerIndexed(w, err, l.Index, kv.EncodeLease(l, false))
}

func (h *Handler) keepAlive(w http.ResponseWriter, r *http.Request) {
	id, ok := leaseRequest(w, r)
	if !ok {
		return
	}
	// The body is empty; one that is not is refused, not ignored.
	if body, err := readBody(w, r, leaseBodyLimit); err != nil || len(body) != 0 {
		if err == nil {
			err = fmt.Errorf("%w: a keepalive takes no body", kv.ErrBadRequest)
		}
		writeError(w, err)
		return
	}
	l, err := h.b.KeepAliveOnce(r.Context(), id)
	answerIndexed(w, err, l.Index, kv.EncodeLease(l, false))
}

func (h *Handler) revokeLease(w http.ResponseWriter, r *http.Request) {
	id, ok := leaseRequest(w, r)
	if !ok {
		return
	}
	if err := h.allowRevoke(r, id); err != nil {
		writeError(w, err)
		return
	}
	res, err := h.b.Revoke(r.Context(), id)
	answerIndexed(w, err, res.Index, revokeJSON{ID: res.ID, Deleted: res.Deleted, Index: res.Index})
}

// allowRevoke checks that the caller may delete every key attached to
// lease id, as the revoke would (as etcd does): a token needs write on
// each. Without ACLs, or for a member, it asks nothing of the lease. A
// key attached between this check and the revoke was put by a caller
// with write on it.
func (h *Handler) allowRevoke(r *http.Request, id kv.LeaseID) error {
	if p, _ := r.Context().Value(principalKey{}).(principal); p.rules == nil {
		return nil
	}
	l, err := h.b.LeaseInfo(r.Context(), id)
	if err != nil {
		return err
	}
	for _, k := range l.Keys {
		if err := allow(r, kv.RightWrite, k, false); err != nil {
			return err
		}
	}
	return nil
}

// forwardedToFollower refuses a lease read another member sent on to
// this node as the leader when this node does not lead (it would send it
// on again): 503 no_leader, as for a forwarded write.
func (h *Handler) forwardedToFollower(w http.ResponseWriter, r *http.Request) bool {
	by := r.Header.Get(HeaderForwardedBy)
	if by == "" || h.b.IsLeader() {
		return false
	}
	writeError(w, fmt.Errorf("%w: lease read forwarded by %s reached %s, which is not the leader", kv.ErrNoLeader, by, h.b.ID()))
	return true
}

func (h *Handler) getLease(w http.ResponseWriter, r *http.Request) {
	id, ok := leaseRequest(w, r)
	if !ok || h.forwardedToFollower(w, r) {
		return
	}
	l, err := h.b.LeaseInfo(r.Context(), id)
	// A token sees only the attached keys it may read.
	l.Keys = slices.DeleteFunc(l.Keys, func(k []byte) bool { return allow(r, kv.RightRead, k, false) != nil })
	answerIndexed(w, err, l.Index, kv.EncodeLease(l, true))
}

func (h *Handler) listLeases(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	if h.forwardedToFollower(w, r) {
		return
	}
	ls, err := h.b.Leases(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := leaseListJSON{Leases: make([]kv.LeaseJSON, 0, len(ls))}
	for _, l := range ls {
		out.Index = max(out.Index, l.Index)
		lj := kv.EncodeLease(l, true)
		lj.Index, lj.Keys, lj.KeysBase64 = 0, nil, nil // the list's index; keys: GET /v1/lease/{id}
		out.Leases = append(out.Leases, lj)
	}
	if out.Index == 0 {
		// No lease to say which index the list reflects: at least this
		// node's applied index.
		out.Index = h.b.AppliedIndex()
	}
	answerIndexed(w, nil, out.Index, out)
}

// leaseRequest reads the id of a request on /v1/lease/{id}, which takes
// no parameters; on bad input it answers, and reports false.
func leaseRequest(w http.ResponseWriter, r *http.Request) (kv.LeaseID, bool) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return 0, false
	}
	id, err := leaseIDOf(r)
	if err != nil {
		writeError(w, err)
		return 0, false
	}
	return id, true
}

// answerIndexed answers err, or 200 with v and X-Raft-Index index (this
// node's applied index when index is 0).
func answerIndexed(w http.ResponseWriter, err error, index uint64, v any) {
	if err != nil {
		writeError(w, err)
		return
	}
	if index != 0 {
		w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
	}
	writeJSON(w, http.StatusOK, v)
}
