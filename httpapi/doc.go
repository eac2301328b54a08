// Package httpapi serves raftkv's HTTP API (docs/http-api.md) over a Backend,
// the node it fronts.
//
// # Basics
//
// Handler owns its routing: /v1/kv/ keys are taken from the escaped request
// path as they are (ServeMux would clean "a//b" or "../x" and redirect), and
// every other route dispatches on the method itself, so that a wrong method
// gets a JSON 405 with Allow like every other error. Every response carries
// X-Raft-Index (the applied index it reflects, or this node's applied index)
// and X-Raft-Node (the node that answered). Errors are JSON
// {"error":{"code","message"}}; statusOf is the one place that maps an error
// to a status code.
//
// Writes are served by the leader. A follower forwards a write to the leader
// over one pooled keep-alive client, exactly as received, and returns the
// leader's answer; with ?redirect it answers 307 with the leader's URL
// instead. A forwarded request is never forwarded again. Whether a failed
// forward reached the leader decides the answer: not sent is 503 no_leader
// (certainly not applied), sent and lost is 504 outcome_unknown. Reads are
// never forwarded: a follower serves linearizable reads itself once it has
// applied the leader's read index (GET /v1/internal/read-index).
//
// # Caveats
//
// Bodies are limited before they are read: a Content-Length over the limit
// is refused at once with 413, and a body that turns out longer is cut off
// at the limit and refused too. The handler never retries a write.
package httpapi
