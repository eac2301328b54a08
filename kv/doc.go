// Package kv holds the vocabulary shared by every layer of raftkv: the
// record a key maps to, the options and results of reads and writes, and the
// sentinel errors callers branch on.
//
// It is a leaf package (standard library only) so that the state machine
// (store), the raft wiring (raftnode), the HTTP API (httpapi), the embeddable
// node (package raftkv) and the remote Go client (client) all speak in the
// same types and return the very same error values: errors.Is(err,
// kv.ErrNotFound) holds whether the error came from a local bbolt read or
// from a JSON error body received over HTTP.
//
// Every sentinel has a stable wire code (see Code and FromCode); the HTTP
// status for each code is chosen in one place, httpapi.
package kv
