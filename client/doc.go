// Package client is the remote Go client of a raftkv cluster: it speaks the
// HTTP API (docs/http-api.md) and offers the same methods as the embedded
// node (package raftkv), so a program can switch between the two.
//
// # Basics
//
// New takes a Config listing one or more endpoints (base URLs of cluster
// nodes) and contacts none of them. Any node serves any request: writes
// sent to a follower are forwarded to the leader by the server, so the
// client needs no notion of who leads. A Client is safe for concurrent
// use; Close stops its background work and releases the idle connections
// of the HTTP client it created.
//
// Errors come back as the very sentinels of package kv: errors.Is(err,
// kv.ErrNotFound) and errors.Is(err, kv.ErrPreconditionFailed) hold for
// errors decoded from the server's JSON error body (see DecodeError), which
// keep the server's message and, after a failed compare-and-swap, the key's
// current ETag in a *kv.WireError.
//
// # Endpoints
//
// Besides the configured endpoints the client uses every member's API
// address, read from GET /v1/cluster: on its first call, every
// Config.RefreshInterval (a minute by default; checked when a call starts
// and when a watch or election stream delivers a line, so that a client
// that only watches learns new members too), and after a failed attempt
// (at most once a second). The refresh runs in one goroutine beside the
// calls and never delays them; Close stops it. So a client configured with
// one node keeps working when that node dies, once it has made one call.
// A call starts at the endpoint that last answered and, after a failure,
// moves on to the next one, preferring endpoints that have not failed in
// the last moment (an endpoint that answered 503 with Retry-After is left
// alone that long, up to Config.MaxBackoff).
//
// # Failover
//
// Each call makes attempts, one endpoint at a time, until it has an answer
// to return or its context ends (or Config.MaxAttempts is reached). Before
// each retry it pauses: Config.MinBackoff (50 ms) doubling up to
// Config.MaxBackoff (1 s), with random jitter, never past the context's
// deadline. An endpoint that does not answer (a paused or cut-off node) is
// given up after Config.AttemptTimeout (5 s) for reads and keyed writes; a
// read asks the server to wait (?wait: for min_index, a read index, a
// leader) at most nine tenths of that.
//
// Every write carries an idempotency key (the Idempotency-Key header),
// unless the caller opts out with kv.WithoutIdempotencyKey: the caller's,
// from kv.Idempotent (or the deprecated kv.WithIdempotencyKey context), else
// one the client makes for the call, 128 random bits from crypto/rand. Every
// attempt of the call sends the same key. The state machine records each key
// with the write's first result, and a write whose key it has recorded
// applies nothing and returns that result (docs/consistency.md,
// "Idempotency keys"); so a keyed write can be resent, to any node, and
// applies at most once, and the caller gets the first attempt's answer. The
// record lives for 100,000 log entries: a resend that many entries after
// the write applied would apply again, so keep a call's deadline well
// inside the time the cluster takes to write 100,000 entries.
//
// What an attempt's answer leads to:
//
//	answer                                   read    keyed write       write without key
//	2xx                                      return  return            return
//	connection never made (kv.NotSent)       retry   retry             retry
//	sent, then the connection failed or      retry   retry (unknown)   return kv.ErrOutcomeUnknown
//	  AttemptTimeout passed
//	503 no_leader, shutting_down             retry   retry             retry
//	504 timeout (a write: queued, never      retry   retry             retry
//	  applied; a read: ?wait ran out)
//	504 outcome_unknown, 500, other 5xx      retry   retry (unknown)   return, wrapping kv.ErrOutcomeUnknown
//	412, 422 and any other 4xx               return  return            return
//	TLS handshake refused (see TLS)          next endpoint; return once each refused
//
// A keyed write whose outcome was unknown at some attempt ("unknown" above)
// keeps that in mind: if no later attempt settles it, with a 2xx or an
// answer of the state machine about the request itself (412
// precondition_failed, 422 idempotency_key_reused), the call's error wraps
// kv.ErrOutcomeUnknown, even when the last attempt was a "not applied"
// answer such as 503 no_leader or the context ended; that answer is only
// quoted in the message, never wrapped. When every attempt failed to
// connect, the error wraps ErrUnreachable (and, if that is why the call
// stopped, the context's error).
//
// # TLS
//
// An https:// endpoint is reached over TLS, configured by Config.TLS:
// RootCAs holds the CA that signed the nodes' certificates (nil: the
// system's roots), Certificates the client's certificate for a cluster
// that requires one. With Config.TLS set, a bare host:port means https,
// and the members learned from GET /v1/cluster are reached with the
// scheme of the endpoint that listed them (a cluster is all TLS or all
// plaintext). A handshake that fails on a certificate (the client cannot
// verify the node's: unknown authority, another name, expired; the node
// refuses the client's, or its lack of one) or that meets a plaintext
// node is a configuration error, not a fault: the call tries each known
// endpoint once and returns the error, which wraps ErrUnreachable (no
// request reached a server, so a write was certainly not applied) and the
// cause (errors.As finds *tls.CertificateVerificationError and the
// x509 error in it; a node's refusal is a *net.OpError "remote error").
//
// # Watches
//
// Watch streams the changes to a key or a prefix (GET /v1/watch/{key},
// NDJSON) as a range-over-func sequence of kv.WatchResponse, one per raft
// index, progress notifications included. A watch is a chain of streams:
// when one is lost (the connection fails, or stays silent for three
// progress intervals: a paused or cut-off node), or the server ends it
// because it shuts down, or a node refuses it (503 too_many_watchers,
// no_leader...), the next opens on another endpoint, through the same
// endpoint choice and backoff as every call, from the index after the last
// one delivered. The invariant: the indexes a watch delivers never go down,
// no index's events are delivered twice, and none is skipped; an index the
// nodes no longer keep ends the watch with a *kv.CompactedError instead.
// The attempt timeout bounds only the wait for a stream's header. The
// sequence runs in the caller's goroutine (the client starts none for it),
// and breaking out of the range loop closes the stream's connection.
//
// # Leases, locks and elections
//
// Grant, Revoke, Unlock and Resign are writes without an idempotency key:
// resent only when certainly not applied. KeepAliveOnce is resent after
// any failure, as a read is: a keepalive applied twice restarts the TTL as
// one does, so none of its answers is an unknown outcome. Lock and
// Campaign wait on the server until the name is held: no attempt timeout
// cuts them short; they send ?wait (LockOptions.Wait, or nine tenths of
// what is left of the context's deadline when that comes first), take a
// 504 timeout as the answer (the wait ran out, the waiter was removed:
// kv.ErrTimeout), and a connection lost while the server waited as an
// unknown outcome (kv.ErrOutcomeUnknown: the lease may hold the lock or
// a place in its queue until it is revoked). ObserveElection chains
// streams as Watch does (the same helper), yielding only changes of
// leader; its stream has no progress lines, so a silent node is not
// detected, only a failed connection.
//
// # Access control
//
// A cluster run with ACLs (docs/security.md) wants a token on every
// request: Config.Token is sent as Authorization: Bearer. A missing,
// unknown or revoked token is an error wrapping kv.ErrUnauthenticated
// (401), a token without the right a call needs one wrapping
// kv.ErrPermissionDenied (403), whose message names the right and the
// key; both are the server's answer, returned at once, and nothing was
// written. CreateToken, Tokens and RevokeToken manage tokens (a token
// with admin): CreateToken and RevokeToken are writes without an
// idempotency key, resent only when certainly not applied (a resent
// create could make a second token whose secret nobody sees), Tokens is
// a read.
//
// # Blocking reads
//
// Get and List with kv.ReadOptions.WaitIndex are blocking reads
// (?wait_index): the server holds the answer until the key (a key under
// the prefix) changes at an index above WaitIndex, or WaitTime passes
// (default kv.DefaultBlockingWait, at most five minutes), then reads. The
// client sends what is left of WaitTime as ?wait, cut to nine tenths of
// what is left of the context (so the answer, the state at that moment,
// comes before the caller gives up), and bounds each attempt by that wait
// plus the attempt timeout.
//
// # Caveats
//
// A write without an idempotency key (kv.WithoutIdempotencyKey, and the
// membership calls Join, AddMember, RemoveMember, PromoteMember and
// TransferLeadership, which take none) is resent only when it was certainly not applied: the
// connection was never made, or the server said so (503 no_leader or
// shutting_down, 504 timeout). Any other failure after it was sent is
// returned wrapping kv.ErrOutcomeUnknown, and such a write is not bounded
// by AttemptTimeout (giving up on it could only lose its answer): its
// context bounds it.
//
// Reads are resent after any failure: they change nothing. A linearizable
// read stays linearizable on whichever node serves it; a stale read that
// moves to another node may see older data (pass MinIndex to prevent it).
// A read with MinIndex that no node serves before its context ends fails
// with an error that wraps the context's error and the last attempt's
// *kv.WaitError (how far that node got).
//
// The generated keys cost the server a record per write (kept for 100,000
// log entries); opt out per write with kv.WithoutIdempotencyKey where a
// write must be cheap and an unknown outcome is acceptable.
//
// With Config.MaxAttempts zero (the default) a call retries as long as its
// context allows: give it a deadline.
//
// The default HTTP client does not use a proxy (HTTP_PROXY is ignored): it
// talks to cluster nodes directly. Pass Config.HTTPClient to change that.
package client
