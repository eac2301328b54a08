// Package loadgen is the load generator behind raftkv bench: it measures
// the throughput and latency of a raftkv cluster over its HTTP API, and
// serves the do-nothing handler that measures the machine's HTTP ceiling
// with the same client.
//
// # What it measures
//
// Run drives one Workload (put, get, get-stale, mixed, txn) with
// Options.Connections workers for Options.Duration, after Options.Warmup,
// which is not counted. Throughput is the number of successful requests
// (any 2xx answer) over the measured time; latency is the time from
// sending a successful request to having read its whole answer, kept in a
// log-linear histogram per worker. Every other outcome is an error, counted
// by kind: "http STATUS CODE" with the code of the JSON error body
// (kv.ErrorResponse), "http STATUS" when the body is not one, or the
// transport failure ("timeout", "connection refused", ...).
//
// # Invariants
//
//   - Each worker has at most one request in flight, so at most
//     Connections connections per endpoint are ever busy; the pool keeps
//     them all alive between requests and never opens more.
//   - Every request that starts after the warm-up is counted exactly once:
//     as an op (with its latency) or as an error of one kind. Requests that
//     start during the warm-up are not counted at all. When Run stops, each
//     worker finishes the request it has in flight, which counts.
//   - A run whose context ends early reports no figures, only an error: a
//     request cut short says nothing about the cluster.
//   - Nothing is retried: a failed request is an error, never a second
//     request.
//   - Each worker sends its requests round-robin over the endpoints,
//     worker i starting at endpoint i mod len(Endpoints). Keys are
//     KeyPrefix and at least eight digits (bench/00000042), drawn uniformly
//     from [0, Keys); the value is ValueSize letters, the same for every
//     request and every run of that size, so a transaction carries it as a
//     JSON string.
//   - Latency quantiles are never below the true value and at most 0.8%
//     above it (or the maximum, whichever is smaller).
//
// Errors name the options by their raftkv bench flags (--connections, ...),
// since that command is what this package exists for.
package loadgen
