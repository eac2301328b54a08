// Package testkit starts real raftkv clusters for tests: every node a full
// raftkv.Node with its HTTP API and raft transport on loopback TCP, data in
// t.TempDir(), ports chosen by the kernel and kept across restarts, and
// everything stopped by t.Cleanup. Helpers poll with a deadline; none sleeps.
package testkit
