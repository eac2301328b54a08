package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NamePrefix starts the name of every namespace this package makes.
const NamePrefix = "rkvt"

// ClientHost is the name of the client namespace's host.
const ClientHost = "client"

// nsDir is where `ip netns` keeps its named namespaces.
const nsDir = "/run/netns"

// Addresses of the private network (198.18.0.0/15, the benchmarking range).
var (
	// GatewayAddr is the router's address on every one of its veths.
	GatewayAddr = netip.MustParseAddr("198.18.0.1")
	// clientAddr is the client namespace's address.
	clientAddr = netip.MustParseAddr("198.18.0.2")
	// firstHostAddr is the first address handed to a host.
	firstHostAddr = netip.MustParseAddr("198.18.1.1")
)

// Errors.
var (
	// ErrUnsupported: this machine cannot make network namespaces (not
	// Linux, not root, no `ip`). Probe wraps it with the reason.
	ErrUnsupported = errors.New("netns: network namespaces are not available")
	// ErrNoHost: no host of that name in the Network.
	ErrNoHost = errors.New("netns: no such host")
	// ErrClosed: the Network was closed.
	ErrClosed = errors.New("netns: network closed")
)

// Config configures a Network.
type Config struct {
	// IP is the iproute2 `ip` command (default: "ip" on $PATH).
	IP string
	// Logf receives a line per change to the network (nil discards them).
	Logf func(format string, args ...any)
}

// Host is one namespace on the network.
type Host struct {
	// Name is the host's name in the Network (a node id, or ClientHost).
	Name string
	// NS is the namespace's name, as `ip netns` knows it.
	NS string

	addr     netip.Addr
	routerIf string // the host's veth in the router namespace
}

// Network is a private network of namespaces: a router, a client and the
// hosts added to it. Its methods are safe for concurrent use.
type Network struct {
	cfg    Config
	prefix string // NamePrefix-<pid>-<random>
	router string // the router's namespace

	mu       sync.Mutex
	hosts    map[string]*Host
	drops    map[[2]string]bool // from, to host names
	nextAddr netip.Addr
	nextIf   int
	closed   bool
}

// New makes a Network: the router and client namespaces, wired. It first
// deletes namespaces left by runs whose process is gone. Close removes
// everything it made.
func New(ctx context.Context, cfg Config) (*Network, error) {
	if cfg.IP == "" {
		cfg.IP = "ip"
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	tag := make([]byte, 3)
	if _, err := rand.Read(tag); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	n := &Network{
		cfg:      cfg,
		prefix:   fmt.Sprintf("%s-%d-%s", NamePrefix, os.Getpid(), hex.EncodeToString(tag)),
		hosts:    map[string]*Host{},
		drops:    map[[2]string]bool{},
		nextAddr: firstHostAddr,
	}
	n.router = n.prefix + "-router"
	CleanLeftovers(ctx, cfg.IP, cfg.Logf)
	if err := n.build(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// build makes the router and the client namespace.
func (n *Network) build(ctx context.Context) error {
	if err := n.ip(ctx, "netns", "add", n.router); err != nil {
		return err
	}
	// A packet to an address no host has (a host's old one, after
	// Readdress) is dropped silently too, as one to a machine that is
	// gone; without this route the router would answer "unreachable".
	if err := n.ipBatch(ctx, n.router, "link set lo up", "route add blackhole 198.18.0.0/15"); err != nil {
		return err
	}
	if err := n.sysctls(n.router, map[string]string{
		"net/ipv4/ip_forward": "1",
		// Nothing here speaks IPv6; keep the veths quiet.
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return err
	}
	_, err := n.addHost(ctx, ClientHost, clientAddr)
	return err
}

// AddHost makes a namespace for a new host, wired to the router with the
// next free address, and returns it.
func (n *Network) AddHost(ctx context.Context, name string) (*Host, error) {
	if name == ClientHost || name == "" || strings.ContainsAny(name, "/ \t") {
		return nil, fmt.Errorf("netns: bad host name %q", name)
	}
	n.mu.Lock()
	addr := n.nextAddr
	n.nextAddr = addr.Next()
	n.mu.Unlock()
	return n.addHost(ctx, name, addr)
}

func (n *Network) addHost(ctx context.Context, name string, addr netip.Addr) (*Host, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := n.hosts[name]; ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("netns: host %q exists", name)
	}
	n.nextIf++
	h := &Host{Name: name, NS: n.prefix + "-" + name, addr: addr, routerIf: "h" + strconv.Itoa(n.nextIf)}
	n.hosts[name] = h
	n.mu.Unlock()
	if err := n.wire(ctx, h); err != nil {
		n.mu.Lock()
		delete(n.hosts, name)
		n.mu.Unlock()
		_ = n.ip(context.WithoutCancel(ctx), "netns", "del", h.NS)
		return nil, err
	}
	n.cfg.Logf("netns: host %s at %s (namespace %s)", name, addr, h.NS)
	return h, nil
}

// wire makes h's namespace and its veth to the router.
func (n *Network) wire(ctx context.Context, h *Host) error {
	if err := n.ip(ctx, "netns", "add", h.NS); err != nil {
		return err
	}
	if err := n.sysctls(h.NS, map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return err
	}
	if err := n.ipBatch(ctx, n.router,
		fmt.Sprintf("link add name %s type veth peer name eth0 netns %s", h.routerIf, h.NS),
		fmt.Sprintf("addr add %s/32 dev %s", GatewayAddr, h.routerIf),
		fmt.Sprintf("link set %s up", h.routerIf),
		fmt.Sprintf("route add %s/32 dev %s", h.addr, h.routerIf),
	); err != nil {
		return err
	}
	return n.ipBatch(ctx, h.NS,
		"link set lo up",
		"link set eth0 up",
		fmt.Sprintf("addr add %s/32 dev eth0", h.addr),
		fmt.Sprintf("route add %s/32 dev eth0", GatewayAddr),
		fmt.Sprintf("route add default via %s dev eth0", GatewayAddr),
	)
}

// RemoveHost deletes a host's namespace (its veth goes with it) and every
// cut that names it. Processes still in the namespace keep it alive, cut
// off from everything, until they exit.
func (n *Network) RemoveHost(ctx context.Context, name string) error {
	if name == ClientHost {
		return fmt.Errorf("netns: the client host cannot be removed")
	}
	n.mu.Lock()
	h, ok := n.hosts[name]
	if !ok {
		n.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoHost, name)
	}
	var rules []string
	for k := range n.drops {
		if k[0] == name || k[1] == name {
			if r, ok := n.ruleLocked(k); ok {
				rules = append(rules, "rule del "+r)
			}
			delete(n.drops, k)
		}
	}
	delete(n.hosts, name)
	n.mu.Unlock()
	err := n.ipBatch(ctx, n.router, rules...)
	n.cfg.Logf("netns: removed host %s", name)
	return errors.Join(err, n.ip(ctx, "netns", "del", h.NS))
}

// Readdress moves a host to the next free address: its old address is
// gone from its interface and from the router, and the cuts that name it
// follow it. Connections to and from the old address hang, as they do
// when a machine comes back with another IP.
func (n *Network) Readdress(ctx context.Context, name string) (netip.Addr, error) {
	n.mu.Lock()
	h, ok := n.hosts[name]
	if !ok || name == ClientHost {
		n.mu.Unlock()
		return netip.Addr{}, fmt.Errorf("%w: %s", ErrNoHost, name)
	}
	old, addr := h.addr, n.nextAddr
	n.nextAddr = addr.Next()
	var del, add []string
	for k := range n.drops {
		if k[0] != name && k[1] != name {
			continue
		}
		if r, ok := n.ruleLocked(k); ok {
			del = append(del, "rule del "+r)
		}
	}
	h.addr = addr
	for k := range n.drops {
		if k[0] != name && k[1] != name {
			continue
		}
		if r, ok := n.ruleLocked(k); ok {
			add = append(add, "rule add "+r)
		}
	}
	n.mu.Unlock()
	err := errors.Join(
		n.ipBatch(ctx, h.NS,
			fmt.Sprintf("addr add %s/32 dev eth0", addr),
			fmt.Sprintf("addr del %s/32 dev eth0", old),
			// The kernel may have dropped routes with the old address;
			// put them back either way.
			fmt.Sprintf("route replace %s/32 dev eth0", GatewayAddr),
			fmt.Sprintf("route replace default via %s dev eth0", GatewayAddr),
		),
		n.ipBatch(ctx, n.router, append(append(del,
			fmt.Sprintf("route del %s/32 dev %s", old, h.routerIf),
			fmt.Sprintf("route add %s/32 dev %s", addr, h.routerIf)), add...)...),
	)
	if err != nil {
		return netip.Addr{}, err
	}
	n.cfg.Logf("netns: host %s moved from %s to %s", name, old, addr)
	return addr, nil
}

// Host returns the named host.
func (n *Network) Host(name string) (*Host, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.hosts[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoHost, name)
	}
	return h, nil
}

// Addr is the host's current address (the zero Addr if there is no such
// host).
func (n *Network) Addr(name string) netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, ok := n.hosts[name]; ok {
		return h.addr
	}
	return netip.Addr{}
}

// ExecArgs is the command line prefix that runs a program in the host's
// namespace: `ip netns exec <ns>`. ip execs the program in its own place
// (same process id), so signals sent to the process reach the program.
func (n *Network) ExecArgs(name string) ([]string, error) {
	h, err := n.Host(name)
	if err != nil {
		return nil, err
	}
	return []string{n.cfg.IP, "netns", "exec", h.NS}, nil
}

// Command is an exec.Cmd that runs bin with args in the host's namespace.
func (n *Network) Command(name, bin string, args ...string) (*exec.Cmd, error) {
	pre, err := n.ExecArgs(name)
	if err != nil {
		return nil, err
	}
	return exec.Command(pre[0], append(append(pre[1:], bin), args...)...), nil
}

// ---- cuts ----

// Drop loses, silently, every packet from host `from` to host `to` from
// now on (both stay able to send to everyone else, and `to` to `from`).
func (n *Network) Drop(ctx context.Context, from, to string) error {
	return n.setDrops(ctx, true, [][2]string{{from, to}})
}

// Restore undoes Drop(from, to).
func (n *Network) Restore(ctx context.Context, from, to string) error {
	return n.setDrops(ctx, false, [][2]string{{from, to}})
}

// Cut drops the packets of both directions between a and b.
func (n *Network) Cut(ctx context.Context, a, b string) error {
	return n.setDrops(ctx, true, [][2]string{{a, b}, {b, a}})
}

// Isolate cuts the host off from every other host but those named in
// except (the client host included, when not named there).
func (n *Network) Isolate(ctx context.Context, name string, except ...string) error {
	var pairs [][2]string
	for _, o := range n.HostNames() {
		if o != name && !slices.Contains(except, o) {
			pairs = append(pairs, [2]string{name, o}, [2]string{o, name})
		}
	}
	return n.setDrops(ctx, true, pairs)
}

// Heal removes every cut.
func (n *Network) Heal(ctx context.Context) error {
	n.mu.Lock()
	var pairs [][2]string
	for k := range n.drops {
		pairs = append(pairs, k)
	}
	n.mu.Unlock()
	return n.setDrops(ctx, false, pairs)
}

// Drops lists the cut directions, sorted.
func (n *Network) Drops() [][2]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out [][2]string
	for k := range n.drops {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b [2]string) int {
		return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1])
	})
	return out
}

// HostNames lists the hosts, the client host included, sorted.
func (n *Network) HostNames() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for name := range n.hosts {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// setDrops adds (on) or removes the drops of pairs, in one ip call.
func (n *Network) setDrops(ctx context.Context, on bool, pairs [][2]string) error {
	n.mu.Lock()
	var cmds []string
	for _, k := range pairs {
		if _, ok := n.hosts[k[0]]; !ok {
			n.mu.Unlock()
			return fmt.Errorf("%w: %s", ErrNoHost, k[0])
		}
		if _, ok := n.hosts[k[1]]; !ok {
			n.mu.Unlock()
			return fmt.Errorf("%w: %s", ErrNoHost, k[1])
		}
		if k[0] == k[1] || n.drops[k] == on {
			continue
		}
		r, _ := n.ruleLocked(k)
		if on {
			n.drops[k] = true
			cmds = append(cmds, "rule add "+r)
		} else {
			delete(n.drops, k)
			cmds = append(cmds, "rule del "+r)
		}
	}
	n.mu.Unlock()
	return n.ipBatch(ctx, n.router, cmds...)
}

// rulePref is the priority of the cut rules: before the main table (32766).
const rulePref = 1000

// ruleLocked is the router's policy rule that drops pair's packets.
func (n *Network) ruleLocked(pair [2]string) (string, bool) {
	a, okA := n.hosts[pair[0]]
	b, okB := n.hosts[pair[1]]
	if !okA || !okB {
		return "", false
	}
	return fmt.Sprintf("from %s/32 to %s/32 blackhole pref %d", a.addr, b.addr, rulePref), true
}

// ---- dialing ----

// DialContext connects from the client namespace (see the package doc).
func (n *Network) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return n.DialFrom(ctx, ClientHost, network, address)
}

// DialFrom connects from the host's namespace (within a second, or ctx's
// deadline if sooner).
func (n *Network) DialFrom(ctx context.Context, host, network, address string) (net.Conn, error) {
	h, err := n.Host(host)
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	err = inNamespace(h.NS, func(check func(fd uintptr) error) error {
		d := net.Dialer{Timeout: time.Second, ControlContext: checked(check)}
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// Listen listens in the host's namespace (net.ListenConfig.Listen).
func (n *Network) Listen(ctx context.Context, host, network, address string) (net.Listener, error) {
	h, err := n.Host(host)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	err = inNamespace(h.NS, func(check func(fd uintptr) error) error {
		lc := net.ListenConfig{Control: func(network, address string, rc syscall.RawConn) error {
			return checked(check)(ctx, network, address, rc)
		}}
		var err error
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket in the host's namespace.
func (n *Network) ListenPacket(ctx context.Context, host, network, address string) (net.PacketConn, error) {
	h, err := n.Host(host)
	if err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err = inNamespace(h.NS, func(check func(fd uintptr) error) error {
		lc := net.ListenConfig{Control: func(network, address string, rc syscall.RawConn) error {
			return checked(check)(ctx, network, address, rc)
		}}
		var err error
		pc, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	return pc, err
}

// checked is a socket control function that refuses a socket made
// outside the namespace check knows.
func checked(check func(fd uintptr) error) func(context.Context, string, string, syscall.RawConn) error {
	return func(_ context.Context, _, _ string, rc syscall.RawConn) error {
		var cerr error
		if err := rc.Control(func(fd uintptr) { cerr = check(fd) }); err != nil {
			return err
		}
		return cerr
	}
}

// ---- teardown ----

// Close deletes every namespace of the Network. Processes still inside
// them keep theirs alive, with no way out, until they exit.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	var names []string
	for _, h := range n.hosts {
		names = append(names, h.NS)
	}
	n.hosts = map[string]*Host{}
	n.drops = map[[2]string]bool{}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, ns := range append(names, n.router) {
		if err := n.ip(ctx, "netns", "del", ns); err != nil && nsExists(ns) {
			errs = append(errs, err)
		}
	}
	n.cfg.Logf("netns: network %s deleted", n.prefix)
	return errors.Join(errs...)
}

// CleanLeftovers deletes the namespaces named by this package's scheme
// whose process is gone. ipCmd is the `ip` command ("" for "ip").
func CleanLeftovers(ctx context.Context, ipCmd string, logf func(string, ...any)) {
	if ipCmd == "" {
		ipCmd = "ip"
	}
	entries, err := os.ReadDir(nsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, ok := ownerPID(e.Name())
		if !ok || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if err := exec.CommandContext(ctx, ipCmd, "netns", "del", e.Name()).Run(); err == nil && logf != nil {
			logf("netns: deleted %s, left by process %d", e.Name(), pid)
		}
	}
}

// ownerPID parses NamePrefix-<pid>-… .
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, NamePrefix+"-")
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	return pid, err == nil && pid > 0
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func nsExists(ns string) bool {
	_, err := os.Stat(filepath.Join(nsDir, ns))
	return err == nil
}

// ---- running ip ----

// ip runs `ip args...`.
func (n *Network) ip(ctx context.Context, args ...string) error {
	return runIP(ctx, n.cfg.IP, nil, args...)
}

// ipBatch runs the commands in namespace ns with one `ip -n ns -batch -`.
func (n *Network) ipBatch(ctx context.Context, ns string, cmds ...string) error {
	if len(cmds) == 0 {
		return nil
	}
	return runIP(ctx, n.cfg.IP, []byte(strings.Join(cmds, "\n")+"\n"), "-n", ns, "-batch", "-")
}

func runIP(ctx context.Context, ipCmd string, stdin []byte, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ipCmd, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		in := ""
		if stdin != nil {
			in = " <<" + strings.ReplaceAll(strings.TrimSpace(string(stdin)), "\n", "; ")
		}
		return fmt.Errorf("netns: %s %s%s: %w: %s", ipCmd, strings.Join(args, " "), in, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sysctls writes /proc/sys/<key> = value inside namespace ns. Keys under
// net/ipv6 are skipped when the kernel has no IPv6.
func (n *Network) sysctls(ns string, kv map[string]string) error {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return inNamespace(ns, func(func(uintptr) error) error {
		for _, k := range keys {
			err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(kv[k]), 0o644)
			noIPv6 := errors.Is(err, os.ErrNotExist) && strings.HasPrefix(k, "net/ipv6/")
			if err != nil && !noIPv6 {
				return fmt.Errorf("netns: sysctl %s in %s: %w", k, ns, err)
			}
		}
		return nil
	})
}

// Probe says whether this machine can make the network: it makes a
// namespace with a veth pair, enters it and writes a sysctl there, then
// deletes it. The error wraps ErrUnsupported and says what failed.
func Probe(ctx context.Context) error {
	if err := platformOK(); err != nil {
		return err
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("%w: the ip command (iproute2) is not installed: %w", ErrUnsupported, err)
	}
	tag := make([]byte, 3)
	if _, err := rand.Read(tag); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	ns := fmt.Sprintf("%s-%d-%s-probe", NamePrefix, os.Getpid(), hex.EncodeToString(tag))
	if err := runIP(ctx, ipCmd, nil, "netns", "add", ns); err != nil {
		return fmt.Errorf("%w: making a namespace failed (root, or CAP_SYS_ADMIN and CAP_NET_ADMIN, is needed; running as uid %d): %w", ErrUnsupported, os.Geteuid(), err)
	}
	defer func() { _ = runIP(context.WithoutCancel(ctx), ipCmd, nil, "netns", "del", ns) }()
	if err := runIP(ctx, ipCmd, []byte("link add name pa type veth peer name pb\nlink set pa up\n"), "-n", ns, "-batch", "-"); err != nil {
		return fmt.Errorf("%w: making a veth pair failed: %w", ErrUnsupported, err)
	}
	err = inNamespace(ns, func(func(uintptr) error) error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("%w: entering a namespace and setting a sysctl in it failed: %w", ErrUnsupported, err)
	}
	return nil
}
