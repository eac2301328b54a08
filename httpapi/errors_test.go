package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{kv.ErrNotFound, 404},
		{kv.ErrInvalidKey, 400},
		{kv.ErrBadRequest, 400},
		{kv.ErrTooLarge, 413},
		{kv.ErrPreconditionFailed, 412},
		{&kv.PreconditionError{CurrentModIndex: 3}, 412},
		{kv.ErrMethodNotAllowed, 405},
		{kv.ErrWrongNode, 421},
		{kv.ErrNoLeader, 503},
		{kv.ErrNotLeader, 503},
		{kv.ErrClosed, 503},
		{kv.ErrTooStale, 503},
		{kv.ErrOutcomeUnknown, 504},
		{kv.ErrTimeout, 504},
		{kv.ErrCompacted, 410},
		{&kv.CompactedError{FromIndex: 1, OldestIndex: 5, CurrentIndex: 9}, 410},
		{kv.ErrTooManyWatchers, 503},
		{kv.ErrLeaseNotFound, 404},
		{fmt.Errorf("keepalive 7: %w", kv.ErrLeaseNotFound), 404},
		{kv.ErrNoElectionLeader, 404},
		{fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, kv.ErrClosed), 504},
		{errors.New("disk on fire"), 500},
	}
	for _, tt := range tests {
		if got := statusOf(tt.err); got != tt.want {
			t.Errorf("statusOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestWriteErrorHeaders(t *testing.T) {
	w := httptest.NewRecorder()
	writeError(w, fmt.Errorf("put: %w", &kv.PreconditionError{CurrentModIndex: 42}))
	if w.Code != 412 || w.Header().Get("ETag") != `"42"` {
		t.Fatalf("412: code %d ETag %q", w.Code, w.Header().Get("ETag"))
	}
	w = httptest.NewRecorder()
	writeError(w, &kv.PreconditionError{})
	if w.Header().Get("ETag") != "" {
		t.Fatalf("absent key must not get an ETag: %q", w.Header().Get("ETag"))
	}
	w = httptest.NewRecorder()
	writeError(w, kv.ErrNotLeader)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"code":"no_leader"`) {
		t.Fatalf("not leader: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

// The watch errors' answers: 410 with the history the node keeps, and 503
// with Retry-After for a node at its watcher limit.
func TestWriteErrorWatch(t *testing.T) {
	w := httptest.NewRecorder()
	writeError(w, fmt.Errorf("watch: %w", &kv.CompactedError{FromIndex: 2, OldestIndex: 40, CurrentIndex: 90}))
	var er kv.ErrorResponse
	if err := json.Unmarshal(w.Body.Bytes(), &er); err != nil {
		t.Fatal(err)
	}
	if w.Code != 410 || er.Error.Code != "compacted" || er.Error.OldestIndex != 40 || er.Error.CurrentIndex != 90 || er.Error.Message == "" {
		t.Fatalf("compacted: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	writeError(w, kv.ErrTooManyWatchers)
	if w.Code != 503 || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), `"code":"too_many_watchers"`) {
		t.Fatalf("too many watchers: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if strings.Contains(w.Body.String(), "oldest_index") {
		t.Fatalf("too many watchers with compacted fields: %s", w.Body)
	}
}
