package loadgen

import (
	"strings"
	"testing"
	"time"
)

// valid returns options that Validate accepts.
func valid() Options {
	return Options{
		Endpoints:   []string{"http://127.0.0.1:1"},
		Workload:    Put,
		Connections: 1,
		ValueSize:   0,
		Keys:        1,
		KeyPrefix:   "bench/",
		Duration:    time.Second,
		Warmup:      0,
		Timeout:     time.Second,
		Watchers:    1,
		Rate:        1,
		Leases:      1,
		TTL:         time.Second,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Options)
		wantErr string // "" when valid
	}{
		{"valid", func(*Options) {}, ""},
		{"unknown workload", func(o *Options) { o.Workload = "scan" }, `--workload must be one of put, get, get-stale, mixed, txn, watch-idle, watch-delay, leases-keepalive, lock-uncontended, lock-contended, not "scan"`},
		{"empty workload", func(o *Options) { o.Workload = "" }, "--workload must be one of"},
		{"workload is case-sensitive", func(o *Options) { o.Workload = "PUT" }, "--workload must be one of"},
		{"no connections", func(o *Options) { o.Connections = 0 }, "--connections must be at least 1"},
		{"negative value size", func(o *Options) { o.ValueSize = -1 }, "--value-size must not be negative"},
		{"no keys", func(o *Options) { o.Keys = 0 }, "--keys must be at least 1"},
		{"negative warm-up", func(o *Options) { o.Warmup = -time.Second }, "--warmup must not be negative"},
		{"no timeout", func(o *Options) { o.Timeout = 0 }, "--timeout must be positive"},
		{"negative timeout", func(o *Options) { o.Timeout = -time.Second }, "--timeout must be positive"},
		// Validate leaves these to New and Run.
		{"no endpoints", func(o *Options) { o.Endpoints = nil }, ""},
		{"no duration", func(o *Options) { o.Duration = 0 }, ""},
		{"negative duration", func(o *Options) { o.Duration = -time.Second }, ""},
		{"empty key prefix", func(o *Options) { o.KeyPrefix = "" }, ""},
		{"no watchers for watch-idle", func(o *Options) { o.Workload, o.Watchers = WatchIdle, 0 }, "--watchers must be at least 1 for watch-idle"},
		{"no watchers for watch-delay", func(o *Options) { o.Workload, o.Watchers = WatchDelay, 0 }, "--watchers must be at least 1 for watch-delay"},
		{"no rate for watch-delay", func(o *Options) { o.Workload, o.Rate = WatchDelay, 0 }, "--rate must be at least 1 for watch-delay"},
		{"watch-idle needs no rate", func(o *Options) { o.Workload, o.Rate = WatchIdle, 0 }, ""},
		{"put needs no watchers nor rate", func(o *Options) { o.Watchers, o.Rate = 0, -1 }, ""},
		{"fewer leases than connections", func(o *Options) { o.Workload, o.Leases, o.Connections = LeasesKeepalive, 3, 4 }, "--leases must be at least --connections (4) for leases-keepalive"},
		{"as many leases as connections", func(o *Options) { o.Workload, o.Leases, o.Connections = LeasesKeepalive, 4, 4 }, ""},
		{"no ttl for leases-keepalive", func(o *Options) { o.Workload, o.TTL = LeasesKeepalive, 0 }, "--ttl must be positive for leases-keepalive"},
		{"negative ttl for lock-contended", func(o *Options) { o.Workload, o.TTL = LockContended, -time.Second }, "--ttl must be positive for lock-contended"},
		{"no ttl for lock-uncontended", func(o *Options) { o.Workload, o.TTL = LockUncontended, 0 }, "--ttl must be positive for lock-uncontended"},
		{"locks need no leases count", func(o *Options) { o.Workload, o.Leases, o.Connections = LockContended, 0, 16 }, ""},
		{"put needs no leases nor ttl", func(o *Options) { o.Leases, o.TTL = 0, 0 }, ""},
	}
	for _, w := range Workloads() {
		tests = append(tests, struct {
			name    string
			change  func(*Options)
			wantErr string
		}{"workload " + string(w), func(o *Options) { o.Workload = w }, ""})
	}
	for _, tc := range tests {
		o := valid()
		tc.change(&o)
		err := o.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: Validate = %v, want nil", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestWorkloadKinds(t *testing.T) {
	for _, tc := range []struct {
		w                               Workload
		readsKeys, watch, locks, leases bool
	}{
		{Put, false, false, false, false}, {Get, true, false, false, false}, {GetStale, true, false, false, false},
		{Mixed, true, false, false, false}, {Txn, true, false, false, false},
		{WatchIdle, false, true, false, false}, {WatchDelay, false, true, false, false},
		{LeasesKeepalive, false, false, false, true}, {LockUncontended, false, false, true, true}, {LockContended, false, false, true, true},
	} {
		if got := tc.w.Locks(); got != tc.locks {
			t.Errorf("%s.Locks() = %v, want %v", tc.w, got, tc.locks)
		}
		if got := tc.w.UsesLeases(); got != tc.leases {
			t.Errorf("%s.UsesLeases() = %v, want %v", tc.w, got, tc.leases)
		}
		if got := tc.w.ReadsKeys(); got != tc.readsKeys {
			t.Errorf("%s.ReadsKeys() = %v, want %v", tc.w, got, tc.readsKeys)
		}
		if got := tc.w.Watches(); got != tc.watch {
			t.Errorf("%s.Watches() = %v, want %v", tc.w, got, tc.watch)
		}
	}
	if len(Workloads()) != 10 {
		t.Errorf("Workloads() = %v: a workload without a row here", Workloads())
	}
}

func TestParseEndpoints(t *testing.T) {
	tests := []struct {
		in      string
		want    string // the endpoints joined by spaces
		wantErr string
	}{
		{in: "127.0.0.1:8001", want: "http://127.0.0.1:8001"},
		{in: "127.0.0.1:1, https://h:2/ ,", want: "http://127.0.0.1:1 https://h:2"},
		{in: "a:1,b:2,c:3", want: "http://a:1 http://b:2 http://c:3"},
		{in: "http://127.0.0.1:1,,http://127.0.0.1:1", want: "http://127.0.0.1:1 http://127.0.0.1:1"},
		{in: "HTTP://h:1", want: "http://h:1"},
		{in: "[::1]:8001", want: "http://[::1]:8001"},
		// A path is kept, as the Go client keeps it: requests go below it.
		{in: "http://h:1/raftkv/", want: "http://h:1/raftkv"},
		{in: "", wantErr: "no endpoint given"},
		{in: " , ,", wantErr: "no endpoint given"},
		{in: "ftp://127.0.0.1:1", wantErr: "want http(s)://host:port"},
		{in: "127.0.0.1:1,ftp://h:2", wantErr: "want http(s)://host:port"},
		{in: "http://", wantErr: "want http(s)://host:port"},
		{in: "http://h:1?x=1", wantErr: "want http(s)://host:port"},
		{in: "http://h:1#top", wantErr: "want http(s)://host:port"},
		{in: "http://h:1:2:3", wantErr: "endpoint"},
	}
	for _, tc := range tests {
		got, err := ParseEndpoints(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseEndpoints(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("ParseEndpoints(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNewChecksOptions(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Options)
		wantErr string
	}{
		{"invalid option", func(o *Options) { o.Keys = 0 }, "--keys must be at least 1"},
		{"no endpoints", func(o *Options) { o.Endpoints = nil }, "no endpoint given"},
		{"bad endpoint", func(o *Options) { o.Endpoints = []string{"ftp://h:1"} }, "want http(s)://host:port"},
	}
	for _, tc := range tests {
		o := valid()
		tc.change(&o)
		g, err := New(o)
		if err == nil {
			g.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: New = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	o := valid()
	o.Endpoints = []string{"127.0.0.1:1", " https://h:2/ "}
	o.KeyPrefix = "my bench/"
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got, want := strings.Join(g.keyURLs, " "), "http://127.0.0.1:1/v1/kv/my%20bench/ https://h:2/v1/kv/my%20bench/"; got != want {
		t.Errorf("key URLs = %q, want %q", got, want)
	}
}
