package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// The operator's routes: the cluster and its membership, leadership
// transfer, the state machine's digest, liveness and readiness. (/metrics
// is served by the Gatherer's handler, see New.) The membership calls are
// the leader's: a follower relays them (relay.go).

func (h *Handler) getCluster(r *http.Request) (kv.ClusterInfo, error) {
	return h.b.Cluster(r.Context())
}

func (h *Handler) postNode(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	body, err := readBody(w, r, 64<<10)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := decodeJoin(body)
	if err != nil {
		writeError(w, err)
		return
	}
	h.leaderOnly(w, r, body, req, func() error { return h.b.Join(r.Context(), req) })
}

// leaderOnly runs op here when this node leads and answers 200 with ok,
// else relays the request (its body as read) to the leader. kv.ErrNotLeader
// from op (leadership lost meanwhile) applied nothing, so it relays too.
func (h *Handler) leaderOnly(w http.ResponseWriter, r *http.Request, body []byte, ok any, op func() error) {
	if !h.b.IsLeader() {
		h.relay(w, r, body)
		return
	}
	err := op()
	if errors.Is(err, kv.ErrNotLeader) {
		h.relay(w, r, body)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ok)
}

var statusOK = map[string]string{"status": "ok"}

func (h *Handler) deleteNode(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if id == "" {
		writeError(w, fmt.Errorf("%w: node id is empty", kv.ErrBadRequest))
		return
	}
	h.leaderOnly(w, r, nil, statusOK, func() error { return h.b.RemoveNode(r.Context(), id) })
}

// transferLeader hands leadership over: to ?id= when given, else to the
// voter raft picks.
func (h *Handler) transferLeader(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "id")
	if err != nil {
		writeError(w, err)
		return
	}
	h.leaderOnly(w, r, nil, statusOK, func() error { return h.b.TransferLeadership(r.Context(), p.Get("id")) })
}

// decodeJoin decodes and checks POST /v1/cluster/nodes's body: id and
// raft_addr required, addresses host:port, unknown fields and trailing
// data refused.
func decodeJoin(body []byte) (kv.JoinRequest, error) {
	var req kv.JoinRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: join body: %w", kv.ErrBadRequest, err)
	}
	if dec.More() {
		return req, fmt.Errorf("%w: join body: trailing data", kv.ErrBadRequest)
	}
	if req.ID == "" || req.RaftAddr == "" {
		return req, fmt.Errorf("%w: join body needs id and raft_addr", kv.ErrBadRequest)
	}
	for _, a := range []string{req.RaftAddr, req.APIAddr} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return req, fmt.Errorf("%w: join body: address %q is not host:port", kv.ErrBadRequest, a)
		}
	}
	return req, nil
}

// getDigest answers with a hash of the local state machine, so that tests
// and operators can check that replicas converged.
// X-Raft-Index is the applied index the digest covers.
func (h *Handler) getDigest(w http.ResponseWriter, r *http.Request) {
	jsonGET(func(r *http.Request) (kv.DigestInfo, error) {
		d, err := h.b.Digest(r.Context())
		if err == nil {
			w.Header().Set(HeaderIndex, strconv.FormatUint(d.AppliedIndex, 10))
		}
		return d, err
	})(w, r)
}

func (h *Handler) livez(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": h.b.ID()})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.readyTO)
	defer cancel()
	if err := h.b.Ready(ctx); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node": h.b.ID()})
}
