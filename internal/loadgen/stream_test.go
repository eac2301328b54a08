package loadgen

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// encodeLine is a watch stream line as the server writes it.
func encodeLine(t *testing.T, r kv.WatchResponse) []byte {
	t.Helper()
	b, err := json.Marshal(kv.EncodeWatchResponse(r))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put(key, value string, mod uint64) kv.Event {
	return kv.Event{Type: kv.EventPut, Record: kv.Record{Key: []byte(key), Value: []byte(value), CreateIndex: 1, ModIndex: mod, Version: 3}}
}

func TestDecodeWatchLine(t *testing.T) {
	del := kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: []byte("bench/00000002"), ModIndex: 9}}
	withPrev := put("bench/00000003", "v", 9)
	withPrev.Prev = &kv.Record{Key: []byte("bench/00000003"), Value: []byte(`"mod_index":1`), CreateIndex: 1, ModIndex: 4, Version: 2}
	tests := []struct {
		name string
		line []byte
		want watchLine
		fast bool // the fast path decodes it
	}{
		{"progress", encodeLine(t, kv.WatchResponse{Index: 42}), watchLine{Index: 42}, true},
		{"one put", encodeLine(t, kv.WatchResponse{Index: 7, Events: []kv.Event{put("bench/00000001", "abc", 7)}}),
			watchLine{Index: 7, Events: []watchEvent{{Put: true, Key: []byte("bench/00000001"), ModIndex: 7}}}, true},
		{"several events, a delete, a previous value", encodeLine(t, kv.WatchResponse{Index: 9, Events: []kv.Event{put("bench/00000001", "", 9), del, withPrev}}),
			watchLine{Index: 9, Events: []watchEvent{{Put: true, Key: []byte("bench/00000001"), ModIndex: 9}, {Key: []byte("bench/00000002"), ModIndex: 9}, {Put: true, Key: []byte("bench/00000003"), ModIndex: 9}}}, true},
		// A value that spells the patterns the fast path looks for: inside
		// a JSON string their quotes are escaped, so they do not match.
		{"value spelling the line's patterns", encodeLine(t, kv.WatchResponse{Index: 11, Events: []kv.Event{put("k", `},{"type":"put","key":"evil","mod_index":99}]}`, 11)}}),
			watchLine{Index: 11, Events: []watchEvent{{Put: true, Key: []byte("k"), ModIndex: 11}}}, true},
		{"escaped key", encodeLine(t, kv.WatchResponse{Index: 5, Events: []kv.Event{put(`a"b\c`, "v", 5)}}),
			watchLine{Index: 5, Events: []watchEvent{{Put: true, Key: []byte(`a"b\c`), ModIndex: 5}}}, false},
		{"key that is not UTF-8", encodeLine(t, kv.WatchResponse{Index: 6, Events: []kv.Event{put("k\xff", "v", 6)}}),
			watchLine{Index: 6, Events: []watchEvent{{Put: true, Key: []byte("k\xff"), ModIndex: 6}}}, false},
		{"other field order", []byte(`{"events":[{"mod_index":3,"key":"k","type":"put"}],"index":3}`),
			watchLine{Index: 3, Events: []watchEvent{{Put: true, Key: []byte("k"), ModIndex: 3}}}, false},
		{"spaces", []byte(`{"index": 3, "events": [ ]}`), watchLine{Index: 3}, false},
		{"error line", []byte(`{"error":{"code":"compacted","message":"gone","oldest_index":5,"current_index":9}}`),
			watchLine{ErrCode: "compacted", ErrMessage: "gone"}, false},
		{"error line without a code", []byte(`{"error":{"message":"?"}}`), watchLine{ErrCode: "unknown", ErrMessage: "?"}, false},
	}
	for _, tc := range tests {
		var got watchLine
		if err := decodeWatchLine(tc.line, &got); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(got.Events) == 0 {
			got.Events = nil
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: decoded %s as\n%+v, want\n%+v", tc.name, tc.line, got, tc.want)
		}
		var fast watchLine
		if ok := scanWatchLine(tc.line, &fast); ok != tc.fast {
			t.Errorf("%s: fast path took it: %v, want %v", tc.name, ok, tc.fast)
		}
	}

	// Reuse: a second line replaces what the first left.
	var l watchLine
	if err := decodeWatchLine(encodeLine(t, kv.WatchResponse{Index: 1, Events: []kv.Event{put("a", "", 1), put("b", "", 1)}}), &l); err != nil {
		t.Fatal(err)
	}
	if err := decodeWatchLine([]byte(`{"error":{"code":"shutting_down","message":"bye"}}`), &l); err != nil || len(l.Events) != 0 || l.Index != 0 || l.ErrCode != "shutting_down" {
		t.Errorf("reused line = %+v, %v", l, err)
	}

	for _, bad := range []string{``, `{`, `not json`, `{"index":1,"events":[{"type":"put","key":"k"`, `{"index":1,"events":[{"type":"put","key":{"a":1}}]}`,
		`{"index":1,"events":[{"type":"put","key_base64":"!!"}]}`} {
		if err := decodeWatchLine([]byte(bad), &l); err == nil {
			t.Errorf("decodeWatchLine(%q) = %+v, want an error", bad, l)
		}
	}
}

func TestScanUint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		v    uint64
		n    int
		desc string
	}{
		{"0", 0, 1, "zero"}, {"42,", 42, 2, "stops at a non-digit"}, {"", 0, 0, "empty"}, {"x1", 0, 0, "no digit"},
		{"1234567890123456789", 1234567890123456789, 19, "19 digits"}, {"12345678901234567890", 0, 0, "20 digits: refused"},
	} {
		if v, n := scanUint([]byte(tc.in)); v != tc.v || n != tc.n {
			t.Errorf("%s: scanUint(%q) = %d, %d; want %d, %d", tc.desc, tc.in, v, n, tc.v, tc.n)
		}
	}
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("x", 10000)
	input := "a\nbb\n\n" + long + "\nlast-without-newline"
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return strings.NewReader(input) }},
		{"a byte at a time", func() io.Reader { return iotest.OneByteReader(strings.NewReader(input)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(strings.NewReader(input)) }},
	} {
		var got []string
		before := time.Now()
		err := readLines(tc.r(), make([]byte, 3), func(b []byte, at time.Time) bool {
			if at.Before(before) {
				t.Errorf("%s: line stamped before the read", tc.name)
			}
			got = append(got, string(b))
			return true
		})
		if !errors.Is(err, io.EOF) {
			t.Errorf("%s: readLines = %v, want io.EOF", tc.name, err)
		}
		if want := []string{"a", "bb", "", long}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: lines %q, want the complete lines only", tc.name, got)
		}
	}
	n := 0
	err := readLines(strings.NewReader("1\n2\n3\n"), nil, func([]byte, time.Time) bool { n++; return n < 2 })
	if err != nil || n != 2 {
		t.Errorf("stopped readLines = %v after %d lines, want nil after 2", err, n)
	}
}

func TestWatchURL(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"bench/", "http://h:1/v1/watch/bench/?prefix"},
		{"my bench/", "http://h:1/v1/watch/my%20bench/?prefix"},
		{"", "http://h:1/v1/watch/?prefix"},
	} {
		if got := watchURL("http://h:1", tc.prefix); got != tc.want {
			t.Errorf("watchURL(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func TestParseMemoryMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 20032
go_memstats_heap_inuse_bytes 1.6969728e+08
go_memstats_heap_inuse_bytes_other 1
go_memstats_stack_inuse_bytes 1.22486784e+08
process_resident_memory_bytes 3.08912128e+08
raftkv_watchers 10000
raftkv_watchers_ended_total{reason="slow"} 3
`
	m, err := parseMemoryMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := MemorySample{RSSBytes: 308912128, HeapInuseBytes: 169697280, StackInuseBytes: 122486784, Goroutines: 20032, Watchers: 10000}
	if m != want {
		t.Errorf("sample = %+v, want %+v", m, want)
	}
	if _, err := parseMemoryMetrics(strings.NewReader(strings.ReplaceAll(text, "raftkv_watchers 10000\n", ""))); err == nil || !strings.Contains(err.Error(), "raftkv_watchers") {
		t.Errorf("without raftkv_watchers: %v, want an error naming it", err)
	}
	if _, err := parseMemoryMetrics(strings.NewReader("go_goroutines many\n")); err == nil {
		t.Error("a value that is not a number passed")
	}
}

// BenchmarkDecodeWatchLine measures the decoder on the line a put of a
// 256-byte value makes: the load of a thousand streams is this, many
// times over.
func BenchmarkDecodeWatchLine(b *testing.B) {
	line, err := json.Marshal(kv.EncodeWatchResponse(kv.WatchResponse{Index: 123456, Events: []kv.Event{put("bench/00001234", string(benchValue(256)), 123456)}}))
	if err != nil {
		b.Fatal(err)
	}
	var l watchLine
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if err := decodeWatchLine(line, &l); err != nil || len(l.Events) != 1 {
			b.Fatal(err)
		}
	}
}
