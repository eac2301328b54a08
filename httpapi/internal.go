package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/internal/forward"
	"github.com/raftkv/raftkv/kv"
)

// The internal routes, one member's requests to another; clients have no
// use for them. None is ever relayed: the asker targets the member it
// means, and a wrong belief must fail, not be passed on.

// ReadIndexPath is the leader's endpoint for followers' linearizable reads.
// The asker names itself in HeaderForwardedBy and may give its current
// raft term, read when it sent the request, in HeaderTerm: a voter whose
// term is the leader's and which with the leader makes a quorum spares the
// leader its leadership check (docs/consistency.md).
const ReadIndexPath = "/v1/internal/read-index"

// LeaderCheckPath is every member's endpoint for a leader confirming,
// before it serves reads, that it still leads: the answer is the member's
// id, its term and the leader it follows, as of the moment it answers.
// The asker names the member it means (LeaderCheckIDParam); another member
// refuses with kv.ErrWrongNode (421 wrong_node).
const LeaderCheckPath = "/v1/internal/leader-check"

// LeaderCheckIDParam is the query parameter of LeaderCheckPath naming the
// server id the asker means to reach.
const LeaderCheckIDParam = "id"

// ApplyPath is the leader's endpoint for a follower's batches of writes;
// its body is binary (internal/forward), ApplyContentType.
const ApplyPath = forward.Path

// ApplyContentType is the media type of ApplyPath's bodies.
const ApplyContentType = forward.ContentType

// LeaderCheckResponse is the body of GET LeaderCheckPath.
type LeaderCheckResponse struct {
	// ID is the server id of the member that answered: an answer counts
	// for that member only.
	ID       string `json:"id"`
	Term     uint64 `json:"term"`
	LeaderID string `json:"leader_id"`
	// AppliedIndex is the member's state machine's applied index when it
	// answered: the leader measures a non-voter's lag with it before
	// promoting it.
	AppliedIndex uint64 `json:"applied_index"`
}

// ReadIndexResponse is the body of GET ReadIndexPath.
type ReadIndexResponse struct {
	Index uint64 `json:"index"`
}

// getReadIndex is the leader's side of a follower's linearizable read.
func (h *Handler) getReadIndex(r *http.Request) (ReadIndexResponse, error) {
	var term uint64
	if v := r.Header.Get(HeaderTerm); v != "" {
		t, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return ReadIndexResponse{}, fmt.Errorf("%w: header %s: %q is not a term", kv.ErrBadRequest, HeaderTerm, v)
		}
		term = t
	}
	index, err := h.b.ReadIndex(r.Context(), r.Header.Get(HeaderForwardedBy), term)
	return ReadIndexResponse{Index: index}, err
}

// getLeaderCheck answers whom this member follows in which term, and who
// it is; asked for another id, it refuses.
func (h *Handler) getLeaderCheck(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, LeaderCheckIDParam)
	if err != nil {
		writeError(w, err)
		return
	}
	if p.Has(LeaderCheckIDParam) {
		switch id := p.Get(LeaderCheckIDParam); {
		case id == "":
			writeError(w, fmt.Errorf("%w: parameter %q is empty", kv.ErrBadRequest, LeaderCheckIDParam))
			return
		case id != h.b.ID():
			writeError(w, fmt.Errorf("%w: leader check for %s reached %s", kv.ErrWrongNode, id, h.b.ID()))
			return
		}
	}
	term, leader := h.b.LeaderCheck()
	writeJSON(w, http.StatusOK, LeaderCheckResponse{ID: h.b.ID(), Term: term, LeaderID: leader, AppliedIndex: h.b.AppliedIndex()})
}

// applyBodyLimit bounds a forwarded batch: the batcher's 4 MiB, or one
// command as large as the largest transaction a client may send.
func (h *Handler) applyBodyLimit() int64 { return 8<<20 + h.txnBodyLimit() }

// postApply is the leader's side of a follower's batch of writes.
func (h *Handler) postApply(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, h.applyBodyLimit())
	if err != nil {
		writeError(w, err)
		return
	}
	out, err := h.b.ApplyForwarded(r.Context(), body)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", ApplyContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}
