// Package client is the remote Go client of a raftkv cluster: it speaks the
// HTTP API (docs/http-api.md) and offers the same methods as the embedded
// node (package raftkv), so a program can switch between the two.
//
// # Basics
//
// New takes a Config listing one or more endpoints (base URLs of cluster
// nodes). Any node serves any request: writes sent to a follower are
// forwarded to the leader by the server, so the client needs no notion of
// who leads. A Client is safe for concurrent use; Close releases the idle
// connections of the HTTP client it created.
//
// Errors come back as the very sentinels of package kv: errors.Is(err,
// kv.ErrNotFound) and errors.Is(err, kv.ErrPreconditionFailed) hold for
// errors decoded from the server's JSON error body (see DecodeError), which
// keep the server's message and, after a failed compare-and-swap, the key's
// current ETag in a *kv.WireError.
//
// # Failover
//
// Requests go to the endpoint that last answered, and move on to the next
// endpoint only when the request certainly never reached a server (the
// connection could not be dialed). When no endpoint can be dialed the error
// wraps ErrUnreachable. A read that fails any other way in transit may be
// tried on the next endpoint too, since reads are idempotent.
//
// # Caveats
//
// A write (PUT, DELETE, POST) that fails in transit after its connection was
// made is never retried: it may or may not have been applied, and a retry
// could apply it twice. Its error wraps kv.ErrOutcomeUnknown, as does a
// write whose context ends while it is in flight. An HTTP error answer (a
// 503 no_leader, say) is returned as it is and never tried elsewhere.
//
// The default HTTP client does not use a proxy (HTTP_PROXY is ignored): it
// talks to cluster nodes directly. Pass Config.HTTPClient to change that.
package client
