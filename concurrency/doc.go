// Package concurrency builds sessions, mutexes and elections on the lease,
// lock and election calls of a raftkv cluster, as etcd's concurrency
// package does on etcd's. It works over the API interface, which both the
// embedded node (*raftkv.Node) and the remote client (*client.Client)
// implement, and depends on nothing else but package kv.
//
// # Keeping a lease alive
//
// KeepAlive keeps a lease alive from one goroutine of its own: a keepalive
// every TTL/3, retried after a failure until the lease would have expired.
// It measures that from the send time of the last acknowledged keepalive
// (the server restarted the TTL no earlier than it was sent, so the lease
// lives at least TTL from then): when that moment passes without a newer
// acknowledgement, the Keeper gives the lease up (ErrLeaseExpired) and
// closes Done, even though the server may keep the lease a little longer.
// A server that answers that the lease does not exist ends it at once
// (kv.ErrLeaseNotFound). Stop ends the goroutine and waits for it; the
// Keeper's context ending does the same.
//
// # Sessions, mutexes and elections
//
// A Session is a lease granted for it and kept alive until Close, which
// revokes it. Mutexes and elections hang on a session's lease: when it is
// lost (Done closes) the cluster deletes their keys as the lease expires,
// so a lock or a leadership lasts no longer than its session. A Mutex
// holds a lock with a fencing token (Token) that increases with every
// acquisition of the lock's name: pass it to writes with kv.WithFence, so
// that a holder that lost the lock without knowing it (a pause longer
// than the TTL) cannot write. An Election is a lock whose holder has a
// value and whose holder anyone can read or observe.
//
// # Invariants
//
// Every goroutine has one owner: a Keeper's goroutine is stopped by Stop
// or its context (a Session's by Close); a Lock or Campaign call that
// watches its session for loss ends its watcher before it returns. The
// package keeps no global state.
//
// A Lock or Campaign whose outcome is unknown (the error wraps
// kv.ErrOutcomeUnknown: the remote client lost the connection while the
// server waited) may have left the session holding the lock, or a place
// in its queue: close the session, which revokes its lease, to be sure
// that it holds nothing.
package concurrency
