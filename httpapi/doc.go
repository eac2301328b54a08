// Package httpapi serves raftkv's HTTP API (docs/http-api.md) over a Backend,
// the node it fronts.
//
// # Basics
//
// Handler owns its routing, from one route table (routes.go; a test holds
// it and docs/http-api.md together): /v1/kv/ and /v1/watch/ keys are
// taken from the escaped request path as they are (ServeMux would clean
// "a//b" or "../x" and redirect), and every other route dispatches on the method itself, so
// that a wrong method gets a JSON 405 with Allow like every other error.
// Every response of an API route (not /debug/pprof/, not Go's own
// plain-text 400s) carries X-Raft-Index (the applied index it reflects, or
// this node's applied index) and X-Raft-Node (the node that answered).
// Errors are JSON {"error":{"code","message"}}; statusOf is the one place
// that maps an error to a status code. Bad input is a 4xx: the parsers
// (params.go) wrap kv.ErrBadRequest, kv.ErrInvalidKey or kv.ErrTooLarge.
//
// Writes are answered by the node that receives them. The handler parses
// and checks a write and calls the Backend, which applies it through raft
// on the leader; a follower's Backend sends it to the leader in a binary
// batch (ApplyPath) and returns the leader's outcome. With ?redirect a
// follower answers 307 with the leader's URL instead. Writes are never
// relayed as HTTP requests. Only the membership calls (join, remove,
// transfer leadership) are relayed: a follower sends them to the leader
// over the member-to-member client (NewPeerClient) and copies the answer
// back; a relayed request is never relayed again. Whether a failed relay
// reached the leader decides the answer: not sent is 503 no_leader (or 504
// timeout when the request ended first: certainly not applied), possibly
// sent and lost is 504 outcome_unknown. Reads are never forwarded: a
// follower serves linearizable reads itself once it has applied the
// leader's read index (GET ReadIndexPath). The internal routes
// (internal.go) are never relayed.
//
// Watches (watch.go) are served like reads, by the node that receives
// them, from its own applied state (Backend.Watch). The watch opens before
// the status is written, so a watch that cannot open is an ordinary error
// answer (410 compacted with the history kept, 503 too_many_watchers);
// then the 200's header is flushed at once, every line is one whole JSON
// object (NDJSON) or server-sent event, flushed after each batch the
// Watcher returns, and no write deadline applies. A stream the server
// ends (compacted, shutting down, any failure of the Watcher) ends with an
// error line, never silently; a stream whose client went away just stops.
// The handler always closes the Watcher. A blocking read (?wait_index) is
// a read with kv.ReadOptions.WaitIndex: its ?wait bounds the wait for a
// change, and the request that wait plus the bound of a read.
//
// Leases, locks and elections (lease.go, lock.go) are answered like
// writes, by the node that receives them: the Backend takes them to the
// leader. A lock or a campaign blocks under the request's context, bounded
// by its ?wait (kv.LockOptions.Wait: then 504 timeout); the client going
// away ends the wait. An election's observe stream is framed and flushed
// like a watch (the same writer, watchStream), and like a watch it reads
// its first line (the current leader) before the status is written, so an
// observation that cannot start is an ordinary error answer. A put's
// ?lease or ?ttl and a write's ?lock&token become kv.WriteOptions Lease,
// TTL and Fence, checked by the state machine in the write's own entry.
//
// Metrics holds the HTTP request metrics only; the node registers its own
// (raft, the state machine, write batches) on the same registry.
//
// # Caveats
//
// Bodies are limited before they are read: a Content-Length over the limit
// is refused at once with 413, and a body that turns out longer is cut off
// at the limit and refused too. The handler never retries a request, and
// relays no header that would let net/http resend one on its own
// (Idempotency-Key).
package httpapi
