package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// statusOf is the one place an error becomes an HTTP status.
func statusOf(err error) int {
	switch kv.Code(err) {
	case "not_found", "lease_not_found", "no_election_leader":
		return http.StatusNotFound
	case "invalid_key", "bad_request":
		return http.StatusBadRequest
	case "too_large":
		return http.StatusRequestEntityTooLarge
	case "precondition_failed":
		return http.StatusPreconditionFailed
	case "idempotency_key_reused":
		return http.StatusUnprocessableEntity
	case "method_not_allowed":
		return http.StatusMethodNotAllowed
	case "permission_denied":
		return http.StatusForbidden
	case "unauthenticated":
		return http.StatusUnauthorized
	case "wrong_node":
		return http.StatusMisdirectedRequest
	case "wrong_cluster", "incompatible_version":
		return http.StatusConflict
	case "compacted":
		return http.StatusGone
	case "would_lose_quorum":
		return http.StatusConflict
	case "no_leader", "not_leader", "shutting_down", "too_stale", "too_many_watchers":
		return http.StatusServiceUnavailable
	case "outcome_unknown", "timeout":
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// writeError answers with err's status and JSON body.
func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	h := w.Header()
	var pe *kv.PreconditionError
	if errors.As(err, &pe) && pe.CurrentModIndex != 0 {
		h.Set("ETag", etag(pe.CurrentModIndex))
	}
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="raftkv"`)
	}
	writeJSON(w, status, kv.ErrorResponse{Error: errorBody(err)})
}

// errorBody is err's JSON error body: its code, its message and the
// fields its type carries (applied_index of a *kv.WaitError, oldest_index
// and current_index of a *kv.CompactedError). An error answer and the last
// line of a watch stream both carry it.
func errorBody(err error) kv.ErrorBody {
	code := kv.Code(err)
	if code == "not_leader" {
		// Not the leader, nothing applied (a batch or read index sent to a
		// member that no longer leads): to the asker the same as no leader.
		code = "no_leader"
	}
	body := kv.ErrorBody{Code: code, Message: err.Error()}
	var we *kv.WaitError
	if errors.As(err, &we) {
		body.AppliedIndex = we.AppliedIndex
	}
	var ce *kv.CompactedError
	if errors.As(err, &ce) {
		body.OldestIndex, body.CurrentIndex = ce.OldestIndex, ce.CurrentIndex
	}
	return body
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encoding the response failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func etag(modIndex uint64) string { return `"` + strconv.FormatUint(modIndex, 10) + `"` }
