package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// request builds a request for target (path and query, percent-encoded
// as on the wire) with the given headers.
func request(t *testing.T, method, target string, header ...string) *http.Request {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("target %q: %v", target, err)
	}
	r := &http.Request{Method: method, URL: u, Header: http.Header{}, Body: http.NoBody}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

// checkErr reports whether err is what a case wants: nil for want nil,
// else an error wrapping want.
func checkErr(t *testing.T, what string, err, want error) bool {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
		return false
	}
	return err == nil
}

func TestQueryOf(t *testing.T) {
	tests := []struct {
		query   string
		allowed []string
		want    url.Values
		err     error
	}{
		{"", nil, url.Values{}, nil},
		{"", []string{"a"}, url.Values{}, nil},
		{"a=1", []string{"a", "b"}, url.Values{"a": {"1"}}, nil},
		{"a", []string{"a"}, url.Values{"a": {""}}, nil},
		{"a=1&b=x+y", []string{"a", "b"}, url.Values{"a": {"1"}, "b": {"x y"}}, nil},
		{"a=1", nil, nil, kv.ErrBadRequest},               // no parameters taken
		{"c=1", []string{"a"}, nil, kv.ErrBadRequest},     // unknown
		{"A=1", []string{"a"}, nil, kv.ErrBadRequest},     // names are case-sensitive
		{"a=1&a=2", []string{"a"}, nil, kv.ErrBadRequest}, // duplicate
		{"a&a", []string{"a"}, nil, kv.ErrBadRequest},     // duplicate flag
		{"a=%zz", []string{"a"}, nil, kv.ErrBadRequest},   // malformed escape
		{"a=1;b=2", []string{"a", "b"}, nil, kv.ErrBadRequest},
	}
	for _, tt := range tests {
		p, err := queryOf(request(t, "GET", "/x?"+tt.query), tt.allowed...)
		if checkErr(t, "query "+tt.query, err, tt.err) && !reflect.DeepEqual(p.Values, tt.want) {
			t.Errorf("query %q: %v, want %v", tt.query, p.Values, tt.want)
		}
	}
}

func TestFlag(t *testing.T) {
	tests := []struct {
		query string
		want  bool
		err   error
	}{
		{"", false, nil},
		{"prefix", true, nil},
		{"prefix=", true, nil},
		{"prefix=true", true, nil},
		{"prefix=1", true, nil},
		{"prefix=T", true, nil},
		{"prefix=false", false, nil},
		{"prefix=0", false, nil},
		{"prefix=maybe", false, kv.ErrBadRequest},
		{"prefix=yes", false, kv.ErrBadRequest},
		{"prefix=2", false, kv.ErrBadRequest},
	}
	for _, tt := range tests {
		p, err := queryOf(request(t, "GET", "/x?"+tt.query), "prefix")
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.flag("prefix")
		if checkErr(t, "flag "+tt.query, err, tt.err) && got != tt.want {
			t.Errorf("flag %q = %v, want %v", tt.query, got, tt.want)
		}
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		query string
		want  time.Duration
		err   error
	}{
		{"", 0, nil},
		{"d=0", 0, nil},
		{"d=2s", 2 * time.Second, nil},
		{"d=1m30s", 90 * time.Second, nil},
		{"d=500ms", 500 * time.Millisecond, nil},
		{"d=-1s", 0, kv.ErrBadRequest},
		{"d=2", 0, kv.ErrBadRequest}, // no unit
		{"d=soon", 0, kv.ErrBadRequest},
		{"d", 0, kv.ErrBadRequest},
	}
	for _, tt := range tests {
		p, err := queryOf(request(t, "GET", "/x?"+tt.query), "d")
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.duration("d")
		if checkErr(t, "duration "+tt.query, err, tt.err) && got != tt.want {
			t.Errorf("duration %q = %v, want %v", tt.query, got, tt.want)
		}
	}
}

func TestReadOptions(t *testing.T) {
	tests := []struct {
		query string
		want  kv.ReadOptions
		wait  time.Duration
		err   error
	}{
		{"", kv.ReadOptions{Consistency: kv.Linearizable}, DefaultReadWait, nil},
		{"consistency=linearizable", kv.ReadOptions{Consistency: kv.Linearizable}, DefaultReadWait, nil},
		{"consistency=stale", kv.ReadOptions{Consistency: kv.Stale}, DefaultReadWait, nil},
		{"consistency=stale&max_stale=2s", kv.ReadOptions{Consistency: kv.Stale, MaxStale: 2 * time.Second}, DefaultReadWait, nil},
		{"max_stale=0", kv.ReadOptions{Consistency: kv.Linearizable}, DefaultReadWait, nil},
		{"min_index=0", kv.ReadOptions{Consistency: kv.Linearizable}, DefaultReadWait, nil},
		{"min_index=42", kv.ReadOptions{Consistency: kv.Linearizable, MinIndex: 42}, DefaultReadWait, nil},
		{"min_index=18446744073709551615", kv.ReadOptions{Consistency: kv.Linearizable, MinIndex: 1<<64 - 1}, DefaultReadWait, nil},
		{"wait=1ms", kv.ReadOptions{Consistency: kv.Linearizable}, time.Millisecond, nil},
		{"wait=5m", kv.ReadOptions{Consistency: kv.Linearizable}, 5 * time.Minute, nil},
		{"consistency=eventual", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"consistency=STALE", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"max_stale=2s", kv.ReadOptions{}, 0, kv.ErrBadRequest}, // needs consistency=stale
		{"consistency=stale&max_stale=soon", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"consistency=stale&max_stale=-1s", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"min_index=-1", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"min_index=abc", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"min_index=18446744073709551616", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait=0", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait=999us", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait=5m1s", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait=-1s", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait=later", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		// Blocking reads: ?wait bounds the wait for a change, the request
		// that wait plus a read's own bound.
		{"wait_index=0", kv.ReadOptions{Consistency: kv.Linearizable}, DefaultReadWait, nil},
		{"wait_index=0&wait=2s", kv.ReadOptions{Consistency: kv.Linearizable}, 2 * time.Second, nil},
		{"wait_index=7", kv.ReadOptions{Consistency: kv.Linearizable, WaitIndex: 7, WaitTime: kv.DefaultBlockingWait}, kv.DefaultBlockingWait + DefaultReadWait, nil},
		{"wait_index=7&wait=30s", kv.ReadOptions{Consistency: kv.Linearizable, WaitIndex: 7, WaitTime: 30 * time.Second}, 30*time.Second + DefaultReadWait, nil},
		{"wait_index=7&wait=5m&consistency=stale&min_index=3", kv.ReadOptions{Consistency: kv.Stale, MinIndex: 3, WaitIndex: 7, WaitTime: 5 * time.Minute}, 5*time.Minute + DefaultReadWait, nil},
		{"wait_index", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait_index=", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait_index=-1", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait_index=soon", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait_index=1.5", kv.ReadOptions{}, 0, kv.ErrBadRequest},
		{"wait_index=7&wait=6m", kv.ReadOptions{}, 0, kv.ErrBadRequest},
	}
	for _, tt := range tests {
		p, err := queryOf(request(t, "GET", "/v1/kv/a?"+tt.query), readParams...)
		if err != nil {
			t.Fatal(err)
		}
		ro, wait, err := p.readOptions()
		if checkErr(t, "read options "+tt.query, err, tt.err) && (ro != tt.want || wait != tt.wait) {
			t.Errorf("read options %q = %+v, wait %v; want %+v, wait %v", tt.query, ro, wait, tt.want, tt.wait)
		}
	}
}

func TestOneKeyRead(t *testing.T) {
	long := strings.Repeat("k", kv.MaxKeySize)
	tests := []struct {
		target string
		key    string
		format string
		err    error
	}{
		{"/v1/kv/a", "a", "raw", nil},
		{"/v1/kv/a?format=raw", "a", "raw", nil},
		{"/v1/kv/a?format=json", "a", "json", nil},
		{"/v1/kv/a%2Fb", "a/b", "raw", nil},
		{"/v1/kv/a//b/../c", "a//b/../c", "raw", nil},
		{"/v1/kv/a+b%20c", "a+b c", "raw", nil},
		{"/v1/kv/" + long, long, "raw", nil},
		{"/v1/kv/a?format=xml", "", "", kv.ErrBadRequest},
		{"/v1/kv/a?format=JSON", "", "", kv.ErrBadRequest},
		{"/v1/kv/a?limit=5", "", "", kv.ErrBadRequest}, // needs ?prefix
		{"/v1/kv/a?after=b", "", "", kv.ErrBadRequest},
		{"/v1/kv/a?keys_only", "", "", kv.ErrBadRequest},
		{"/v1/kv/", "", "", kv.ErrInvalidKey},
		{"/v1/kv/" + long + "k", "", "", kv.ErrInvalidKey},
	}
	for _, tt := range tests {
		r := request(t, "GET", tt.target)
		p, err := queryOf(r, readParams...)
		if err != nil {
			t.Fatal(err)
		}
		key, format, err := oneKeyRead(r, p)
		if checkErr(t, "GET "+tt.target, err, tt.err) && (string(key) != tt.key || format != tt.format) {
			t.Errorf("GET %s: key %q format %q, want %q %q", tt.target, key, format, tt.key, tt.format)
		}
	}
}

func TestListOptions(t *testing.T) {
	ro := kv.ReadOptions{Consistency: kv.Stale, MinIndex: 3}
	list := func(prefix string, limit int, after string, keysOnly bool) kv.ListOptions {
		o := kv.ListOptions{ReadOptions: ro, Prefix: []byte(prefix), Limit: limit, KeysOnly: keysOnly}
		if after != "" {
			o.After = []byte(after)
		}
		return o
	}
	tests := []struct {
		target string
		want   kv.ListOptions
		err    error
	}{
		{"/v1/kv/?prefix", list("", kv.DefaultListLimit, "", false), nil},
		{"/v1/kv/cfg/?prefix", list("cfg/", kv.DefaultListLimit, "", false), nil},
		{"/v1/kv/cfg%2F?prefix&format=json", list("cfg/", kv.DefaultListLimit, "", false), nil},
		{"/v1/kv/c?prefix&limit=1", list("c", 1, "", false), nil},
		{"/v1/kv/c?prefix&limit=10000", list("c", kv.MaxListLimit, "", false), nil},
		{"/v1/kv/c?prefix&after=c%2Fb+x", list("c", kv.DefaultListLimit, "c/b x", false), nil},
		{"/v1/kv/c?prefix&keys_only", list("c", kv.DefaultListLimit, "", true), nil},
		{"/v1/kv/c?prefix&keys_only=false", list("c", kv.DefaultListLimit, "", false), nil},
		{"/v1/kv/c?prefix&limit=0", kv.ListOptions{}, kv.ErrBadRequest},
		{"/v1/kv/c?prefix&limit=10001", kv.ListOptions{}, kv.ErrBadRequest},
		{"/v1/kv/c?prefix&limit=-1", kv.ListOptions{}, kv.ErrBadRequest},
		{"/v1/kv/c?prefix&limit=abc", kv.ListOptions{}, kv.ErrBadRequest},
		{"/v1/kv/c?prefix&keys_only=maybe", kv.ListOptions{}, kv.ErrBadRequest},
		{"/v1/kv/c?prefix&format=raw", kv.ListOptions{}, kv.ErrBadRequest},
		{"/v1/kv/" + strings.Repeat("p", kv.MaxKeySize+1) + "?prefix", kv.ListOptions{}, kv.ErrInvalidKey},
	}
	for _, tt := range tests {
		r := request(t, "GET", tt.target)
		p, err := queryOf(r, readParams...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := listOptions(r, p, ro)
		if checkErr(t, "list "+tt.target, err, tt.err) && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("list %s: %+v, want %+v", tt.target, got, tt.want)
		}
	}
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		target     string
		allowEmpty bool
		want       string
		err        error
	}{
		{"/v1/kv/a", false, "a", nil},
		{"/v1/kv/a/b/", false, "a/b/", nil},
		{"/v1/kv//", false, "/", nil},
		{"/v1/kv/./..", false, "./..", nil},
		{"/v1/kv/%00%ff", false, "\x00\xff", nil},
		{"/v1/kv/100%25", false, "100%", nil},
		{"/v1/kv/", true, "", nil},
		{"/v1/kv/", false, "", kv.ErrInvalidKey},
		{"/v1/kv/" + strings.Repeat("k", kv.MaxKeySize+1), true, "", kv.ErrInvalidKey},
	}
	for _, tt := range tests {
		got, err := keyOf(request(t, "GET", tt.target), tt.allowEmpty)
		if checkErr(t, "key of "+tt.target, err, tt.err) && string(got) != tt.want {
			t.Errorf("key of %s = %q, want %q", tt.target, got, tt.want)
		}
	}
}

func TestWatchOptions(t *testing.T) {
	long := strings.Repeat("k", kv.MaxKeySize)
	tests := []struct {
		target string
		header []string
		want   kv.WatchOptions
		err    error
	}{
		{"/v1/watch/a", nil, kv.WatchOptions{Key: []byte("a")}, nil},
		{"/v1/watch/a%2Fb%00//../c", nil, kv.WatchOptions{Key: []byte("a/b\x00//../c")}, nil},
		{"/v1/watch/" + long, nil, kv.WatchOptions{Key: []byte(long)}, nil},
		{"/v1/watch/app/?prefix", nil, kv.WatchOptions{Key: []byte("app/"), Prefix: true}, nil},
		{"/v1/watch/?prefix", nil, kv.WatchOptions{Key: []byte{}, Prefix: true}, nil},
		{"/v1/watch/?prefix=true&prev_value", nil, kv.WatchOptions{Key: []byte{}, Prefix: true, PrevValue: true}, nil},
		{"/v1/watch/a?prev_value=false", nil, kv.WatchOptions{Key: []byte("a")}, nil},
		{"/v1/watch/a?from_index=1", nil, kv.WatchOptions{Key: []byte("a"), FromIndex: 1}, nil},
		{"/v1/watch/a?from_index=18446744073709551615", nil, kv.WatchOptions{Key: []byte("a"), FromIndex: 1<<64 - 1}, nil},
		{"/v1/watch/a?from_index=0", nil, kv.WatchOptions{Key: []byte("a")}, nil}, // 0 is the default
		// An EventSource resuming: Last-Event-ID N is from_index N+1, unless
		// from_index says otherwise.
		{"/v1/watch/a", []string{"Last-Event-ID", "41"}, kv.WatchOptions{Key: []byte("a"), FromIndex: 42}, nil},
		{"/v1/watch/a", []string{"Last-Event-ID", " 41 "}, kv.WatchOptions{Key: []byte("a"), FromIndex: 42}, nil},
		{"/v1/watch/a", []string{"Last-Event-ID", "0"}, kv.WatchOptions{Key: []byte("a"), FromIndex: 1}, nil},
		{"/v1/watch/a?from_index=0", []string{"Last-Event-ID", "41"}, kv.WatchOptions{Key: []byte("a"), FromIndex: 42}, nil},
		{"/v1/watch/a?from_index=7", []string{"Last-Event-ID", "41"}, kv.WatchOptions{Key: []byte("a"), FromIndex: 7}, nil},
		{"/v1/watch/a?from_index=7", []string{"Last-Event-ID", "junk"}, kv.WatchOptions{Key: []byte("a"), FromIndex: 7}, nil},
		{"/v1/watch/a", []string{"Last-Event-ID", "junk"}, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a", []string{"Last-Event-ID", "-1"}, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a", []string{"Last-Event-ID", "18446744073709551615"}, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?from_index=-1", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?from_index=abc", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?from_index=", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?from_index", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?from_index=%2B5", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?from_index=18446744073709551616", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?from_index=1&from_index=2", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?prefix=maybe", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?prev_value=2", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/a?recursive", nil, kv.WatchOptions{}, kv.ErrBadRequest}, // unknown
		{"/v1/watch/a?wait=1s", nil, kv.WatchOptions{}, kv.ErrBadRequest},   // a read's, not a watch's
		{"/v1/watch/a?consistency=stale", nil, kv.WatchOptions{}, kv.ErrBadRequest},
		{"/v1/watch/", nil, kv.WatchOptions{}, kv.ErrInvalidKey}, // a key, unless ?prefix
		{"/v1/watch/?prefix=false", nil, kv.WatchOptions{}, kv.ErrInvalidKey},
		{"/v1/watch/" + long + "k", nil, kv.WatchOptions{}, kv.ErrInvalidKey},
		{"/v1/watch/" + long + "k?prefix", nil, kv.WatchOptions{}, kv.ErrInvalidKey},
	}
	for _, tt := range tests {
		got, err := watchOptions(request(t, "GET", tt.target, tt.header...))
		what := "watch " + tt.target + " " + strings.Join(tt.header, ": ")
		if checkErr(t, what, err, tt.err) && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", what, got, tt.want)
		}
	}
}

func TestCondition(t *testing.T) {
	tests := []struct {
		ifMatch, ifNoneMatch string
		want                 kv.Condition
		err                  error
	}{
		{"", "", kv.Condition{}, nil},
		{`"42"`, "", kv.Condition{IfModIndex: 42}, nil},
		{` "42" `, "", kv.Condition{IfModIndex: 42}, nil},
		{`W/"42"`, "", kv.Condition{IfModIndex: 42}, nil},
		{"", "*", kv.Condition{IfAbsent: true}, nil},
		{"", " * ", kv.Condition{IfAbsent: true}, nil},
		{"42", "", kv.Condition{}, kv.ErrBadRequest},
		{`"0"`, "", kv.Condition{}, kv.ErrBadRequest},
		{`"-1"`, "", kv.Condition{}, kv.ErrBadRequest},
		{`""`, "", kv.Condition{}, kv.ErrBadRequest},
		{`"x"`, "", kv.Condition{}, kv.ErrBadRequest},
		{`"1", "2"`, "", kv.Condition{}, kv.ErrBadRequest},
		{"*", "", kv.Condition{}, kv.ErrBadRequest},
		{"", `"3"`, kv.Condition{}, kv.ErrBadRequest},
		{`"3"`, "*", kv.Condition{}, kv.ErrBadRequest},
	}
	for _, tt := range tests {
		var h []string
		if tt.ifMatch != "" {
			h = append(h, "If-Match", tt.ifMatch)
		}
		if tt.ifNoneMatch != "" {
			h = append(h, "If-None-Match", tt.ifNoneMatch)
		}
		got, err := condition(request(t, "PUT", "/v1/kv/k", h...))
		what := "If-Match " + tt.ifMatch + " If-None-Match " + tt.ifNoneMatch
		if checkErr(t, what, err, tt.err) && got != tt.want {
			t.Errorf("%s: %+v, want %+v", what, got, tt.want)
		}
	}
}

func TestIdempotencyKey(t *testing.T) {
	tests := []struct {
		key string
		err error
	}{
		{"", nil},
		{"order-42-paid", nil},
		{strings.Repeat("k", kv.MaxIdempotencyKeySize), nil},
		{strings.Repeat("k", kv.MaxIdempotencyKeySize+1), kv.ErrBadRequest},
	}
	for _, tt := range tests {
		var h []string
		if tt.key != "" {
			h = []string{HeaderIdempotencyKey, tt.key}
		}
		got, err := idempotencyKey(request(t, "PUT", "/v1/kv/k", h...))
		if checkErr(t, "key of "+tt.key, err, tt.err) && got != tt.key {
			t.Errorf("idempotency key %q, want %q", got, tt.key)
		}
	}
}

func TestParseKeyWrite(t *testing.T) {
	tests := []struct {
		name, target string
		header       []string
		allowed      []string
		want         keyWrite // p is not compared
		err          error
	}{
		{"put", "/v1/kv/a", nil, []string{"redirect"}, keyWrite{key: []byte("a")}, nil},
		{"put, conditional, idempotent", "/v1/kv/a?redirect", []string{"If-Match", `"7"`, HeaderIdempotencyKey, "k1"}, []string{"redirect"},
			keyWrite{key: []byte("a"), opts: kv.WriteOptions{Condition: kv.Condition{IfModIndex: 7}, IdempotencyKey: "k1"}}, nil},
		{"delete prefix", "/v1/kv/tmp/?prefix", nil, []string{"prefix", "redirect"}, keyWrite{key: []byte("tmp/"), isPrefix: true}, nil},
		{"delete everything", "/v1/kv/?prefix", []string{HeaderIdempotencyKey, "k2"}, []string{"prefix", "redirect"},
			keyWrite{key: []byte{}, isPrefix: true, opts: kv.WriteOptions{IdempotencyKey: "k2"}}, nil},
		{"prefix not taken", "/v1/kv/a?prefix", nil, []string{"redirect"}, keyWrite{}, kv.ErrBadRequest},
		{"unknown parameter", "/v1/kv/a?ttl=5", nil, []string{"redirect"}, keyWrite{}, kv.ErrBadRequest},
		{"duplicate parameter", "/v1/kv/a?redirect&redirect", nil, []string{"redirect"}, keyWrite{}, kv.ErrBadRequest},
		{"bad prefix flag", "/v1/kv/a?prefix=maybe", nil, []string{"prefix"}, keyWrite{}, kv.ErrBadRequest},
		{"empty key", "/v1/kv/", nil, []string{"prefix"}, keyWrite{}, kv.ErrInvalidKey},
		{"condition on prefix", "/v1/kv/a?prefix", []string{"If-None-Match", "*"}, []string{"prefix"}, keyWrite{}, kv.ErrBadRequest},
		{"bad condition", "/v1/kv/a", []string{"If-Match", "7"}, nil, keyWrite{}, kv.ErrBadRequest},
		{"put with wait", "/v1/kv/a?wait=2s", nil, []string{"redirect", "wait"}, keyWrite{key: []byte("a"), wait: 2 * time.Second}, nil},
		{"wait of zero", "/v1/kv/a?wait=0s", nil, []string{"wait"}, keyWrite{}, kv.ErrBadRequest},
		{"wait not a duration", "/v1/kv/a?wait=soon", nil, []string{"wait"}, keyWrite{}, kv.ErrBadRequest},
		{"wait too long", "/v1/kv/a?wait=6m", nil, []string{"wait"}, keyWrite{}, kv.ErrBadRequest},
		{"long idempotency key", "/v1/kv/a", []string{HeaderIdempotencyKey, strings.Repeat("k", kv.MaxIdempotencyKeySize+1)}, nil, keyWrite{}, kv.ErrBadRequest},
	}
	for _, tt := range tests {
		got, err := parseKeyWrite(request(t, "PUT", tt.target, tt.header...), tt.allowed...)
		got.p = params{}
		if checkErr(t, tt.name, err, tt.err) && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// unread fails the test if the handler reads it.
type unread struct{ t *testing.T }

func (u unread) Read([]byte) (int, error) {
	u.t.Error("body read although its Content-Length is over the limit")
	return 0, io.EOF
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestReadBody(t *testing.T) {
	tests := []struct {
		name   string
		body   io.Reader
		length int64 // Content-Length; -1 unknown
		want   string
		err    error
	}{
		{"empty", strings.NewReader(""), 0, "", nil},
		{"at the limit", strings.NewReader("12345678"), 8, "12345678", nil},
		{"unknown length, at the limit", strings.NewReader("12345678"), -1, "12345678", nil},
		{"declared over the limit", unread{t}, 9, "", kv.ErrTooLarge},
		{"longer than declared", strings.NewReader("123456789"), 3, "", kv.ErrTooLarge},
		{"unknown length, over the limit", strings.NewReader("123456789"), -1, "", kv.ErrTooLarge},
		{"read error", failing{}, -1, "", kv.ErrBadRequest},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("PUT", "/v1/kv/a", io.NopCloser(tt.body))
		r.ContentLength = tt.length
		got, err := readBody(httptest.NewRecorder(), r, 8)
		if checkErr(t, tt.name, err, tt.err) && !bytes.Equal(got, []byte(tt.want)) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestDecodeTxn(t *testing.T) {
	tests := []struct {
		name, body string
		want       kv.Txn
		err        error
	}{
		{"empty", `{}`, kv.Txn{}, nil},
		{"put if absent", `{"compare":[{"key":"a","target":"exists","op":"=","value":false}],"success":[{"op":"put","key":"a","value":"v"}]}`,
			kv.Txn{Compare: []kv.Compare{{Key: []byte("a"), Target: kv.TargetExists, Op: kv.OpEqual}},
				Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("a"), Value: []byte("v")}}}, nil},
		{"unknown field", `{"compare":[],"colour":1}`, kv.Txn{}, kv.ErrBadRequest},
		{"trailing data", `{} {}`, kv.Txn{}, kv.ErrBadRequest},
		{"not JSON", `[`, kv.Txn{}, kv.ErrBadRequest},
		{"unknown op", `{"success":[{"op":"merge","key":"a"}]}`, kv.Txn{}, kv.ErrBadRequest},
		{"unknown target", `{"compare":[{"key":"a","target":"nope","op":"=","value":1}]}`, kv.Txn{}, kv.ErrBadRequest},
		{"empty key", `{"success":[{"op":"get","key":""}]}`, kv.Txn{}, kv.ErrInvalidKey},
		{"over the value limit", `{"success":[{"op":"put","key":"a","value":"123456789"}]}`, kv.Txn{}, kv.ErrTooLarge},
	}
	for _, tt := range tests {
		got, err := decodeTxn([]byte(tt.body), 8)
		if checkErr(t, tt.name, err, tt.err) && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestDecodeJoin(t *testing.T) {
	tests := []struct {
		name, body string
		want       kv.JoinRequest
		err        error
	}{
		{"full", `{"id":"n4","raft_addr":"10.0.0.4:9001","api_addr":"10.0.0.4:8001"}`, kv.JoinRequest{ID: "n4", RaftAddr: "10.0.0.4:9001", APIAddr: "10.0.0.4:8001"}, nil},
		{"no API address", `{"id":"n4","raft_addr":"h:1"}`, kv.JoinRequest{ID: "n4", RaftAddr: "h:1"}, nil},
		{"no id", `{"raft_addr":"h:1"}`, kv.JoinRequest{}, kv.ErrBadRequest},
		{"no raft address", `{"id":"n4"}`, kv.JoinRequest{}, kv.ErrBadRequest},
		{"raft address without port", `{"id":"n4","raft_addr":"h"}`, kv.JoinRequest{}, kv.ErrBadRequest},
		{"API address without port", `{"id":"n4","raft_addr":"h:1","api_addr":"h"}`, kv.JoinRequest{}, kv.ErrBadRequest},
		{"unknown field", `{"id":"n4","raft_addr":"h:1","colour":1}`, kv.JoinRequest{}, kv.ErrBadRequest},
		{"trailing data", `{"id":"n4","raft_addr":"h:1"}x`, kv.JoinRequest{}, kv.ErrBadRequest},
		{"not JSON", `{`, kv.JoinRequest{}, kv.ErrBadRequest},
	}
	for _, tt := range tests {
		got, err := decodeJoin([]byte(tt.body))
		if checkErr(t, tt.name, err, tt.err) && got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
