package httpapi

import (
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
