package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The watch streams of the watch workloads: opening GET /v1/watch/{prefix}
// ?prefix, reading its NDJSON lines as they arrive, and decoding them.

// watchURL is the URL of a watch on every key under prefix at endpoint ep.
func watchURL(ep, prefix string) string {
	return ep + "/v1/watch/" + strings.ReplaceAll(url.PathEscape(prefix), "%2F", "/") + "?prefix"
}

// newStreamClient returns the client of the watch streams: one connection
// per stream (no pooling, no limit), no deadline on the stream itself, but
// its answer's header within timeout. readBuf is each connection's read
// buffer; tlsConf (cloned) configures https.
func newStreamClient(timeout time.Duration, readBuf int, tlsConf *tls.Config) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			DisableKeepAlives:     true,
			DisableCompression:    true,
			ResponseHeaderTimeout: timeout,
			ReadBufferSize:        readBuf,
			TLSClientConfig:       tlsConf.Clone(),
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// openStream sends a watch request and returns its body once the server
// answered 200 with an NDJSON stream; any other answer is a failure of
// kind "http STATUS CODE" (as do names them), a transport failure of its
// kind. Canceling ctx ends the stream. token is the ACL token's secret
// (empty: none).
func openStream(ctx context.Context, c *http.Client, target, token string) (io.ReadCloser, outcome) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, outcome{kind: "request", message: err.Error()}
	}
	setToken(req, token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, outcome{kind: transportErrorKind(err), message: err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		kind := "http " + strconv.Itoa(resp.StatusCode)
		var er kv.ErrorResponse
		if json.Unmarshal(msg, &er) == nil && er.Error.Code != "" {
			return nil, outcome{kind: kind + " " + er.Error.Code, message: er.Error.Message}
		}
		return nil, outcome{kind: kind, message: strings.TrimSpace(string(msg))}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/x-ndjson" {
		resp.Body.Close()
		return nil, outcome{kind: "not a watch stream", message: fmt.Sprintf("GET %s answered 200 with Content-Type %q", target, resp.Header.Get("Content-Type"))}
	}
	return resp.Body, outcome{}
}

// readLines reads r until it fails or line returns false, and calls line
// with every complete line (without its newline) and the time the read
// that completed it returned: the moment the line reached this process
// (give or take the scheduling of the reading goroutine). buf is the
// initial buffer; a longer line grows it. The line's bytes are valid only
// during the call. It returns nil when line stopped it, or r's error
// (io.EOF at the end of the stream).
func readLines(r io.Reader, buf []byte, line func(b []byte, at time.Time) bool) error {
	if len(buf) == 0 {
		buf = make([]byte, 4096)
	}
	filled := 0
	for {
		if filled == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		n, err := r.Read(buf[filled:])
		if n > 0 {
			at := time.Now()
			data := buf[:filled+n]
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				if !line(data[:i], at) {
					return nil
				}
				data = data[i+1:]
			}
			filled = copy(buf, data)
		}
		if err != nil {
			return err
		}
	}
}

// watchLine is one decoded line of a watch stream: a response (Index, its
// events) or, when ErrCode is set, the error line the server ended the
// stream with.
type watchLine struct {
	Index  uint64
	Events []watchEvent
	// ErrCode and ErrMessage are those of an error line.
	ErrCode, ErrMessage string
}

// watchEvent is what the watch workloads need of an event.
type watchEvent struct {
	Put      bool   // a put, not a delete
	Key      []byte // for the fast decoder, a part of the line
	ModIndex uint64
}

// decodeWatchLine decodes one line into l, reusing l.Events. Lines in the
// exact form the server writes (kv.EncodeWatchResponse through
// encoding/json, keys as UTF-8 strings without escapes) are scanned
// without a JSON decoder, which the load of a thousand streams needs; any
// other line goes through encoding/json (kv.WatchLineJSON), so an
// unexpected form costs time, never a wrong figure.
func decodeWatchLine(b []byte, l *watchLine) error {
	l.Index, l.Events, l.ErrCode, l.ErrMessage = 0, l.Events[:0], "", ""
	if scanWatchLine(b, l) {
		return nil
	}
	l.Events = l.Events[:0]
	var wl kv.WatchLineJSON
	if err := json.Unmarshal(b, &wl); err != nil {
		return fmt.Errorf("watch stream line %.80q: %w", b, err)
	}
	if wl.Error != nil {
		l.ErrCode, l.ErrMessage = wl.Error.Code, wl.Error.Message
		if l.ErrCode == "" {
			l.ErrCode = "unknown"
		}
		return nil
	}
	l.Index = wl.Index
	for i, ej := range wl.Events {
		rec, err := ej.Record()
		if err != nil {
			return fmt.Errorf("watch stream line at index %d, event %d: %w", wl.Index, i, err)
		}
		l.Events = append(l.Events, watchEvent{Put: ej.Type == kv.EventPut, Key: rec.Key, ModIndex: rec.ModIndex})
	}
	return nil
}

var (
	lineStart    = []byte(`{"index":`)
	eventsStart  = []byte(`,"events":[`)
	eventStart   = []byte(`{"type":"`)
	keyField     = []byte(`","key":"`)
	modIndexName = []byte(`"mod_index":`)
)

// scanWatchLine is decodeWatchLine's fast path: it reports false, having
// filled l partly, when b is not in the server's exact form. Inside a
// JSON string every quote is escaped, so none of the patterns it looks
// for (each contains a bare `":` or `{"`) can match inside a key or value.
func scanWatchLine(b []byte, l *watchLine) bool {
	rest, ok := bytes.CutPrefix(b, lineStart)
	if !ok {
		return false
	}
	var n int
	if l.Index, n = scanUint(rest); n == 0 {
		return false
	}
	if rest, ok = bytes.CutPrefix(rest[n:], eventsStart); !ok {
		return false
	}
	if string(rest) == "]}" {
		return true
	}
	for len(rest) > 0 {
		if rest, ok = bytes.CutPrefix(rest, eventStart); !ok {
			return false
		}
		var e watchEvent
		switch {
		case bytes.HasPrefix(rest, []byte("put")):
			e.Put, rest = true, rest[3:]
		case bytes.HasPrefix(rest, []byte("delete")):
			rest = rest[6:]
		default:
			return false
		}
		if rest, ok = bytes.CutPrefix(rest, keyField); !ok {
			return false // key_base64, or another form
		}
		end := bytes.IndexByte(rest, '"')
		if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
			return false // an escaped key: leave it to encoding/json
		}
		e.Key, rest = rest[:end], rest[end+1:]
		next := bytes.Index(rest, eventStart)
		obj := rest
		if next >= 0 {
			obj = rest[:next]
		}
		i := bytes.Index(obj, modIndexName)
		if i < 0 {
			return false
		}
		if e.ModIndex, n = scanUint(obj[i+len(modIndexName):]); n == 0 {
			return false
		}
		l.Events = append(l.Events, e)
		if next < 0 {
			// The last event: the line ends with "}]}" after its fields.
			return bytes.HasSuffix(obj, []byte("}]}"))
		}
		rest = rest[next:]
	}
	return false
}

// scanUint parses the decimal digits at the start of b; n is how many
// (0: none, or too many for a uint64).
func scanUint(b []byte) (v uint64, n int) {
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		if n == 19 {
			return 0, 0
		}
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n
}
