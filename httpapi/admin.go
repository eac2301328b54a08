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
	h.leaderOnly(w, r, body, func() (any, error) { return req, h.b.Join(r.Context(), req) })
}

// leaderOnly runs op here when this node leads and answers 200 with its
// result, else relays the request (its body as read) to the leader.
// kv.ErrNotLeader from op (leadership lost meanwhile) applied nothing, so
// it relays too.
func (h *Handler) leaderOnly(w http.ResponseWriter, r *http.Request, body []byte, op func() (any, error)) {
	if !h.b.IsLeader() {
		h.relay(w, r, body)
		return
	}
	ok, err := op()
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

// deleteNode removes a member; ?force=true skips the quorum check.
func (h *Handler) deleteNode(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "force")
	if err != nil {
		writeError(w, err)
		return
	}
	id, err := nodeID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var opts kv.RemoveOptions
	if p.Has("force") {
		if opts.Force, err = strconv.ParseBool(p.Get("force")); err != nil {
			writeError(w, fmt.Errorf("%w: force must be true or false, not %q", kv.ErrBadRequest, p.Get("force")))
			return
		}
	}
	h.leaderOnly(w, r, nil, func() (any, error) { return h.b.RemoveNode(r.Context(), id, opts) })
}

// promoteNode makes a non-voter a voter now.
func (h *Handler) promoteNode(w http.ResponseWriter, r *http.Request) {
	if _, err := queryOf(r); err != nil {
		writeError(w, err)
		return
	}
	id, err := nodeID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	h.leaderOnly(w, r, nil, func() (any, error) { return h.b.PromoteNode(r.Context(), id) })
}

// nodeID is the {id} of a /v1/cluster/nodes/{id} route.
func nodeID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if id == "" {
		return "", fmt.Errorf("%w: node id is empty", kv.ErrBadRequest)
	}
	return id, nil
}

// transferLeader hands leadership over: to ?id= when given, else to the
// voter raft picks.
func (h *Handler) transferLeader(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "id")
	if err != nil {
		writeError(w, err)
		return
	}
	h.leaderOnly(w, r, nil, func() (any, error) { return statusOK, h.b.TransferLeadership(r.Context(), p.Get("id")) })
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
	if req.Suffrage != "" && req.Suffrage != kv.Voter && req.Suffrage != kv.Nonvoter {
		return req, fmt.Errorf("%w: join body: suffrage must be %q or %q, not %q", kv.ErrBadRequest, kv.Voter, kv.Nonvoter, req.Suffrage)
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
