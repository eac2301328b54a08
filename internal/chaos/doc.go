// Package chaos is raftkv's Jepsen-style fault harness: it runs real
// raftkv processes, breaks them and the network between them, and checks
// that what clients saw is linearizable and that no acknowledged write is
// lost. docs/chaos.md describes how to run it and what a failure leaves
// behind.
//
// # Basics
//
// A Cluster starts `raftkv serve` processes on loopback, each in its own
// process group, output appended to <run>/<id>/node.log, data in
// <run>/<id>/data. The raft traffic of every ordered pair of nodes (A
// dials B) goes through a Proxy the harness owns: A is started with
// --raft-peer-addrs B=<proxy A→B>, while every node advertises its real
// raft address. A Proxy can cut its link (close live connections, hold new
// ones), hold one direction (A's requests reach B, B's answers do not),
// delay, throttle, or act lossy (stalls and resets). The Cluster also
// SIGKILLs, SIGSTOPs/SIGCONTs, restarts, wipes and removes nodes. HTTP
// traffic goes to the nodes directly.
//
// A Workload runs clients that get, put, compare-and-swap (If-Match the
// mod_index they last saw), create (If-None-Match: *) and delete a handful
// of keys against random nodes; a Recorder keeps each operation's call and
// return time. RegisterModel, a porcupine model partitioned by key, checks
// the history: a key is a register holding a value with its mod_index,
// create_index and version.
//
// # Caveats
//
// Outcomes are classified by the HTTP contract (docs/http-api.md): 200 and
// 412 are exact; 503 no_leader, 504 timeout and a connection that was never
// made mean "not applied"; anything else on a write (504 outcome_unknown,
// 500, a timeout or a connection lost after sending) means "may or may not
// have happened", and such an operation returns at the end of the history.
// Failed reads are left out. If the server breaks the contract (says "not
// applied" for a write that was applied), the check fails: that is a
// finding, not noise.
//
// Indexes the clients have not observed (written by an operation of
// unknown outcome) are bound lazily by the model the first time a read
// reveals them, and every write's index must exceed the last known one in
// linearization order.
//
// # Watches
//
// A round may run watchers (the fault matrix and TestWatchExactUnderFaults
// do): one per node over plain HTTP, which reopens on the same node from
// the last index it received + 1 whenever its stream ends (a kill, a
// shutting_down line), and some through the Go client, which resume across
// nodes by themselves. Each records every response it receives. At the end
// the committed history of the watched keys is read from every node (from
// index 1, with previous records, through the index all converged to); the
// nodes' histories must be identical, and the history must follow the state
// machine's rules (CheckHistory: mod_index, version, create_index, prev),
// hold every acknowledged write at its index and nothing a client did not
// send or was told was not applied, and replay to every node's keys. Each
// watcher's record must then equal the history of its range from its start
// index through the last index it reached (CheckStream): no gap, no
// duplicate, no index going back, identical events. A watcher that ends
// with compacted fails the round: the harness keeps the history of the
// whole run (--watch-history), so that is a finding. A node that joins
// during a round gets a watcher of its own from index 1 once it is ready;
// the watchers of a node that leaves are retired (WatchStream.Retired):
// what they delivered is checked, but not that they reached the end. The
// comparisons are pure functions over recorded streams (watchcheck.go),
// tested on their own.
//
// # Hosts
//
// With Config.Hosts every node is a host of its own: a Linux network
// namespace with its own address on a private network (package
// internal/netns), started with `ip netns exec`, serving on
// <address>:8001 and :9001, and reached by the harness from a client
// namespace. There are no proxies: CutPair, Isolate, DropOneWay and
// Restore add and remove `blackhole` policy rules in the router namespace
// every host routes through, so packets are lost in between, silently,
// raft and the members' HTTP alike (the clients' namespace is never cut).
// AddNode, ForgetNode and Move add a host that joins through --join,
// delete one, and give a stopped one a new address; the membership tests
// drive them with the HTTP API's membership routes (remove, promote)
// under the same workload and checks. Nodes are started from
// one OS thread that lives as long as the Cluster: on Linux they carry
// Pdeathsig, which the kernel sends when the forking thread ends, and the
// namespace dials end the threads they run on.
//
// A Ledger is the crash-durability check: after every node was SIGKILLed
// under load, a key must hold its last acknowledged write (highest
// mod_index) or a later write of unknown outcome, with a version between
// the acknowledged count and that plus the unknown ones.
package chaos
