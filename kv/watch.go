package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Watches: the change history every node keeps, and the streams that
// deliver it (docs/http-api.md, "Watches"; docs/consistency.md, "Watches").

// EventType is what an Event did to its key.
type EventType string

// The event types.
const (
	// EventPut: the key was written (created or changed).
	EventPut EventType = "put"
	// EventDelete: the key was removed (a delete, a prefix delete, a
	// transaction's delete).
	EventDelete EventType = "delete"
)

// Event is one change to one key. Its Record is the key after the change:
// for a put, the value, CreateIndex, ModIndex (the index of the entry
// that made the change) and Version, as a read would return them; for a
// delete, only Key and ModIndex (the index of the deleting entry).
type Event struct {
	Type EventType
	Record
	// Prev is the record the change replaced, when the watch asked for it
	// (WatchOptions.PrevValue) and the key existed before; nil otherwise.
	// Its Value is nil (and an empty value is non-nil) when the node no
	// longer knows it: a watch that reads the stored history (one from an
	// old index, or one that fell behind) finds the previous value at the
	// write that set it, which may be older than the history kept.
	Prev *Record
}

// WatchResponse is every event of one raft index that a watch selects, in
// the order the entry applied them. A response without events is a
// progress notification: the watch has delivered every event up to and
// including Index, so a watch resumed from Index+1 misses nothing.
type WatchResponse struct {
	// Index is the raft log index of the entry the events come from; for a
	// progress notification, the index the watch has scanned through.
	Index  uint64
	Events []Event

	// enc, when set (Shared), holds the JSON encoding once for every copy.
	enc *sharedJSON
}

type sharedJSON struct {
	once sync.Once
	b    []byte
	err  error
}

// Shared returns r set to encode its JSON once, however many watchers
// deliver it: the copies share the bytes. The caller must not change r's
// events afterwards.
func (r WatchResponse) Shared() WatchResponse {
	r.enc = &sharedJSON{}
	return r
}

// MarshalJSON returns r's wire form (WatchResponseJSON), the NDJSON line
// of a watch stream without its newline. For a Shared response the bytes
// are shared: the caller must not modify them.
func (r WatchResponse) MarshalJSON() ([]byte, error) {
	if r.enc == nil {
		return json.Marshal(EncodeWatchResponse(r))
	}
	r.enc.once.Do(func() {
		r.enc.b, r.enc.err = json.Marshal(EncodeWatchResponse(r))
	})
	return r.enc.b, r.enc.err
}

// IsProgress reports whether r is a progress notification (no events).
func (r WatchResponse) IsProgress() bool { return len(r.Events) == 0 }

// WatchOptions select what a watch delivers.
type WatchOptions struct {
	// Key is the key watched, or with Prefix the prefix of the keys
	// watched (empty: every key).
	Key []byte
	// Prefix watches every key that starts with Key.
	Prefix bool
	// FromIndex delivers the events at raft indexes >= FromIndex, from the
	// node's history; zero starts after the node's applied index (changes
	// from now on). A FromIndex older than the history kept fails with a
	// *CompactedError.
	FromIndex uint64
	// PrevValue fills each Event's Prev.
	PrevValue bool
	// ProgressInterval is how long a watch goes without events before it
	// delivers a progress notification; zero means DefaultWatchProgress.
	ProgressInterval time.Duration
}

// DefaultWatchProgress is how long a watch goes without an event before it
// delivers a progress notification.
const DefaultWatchProgress = 10 * time.Second

// Validate checks the options as every layer does: a key (or a non-empty
// prefix) must pass ValidateKey.
func (o WatchOptions) Validate() error {
	if o.ProgressInterval < 0 {
		return fmt.Errorf("%w: progress interval is negative", ErrBadRequest)
	}
	if !o.Prefix {
		return ValidateKey(o.Key)
	}
	if len(o.Key) > MaxKeySize {
		return ValidateKey(o.Key)
	}
	return nil
}

// Matches reports whether the options select key.
func (o WatchOptions) Matches(key []byte) bool {
	if o.Prefix {
		return len(key) >= len(o.Key) && string(key[:len(o.Key)]) == string(o.Key)
	}
	return string(key) == string(o.Key)
}

// The watch errors, with their wire codes (see Code).
var (
	// ErrCompacted: a watch asked for events older than the history the
	// node keeps (or fell so far behind that the history moved past it).
	// The error is a *CompactedError.
	ErrCompacted = errors.New("compacted")
	// ErrTooManyWatchers: the node serves its limit of watches and
	// blocking reads; try another node or later.
	ErrTooManyWatchers = errors.New("too many watchers")
)

// CompactedError says which history a node keeps: the events at indexes
// from OldestIndex to CurrentIndex (its applied index). It wraps
// ErrCompacted. To resume, list the keys (the listing's index is I) and
// watch from I+1.
type CompactedError struct {
	// FromIndex is the index the watch asked for (or had reached).
	FromIndex uint64
	// OldestIndex is the oldest index whose events the node still has.
	OldestIndex uint64
	// CurrentIndex is the node's applied index.
	CurrentIndex uint64

	msg string // the server's message, for an error decoded from the wire
}

func (e *CompactedError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("compacted: events from index %d are gone; this node keeps indexes %d to %d", e.FromIndex, e.OldestIndex, e.CurrentIndex)
}

// Unwrap returns ErrCompacted.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// EventJSON is an event on the wire: its type, the record after the change
// (a delete carries only key and mod_index; create_index and version are
// 0) and, when asked for, the record it replaced, without its key.
type EventJSON struct {
	Type EventType `json:"type"`
	RecordJSON
	Prev *RecordJSON `json:"prev,omitempty"`
}

// WatchResponseJSON is one line of a watch stream (NDJSON), or the data of
// one server-sent event: every event of one index, or, with no events, a
// progress notification.
type WatchResponseJSON struct {
	Index  uint64      `json:"index"`
	Events []EventJSON `json:"events"`
}

// WatchLineJSON is what a client decodes each line of a watch stream into:
// a WatchResponseJSON, or the last line of a stream the server ended
// (an ErrorResponse: {"error":{...}}).
type WatchLineJSON struct {
	Index  uint64      `json:"index"`
	Events []EventJSON `json:"events"`
	Error  *ErrorBody  `json:"error,omitempty"`
}

// EncodeWatchResponse converts a response to its wire form; Events is
// never nil, so a progress notification reads "events":[].
func EncodeWatchResponse(r WatchResponse) WatchResponseJSON {
	out := WatchResponseJSON{Index: r.Index, Events: make([]EventJSON, len(r.Events))}
	for i, e := range r.Events {
		ej := EventJSON{Type: e.Type, RecordJSON: EncodeRecord(e.Record, e.Type == EventDelete)}
		if e.Prev != nil {
			p := EncodeRecord(*e.Prev, e.Prev.Value == nil) // no value: not known any more
			p.Key, p.KeyBase64 = "", ""
			ej.Prev = &p
		}
		out.Events[i] = ej
	}
	return out
}

// WatchResponse converts the wire form back, checking every event.
func (r WatchResponseJSON) WatchResponse() (WatchResponse, error) {
	out := WatchResponse{Index: r.Index}
	if len(r.Events) > 0 {
		out.Events = make([]Event, len(r.Events))
	}
	for i, ej := range r.Events {
		if ej.Type != EventPut && ej.Type != EventDelete {
			return WatchResponse{}, fmt.Errorf("event %d: unknown type %q", i, ej.Type)
		}
		rec, err := ej.Record()
		if err != nil {
			return WatchResponse{}, fmt.Errorf("event %d: %w", i, err)
		}
		if ej.Type == EventPut && rec.Value == nil {
			rec.Value = []byte{}
		}
		e := Event{Type: ej.Type, Record: rec}
		if ej.Prev != nil {
			p, err := ej.Prev.Record()
			if err != nil {
				return WatchResponse{}, fmt.Errorf("event %d: prev: %w", i, err)
			}
			p.Key = rec.Key // Value stays nil when the line has none
			e.Prev = &p
		}
		out.Events[i] = e
	}
	return out, nil
}

// ErrorFromBody rebuilds the error of a JSON error body: like FromCode, and
// a compacted error comes back as a *CompactedError (which wraps
// ErrCompacted) with the body's indexes.
func ErrorFromBody(b ErrorBody) error {
	if b.Code == "compacted" {
		return &CompactedError{OldestIndex: b.OldestIndex, CurrentIndex: b.CurrentIndex, msg: b.Message}
	}
	return FromCode(b.Code, b.Message)
}

// DecodeWatchLine decodes one line of a watch stream (NDJSON, or an SSE
// event's data). A response comes back as resp. The line that ends a
// stream comes back as ended, the error it carries (ErrorFromBody: errors.Is
// ErrClosed for shutting_down, a *CompactedError for compacted). err
// reports a line that is not a valid response or error line.
func DecodeWatchLine(line []byte) (resp WatchResponse, ended, err error) {
	var l WatchLineJSON
	if err := json.Unmarshal(line, &l); err != nil {
		return WatchResponse{}, nil, err
	}
	if l.Error != nil {
		return WatchResponse{}, ErrorFromBody(*l.Error), nil
	}
	resp, err = WatchResponseJSON{Index: l.Index, Events: l.Events}.WatchResponse()
	return resp, nil, err
}
