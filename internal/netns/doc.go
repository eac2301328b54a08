// Package netns builds, for tests, a private IPv4 network of Linux network
// namespaces: one namespace per host, a router namespace every host routes
// through, and a client namespace for the test's own connections. It is
// Linux only and needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the `ip`
// command of iproute2; Probe says whether this machine allows it, and why
// not.
//
// # Topology
//
// The router namespace holds one veth per host; every router veth carries
// the gateway address (GatewayAddr, a /32) and a /32 route to its host's
// address. A host has one interface, eth0, with its own /32 address, a route
// to the gateway on eth0 and a default route through it; the router
// forwards between its veths (ip_forward is turned on inside the router
// namespace only). Addresses come from the benchmarking range 198.18.0.0/15
// and are never reused within a Network, so a host that moves to a new
// address (Readdress) never takes one that peers still remember for
// someone else. Namespaces do not share anything with the machine's own
// network: the root namespace is never changed, nothing is routed out of
// the private network, and networks of parallel runs cannot see each other
// even though they use the same addresses.
//
// # Cuts
//
// Drop(a, b) loses every packet from a to b with a policy rule in the
// router, `ip rule add from A to B blackhole`: the packet is discarded in
// between, with no ICMP error and nothing the sender's kernel can notice,
// as on a real partition. Its sends succeed and its connections time out.
// A blackhole route on the sender, or an `unreachable` or `prohibit` rule,
// would instead fail the send at once or answer with an ICMP error, and
// hide the timeouts a real partition causes. The cuts are kept per ordered
// pair of host names and follow a host to a new address.
//
// # The test's connections
//
// DialContext connects from the client namespace: a goroutine locks itself
// to an OS thread, moves that thread into the client namespace (setns),
// creates and connects the socket there, and exits without unlocking, so
// the runtime discards the thread instead of reusing it in the wrong
// namespace. A socket stays in the namespace it was created in, so the
// returned connection is the client namespace's for its whole life while
// the test process itself stays in the root namespace. The socket's
// namespace is checked (SIOCGSKNS) before it connects: a connection can
// never leave from the machine's own network by mistake.
//
// # Names and leftovers
//
// Namespaces are named NamePrefix-<pid>-<random>-<role>, unique per Network.
// New deletes namespaces of that scheme whose process is gone (a run that
// crashed before its Close); Close deletes the Network's own.
//
// A Network does not start or stop processes: Command and ExecArgs give
// the `ip netns exec` prefix that runs a program inside a host's
// namespace, and the caller owns the process.
package netns
