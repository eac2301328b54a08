package loadgen

// Result is what Run measured; raftkv bench --json prints it as it is.
type Result struct {
	Workload    Workload `json:"workload"`
	Endpoints   []string `json:"endpoints"`
	Connections int      `json:"connections"`
	ValueSize   int      `json:"value_size"`
	Keys        int      `json:"keys"`
	// Warmup and Seconds are the warm-up and the measured time, in seconds.
	Warmup  float64 `json:"warmup_s"`
	Seconds float64 `json:"duration_s"`
	// Ops counts the successful requests; OpsPerSec is Ops over Seconds.
	Ops       int64     `json:"ops"`
	OpsPerSec float64   `json:"ops_per_sec"`
	Latency   LatencyMS `json:"latency_ms"`
	// ErrorsTotal counts the failed requests, Errors by kind, most
	// frequent first (never nil).
	ErrorsTotal int64        `json:"errors_total"`
	Errors      []ErrorCount `json:"errors"`
}

// LatencyMS holds latencies of successful requests in milliseconds.
type LatencyMS struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// ErrorCount counts the failures of one kind, with one message as an example.
type ErrorCount struct {
	Kind    string `json:"kind"`
	Count   int64  `json:"count"`
	Example string `json:"example"`
}

// mergeErrors adds the counts of src into dst (copies: src is left as it
// is).
func mergeErrors(dst, src map[string]*ErrorCount) {
	for k, e := range src {
		if t, ok := dst[k]; ok {
			t.Count += e.Count
		} else {
			c := *e
			dst[k] = &c
		}
	}
}

// countError adds one error of kind to errs, keeping the first message
// of each kind as its example.
func countError(errs map[string]*ErrorCount, kind, message string) {
	if e, ok := errs[kind]; ok {
		e.Count++
		return
	}
	errs[kind] = &ErrorCount{Kind: kind, Count: 1, Example: message}
}
