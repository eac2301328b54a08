// Package raftkv is an embeddable, strongly consistent key-value store:
// a bbolt state machine replicated by hashicorp/raft, with an HTTP API.
//
// # Basics
//
// Open starts a Node from a Config. A node with an empty data directory
// forms or joins a cluster (Config.Join, Config.BootstrapExpect); one with
// raft state rejoins the cluster it belongs to. With no Join addresses and
// BootstrapExpect 0 or 1, the node forms a single-node cluster on its own.
// A node that joins a running cluster is added as a non-voter and promoted
// to voter by the leader once it has caught up (Config.PromoteLag);
// AddMember, RemoveMember and PromoteMember change the members from any
// node (docs/architecture.md, "Membership").
//
// The Node's methods (Put, Get, Delete, DeletePrefix, List, Txn,
// Cluster) are the same as those of the remote client in package
// client, so a program can switch between the two. Writes made on a
// follower travel to the leader in batches (internal/forward), each still
// answered with its own result. Reads are served by the node that receives
// them: a follower serves a linearizable read from its own state once it
// has applied a read index it got from the leader.
// docs/architecture.md describes the layers, the design decisions and the
// invariants.
//
// Handler returns the HTTP API, for a program that serves it on its own
// server; Config.HTTPAddr makes the node serve it itself. Members reach
// each other's API at the address each node registers in the replicated
// state, so every member of a multi-node cluster needs one: Config.HTTPAddr,
// or Config.HTTPAdvertise when the program serves Handler itself.
//
// # Caveats
//
// A Node is silent unless given a Logger and registers its metrics on its
// own registry (Config.Registry), so several nodes can live in one process.
// A write that fails with kv.ErrOutcomeUnknown may or may not have been
// applied: the node never retries it.
package raftkv
