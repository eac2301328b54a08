package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The watch route: GET /v1/watch/{key} streams the changes to a key, or
// with ?prefix to every key under a prefix, from this node's own applied
// state (docs/http-api.md, "Watches").
//
// The stream's invariants: the watch is opened before anything is
// written, so a watch that cannot open (compacted, too many watchers, bad
// options, shutting down) is an ordinary JSON error answer; once the 200
// is sent its header is flushed at once, then every line is one whole
// JSON object (one server-sent event), written in index order and flushed
// after each batch the Watcher returns. A stream the server ends (the
// watcher fell behind the history, the node shuts down) ends with an error
// line, never silently; a stream the client ends (its context) just
// stops. The watcher is always closed.

// The media types of a watch stream.
const (
	contentTypeNDJSON = "application/x-ndjson"
	contentTypeSSE    = "text/event-stream"
)

func (h *Handler) getWatch(w http.ResponseWriter, r *http.Request) {
	opts, err := watchOptions(r)
	if err == nil {
		err = allow(r, kv.RightRead, opts.Key, opts.Prefix)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	ctx := r.Context()
	wa, err := h.b.Watch(ctx, opts)
	if err != nil {
		writeError(w, err)
		return
	}
	defer wa.Close()

	// The index the stream starts after: without from_index, the stream
	// holds exactly the changes after it (list at it, then watch).
	out, err := openStream(w, r, wa.Start()-1)
	if err != nil {
		return // the client is gone
	}
	// At most one flush every watchFlushGap: while events come faster, a
	// stream waits out the gap before it asks for more, and writes what
	// came meanwhile together (one wakeup, one write, instead of one per
	// index).
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-gap.C:
		case <-ctx.Done():
			return
		}
		rs, err := wa.Next(ctx)
		if err != nil {
			h.endStream(ctx, out, err)
			return
		}
		for _, resp := range rs {
			if err := out.response(resp); err != nil {
				return
			}
		}
		if err := out.flush(); err != nil {
			return
		}
		gap.Reset(watchFlushGap)
	}
}

// watchFlushGap is the least time between two flushes of a watch stream.
const watchFlushGap = 40 * time.Millisecond

// openStream starts a stream (a watch, an election's observation):
// the 200 with X-Raft-Index index and the stream's media type, NDJSON or,
// when the Accept header asks for it, server-sent events, flushed at once.
// It fails when the client is gone.
func openStream(w http.ResponseWriter, r *http.Request, index uint64) (*watchStream, error) {
	rc := http.NewResponseController(w)
	// No write timeout may cut a stream: it lasts as long as the client
	// reads it. (A writer without deadlines, such as a test recorder, has
	// none to clear.)
	_ = rc.SetWriteDeadline(time.Time{})
	out := &watchStream{w: w, rc: rc, sse: wantsSSE(r.Header.Values("Accept"))}
	hd := w.Header()
	hd.Set(HeaderIndex, strconv.FormatUint(index, 10))
	hd.Set("Content-Type", contentTypeNDJSON)
	if out.sse {
		hd.Set("Content-Type", contentTypeSSE)
	}
	hd.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// endStream ends a stream whose source failed with err: with an error
// line saying why (compacted, shutting_down, or whatever else ended it),
// unless the request itself ended (the client went away or its deadline
// passed), when there is no one to tell.
func (h *Handler) endStream(ctx context.Context, out *watchStream, err error) {
	if ctx.Err() != nil {
		return
	}
	h.log.Debug("stream ended", "code", kv.Code(err), "error", err)
	if out.fail(err) == nil {
		_ = out.flush()
	}
}

// watchStream writes a stream's lines in its framing: NDJSON (one JSON
// object a line) or server-sent events. The watch route and the election
// observe route share it.
type watchStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	sse bool
	buf []byte
}

// flush sends what was written to the client.
func (s *watchStream) flush() error { return s.rc.Flush() }

// response writes one response: an NDJSON line, or an event whose id is
// the response's index (what an EventSource sends back as Last-Event-ID).
// The JSON of a response every watcher of its index gets whole is encoded
// once for all of them (kv.WatchResponse.Shared): b is shared, read-only.
func (s *watchStream) response(r kv.WatchResponse) error {
	b, err := r.MarshalJSON()
	if err != nil {
		_ = s.fail(err)
		return err
	}
	return s.object(r.Index, b)
}

// object writes b, one JSON object, as the stream's next line: an NDJSON
// line, or an event with id index.
func (s *watchStream) object(index uint64, b []byte) error {
	line := s.buf[:0]
	if s.sse {
		line = append(line, "id: "...)
		line = strconv.AppendUint(line, index, 10)
		line = append(line, "\ndata: "...)
		line = append(line, b...)
		line = append(line, "\n\n"...)
	} else {
		line = append(append(line, b...), '\n')
	}
	_, err := s.w.Write(line)
	if cap(line) <= 64<<10 { // a buffer grown by a large value is not kept
		s.buf = line
	}
	return err
}

// fail writes the stream's last line, the error that ends it as an error
// body ({"error":{"code":...}}); in SSE an event of type "error" with no
// id, so that a resuming EventSource keeps the index of the last response.
func (s *watchStream) fail(err error) error {
	b, merr := json.Marshal(kv.ErrorResponse{Error: errorBody(err)})
	if merr != nil {
		b = []byte(`{"error":{"code":"internal","message":"encoding the error failed"}}`)
	}
	var line []byte
	if s.sse {
		line = append(line, "event: error\ndata: "...)
		line = append(line, b...)
		line = append(line, "\n\n"...)
	} else {
		line = append(b, '\n')
	}
	_, err = s.w.Write(line)
	return err
}

// wantsSSE reports whether an Accept header (its values) asks for
// server-sent events: it names text/event-stream with a quality above
// zero and above that of application/x-ndjson. Anything else, wildcards,
// other types and a malformed header included, gets NDJSON.
func wantsSSE(accept []string) bool {
	qSSE, qNDJSON := 0.0, 0.0
	for _, v := range accept {
		for item := range strings.SplitSeq(v, ",") {
			mt, params, _ := strings.Cut(item, ";")
			q := quality(params)
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case contentTypeSSE:
				qSSE = max(qSSE, q)
			case contentTypeNDJSON:
				qNDJSON = max(qNDJSON, q)
			}
		}
	}
	return qSSE > 0 && qSSE > qNDJSON
}

// quality reads the q of a media range's parameters ("q=0.5;level=1"): 1
// when absent, 0 when malformed or out of range.
func quality(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(q >= 0 && q <= 1) {
			return 0
		}
		return q
	}
	return 1
}
