// Package loadgen is the load generator behind raftkv bench: it measures
// the throughput and latency of a raftkv cluster over its HTTP API, and
// serves the do-nothing handler that measures the machine's HTTP ceiling
// with the same client.
//
// # What it measures
//
// Run drives one request Workload (put, get, get-stale, mixed, txn) with
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
// # Watches
//
// Two workloads measure watches (GET /v1/watch/{prefix}?prefix, NDJSON)
// instead of requests; they have their own run methods and results.
//
// RunWatchIdle opens Options.Watchers watches on one node and reports what
// they cost it: the node's /metrics (resident set, Go heap and stacks in
// use, goroutines, raftkv_watchers) sampled before the watches open, once
// the node counts them all, and after they closed and the node let them
// go, each sample right after two forced garbage collections (GET
// /debug/pprof/heap?gc=1, so the node must serve --pprof). Per watcher is
// (open − before) / opened. The resident set only grows when the Go
// runtime has no free memory to reuse, so its figure means something on a
// node that has not served load before.
//
// RunWatchDelay opens Watchers watches over the endpoints, then writes at
// Options.Rate puts a second, each write to a key of its own (KeyPrefix and
// its sequence number: several writes may share one raft index, so the
// index alone does not tell them apart). For every event every watcher
// receives it records the time from the write's answer to the event's
// arrival. Its invariants:
//
//   - Writes start after every watch is open (its 200 received), so every
//     acknowledged write is at an index each watch must deliver: an event
//     missing at a watcher, delivered twice, or with a mod_index other
//     than the write's answer is an error (WatchDelayResult.Check).
//   - Arrival is stamped once per read from the socket, before the lines
//     in it are decoded; an event that arrives before its write's answer
//     counts as a delay of 0 and is counted (events_early).
//   - Writes are sent on schedule (write s due at s/Rate) by Connections
//     writers, each with one write in flight; when all are busy the next
//     write waits, is counted late if it waited more than 10 ms, and the
//     rate achieved is reported: the run measures the rate it reached,
//     never a rate it only asked for. The run ends on time: writes still
//     waiting when Warmup + Duration is over are counted, not sent.
//   - After the last write the run waits (at most Timeout) until every
//     open stream has delivered the newest acknowledged write; streams
//     deliver in index order, so nothing of the run's writes is still on
//     its way when the books are closed.
//   - Events of warm-up writes are received but not counted.
//
// # Leases and locks
//
// Three workloads measure leases and locks (docs/leases.md) through the
// HTTP routes a client uses; they have their own run methods and results,
// and each reports what the nodes' /metrics say about its measured window
// (ClusterFigures: every node's CPU, which node led, the raft entries the
// leader committed and the run's operations per entry, the leader's
// entries per state machine batch, the followers' forwarded batches, and
// the lease checkpoints and expiries the leader wrote). Every node's
// /metrics is read as the window opens and again once the last request
// of the run is answered.
//
// RunLeases (leases-keepalive) grants Options.Leases leases of Options.TTL
// (not measured), then keeps all of them alive from Connections workers,
// each sending POST /v1/lease/{id}/keepalive for the leases of its own in
// turn, one after another, as fast as the cluster answers, round-robin
// over the endpoints. Its invariants:
//
//   - Every granted lease belongs to exactly one worker (lease s to worker
//     s mod Connections), so each lease is kept alive every Leases /
//     (keepalives a second) seconds on average; MaxGapMS is the longest
//     any lease actually went, from the sending of one acknowledged
//     keepalive (or its grant) to the next (or the end of the run).
//   - A lease is lost when a keepalive of it is answered 404
//     lease_not_found (it is not kept alive after that), or when GET
//     /v1/lease after the run does not list it. A lost lease fails the
//     run (LeasesResult.Check): as long as every gap stays below the TTL,
//     a correct cluster loses none.
//   - The leases that are not lost are revoked after the run, so rounds
//     on one cluster start from the same state.
//
// RunLocks (lock-uncontended, lock-contended) has Connections workers
// loop acquire (POST /v1/lock/{name}?wait= with {"ttl": TTL}: the node
// grants the hold a lease of its own) → release (DELETE
// /v1/lock/{name}?token=) → revoke of that lease (DELETE /v1/lease/{id}),
// which is what raftkv lock and the concurrency package do. Each cycle
// goes to one endpoint, the next cycle to the next. Under lock-uncontended
// every worker has a lock of its own (LockName and -i), under
// lock-contended all take one lock, so AcquisitionsPerSec is the handoffs
// a second and the acquire latency includes the wait in the queue. Its
// invariants:
//
//   - A worker marks its lock held in the run's books when the acquire is
//     answered and free before it sends the release; the next holder is
//     answered only after the release applied, so a correct lock is never
//     found held by the books (Overlaps), and every acquisition's fencing
//     token is above the one before (TokenRegressions). Either fails the
//     run (LockResult.Check).
//   - A cycle counts when its acquire was sent after the warm-up; when the
//     time is over, each worker finishes the cycle it is in.
//
// Errors name the options by their raftkv bench flags (--connections, ...),
// since that command is what this package exists for.
package loadgen
