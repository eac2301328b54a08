//go:build linux

package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newNetwork makes a Network with hosts a and b, or skips the test saying
// why this machine cannot.
func newNetwork(t *testing.T) *Network {
	t.Helper()
	t.Parallel()
	ctx := context.Background()
	if err := Probe(ctx); err != nil {
		t.Skipf("network namespaces cannot be made here: %v", err)
	}
	n, err := New(ctx, Config{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, h := range []string{"a", "b"} {
		if _, err := n.AddHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// echoServer accepts on host:port and answers each connection with the
// address it came from, until the test ends.
func echoServer(t *testing.T, n *Network, host string, port int) {
	t.Helper()
	ln, err := n.Listen(context.Background(), host, "tcp", netip.AddrPortFrom(n.Addr(host), uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintln(c, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
			_ = c.Close()
		}
	}()
}

// hello connects from host to addr and returns the address the server saw.
func hello(ctx context.Context, n *Network, from string, addr netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	c, err := n.DialFrom(ctx, from, "tcp", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(1500 * time.Millisecond))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// destUnreachs is the host's count of ICMP "destination unreachable"
// messages received (its namespace's /proc/thread-self/net/snmp).
func destUnreachs(t *testing.T, n *Network, host string) int {
	t.Helper()
	h, err := n.Host(host)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	err = inNamespace(h.NS, func(func(uintptr) error) error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp") // not /proc/net: that is the main thread's
		if err != nil {
			return err
		}
		var names []string
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Icmp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, name := range names {
				if name == "InDestUnreachs" {
					v, err = strconv.Atoi(f[i])
					return err
				}
			}
		}
		return errors.New("no InDestUnreachs in /proc/net/snmp")
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// isTimeout: the dial or read ran out of time, rather than being refused
// or told the destination is unreachable.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// TestReachAndSilentCuts: hosts reach each other through the router with
// their own addresses, and a cut loses packets without a word: a
// connection attempt across it times out, no ICMP error arrives, and
// healing brings the path back.
func TestReachAndSilentCuts(t *testing.T) {
	n := newNetwork(t)
	ctx := context.Background()
	for _, h := range []string{"a", "b"} {
		echoServer(t, n, h, 7000)
	}
	at := func(h string) netip.AddrPort { return netip.AddrPortFrom(n.Addr(h), 7000) }

	tests := []struct {
		name string
		cut  func() error
		// reach[from][to]: whether from can connect to to.
		reach map[string]map[string]bool
	}{
		{"healthy", func() error { return nil }, map[string]map[string]bool{
			"a": {"b": true}, "b": {"a": true}, ClientHost: {"a": true, "b": true}}},
		{"two-way a-b", func() error { return n.Cut(ctx, "a", "b") }, map[string]map[string]bool{
			"a": {"b": false}, "b": {"a": false}, ClientHost: {"a": true, "b": true}}},
		// A TCP handshake needs both directions: one way lost fails it
		// both ways round (TestOneWay shows the direction).
		{"one-way a->b", func() error { return n.Drop(ctx, "a", "b") }, map[string]map[string]bool{
			"a": {"b": false}, "b": {"a": false}, ClientHost: {"a": true, "b": true}}},
		{"isolate a", func() error { return n.Isolate(ctx, "a") }, map[string]map[string]bool{
			"a": {"b": false}, "b": {"a": false}, ClientHost: {"a": false, "b": true}}},
		{"isolate a but the client", func() error { return n.Isolate(ctx, "a", ClientHost) }, map[string]map[string]bool{
			"a": {"b": false}, "b": {"a": false}, ClientHost: {"a": true, "b": true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cut(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := n.Heal(ctx); err != nil {
					t.Fatal(err)
				}
			})
			for from, tos := range tc.reach {
				for to, want := range tos {
					before := destUnreachs(t, n, from)
					got, err := hello(ctx, n, from, at(to))
					switch {
					case want && err != nil:
						t.Errorf("%s -> %s: %v, want a connection", from, to, err)
					case want && got != n.Addr(from).String():
						t.Errorf("%s -> %s: the server saw %s, want %s", from, to, got, n.Addr(from))
					case !want && err == nil:
						t.Errorf("%s -> %s connected across the cut", from, to)
					case !want && !isTimeout(err):
						t.Errorf("%s -> %s: %v, want a timeout (a silent drop), not an error", from, to, err)
					}
					if after := destUnreachs(t, n, from); after != before {
						t.Errorf("%s -> %s: %d ICMP destination-unreachable messages arrived; a cut must be silent", from, to, after-before)
					}
				}
			}
		})
	}
	// The control: a `prohibit` rule (like `unreachable`, or a blackhole
	// route on the sender) is not silent. The checks above would see it.
	t.Run("control: prohibit answers", func(t *testing.T) {
		rule := fmt.Sprintf("from %s/32 to %s/32 prohibit pref %d", n.Addr("a"), n.Addr("b"), rulePref)
		if err := n.ipBatch(ctx, n.router, "rule add "+rule); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := n.ipBatch(ctx, n.router, "rule del "+rule); err != nil {
				t.Fatal(err)
			}
		})
		before := destUnreachs(t, n, "a")
		_, err := hello(ctx, n, "a", at("b"))
		if err == nil || isTimeout(err) {
			t.Errorf("a -> b across a prohibit rule: %v, want an immediate error", err)
		}
		if after := destUnreachs(t, n, "a"); after == before {
			t.Errorf("no ICMP destination-unreachable arrived from a prohibit rule")
		}
	})
	// Healed: everything flows again.
	for _, p := range [][2]string{{"a", "b"}, {"b", "a"}, {ClientHost, "a"}} {
		if _, err := hello(ctx, n, p[0], at(p[1])); err != nil {
			t.Errorf("after healing, %s -> %s: %v", p[0], p[1], err)
		}
	}
	if d := n.Drops(); len(d) != 0 {
		t.Errorf("drops left after Heal: %v", d)
	}
}

// TestOneWay: with packets from b to a dropped, a's datagrams reach b and
// b's do not reach a: the one b sent during the cut is lost (not held and
// delivered late), the next one after the heal arrives.
func TestOneWay(t *testing.T) {
	n := newNetwork(t)
	ctx := context.Background()
	listen := func(h string) net.PacketConn {
		pc, err := n.ListenPacket(ctx, h, "udp", netip.AddrPortFrom(n.Addr(h), 7001).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		return pc
	}
	pa, pb := listen("a"), listen("b")
	send := func(from string, to netip.Addr, msg string) {
		t.Helper()
		c, err := n.DialFrom(ctx, from, "udp", netip.AddrPortFrom(to, 7001).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatalf("send %s from %s: %v", msg, from, err)
		}
	}
	recv := func(pc net.PacketConn) string {
		t.Helper()
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:k])
	}
	if err := n.Drop(ctx, "b", "a"); err != nil {
		t.Fatal(err)
	}
	send("a", n.Addr("b"), "a1")
	if got := recv(pb); got != "a1" {
		t.Errorf("b got %q, want a1", got)
	}
	send("b", n.Addr("a"), "b1 (dropped)")
	if err := n.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	send("b", n.Addr("a"), "b2")
	if got := recv(pa); got != "b2" {
		t.Errorf("a got %q first, want b2: b1 was sent while packets b->a were dropped", got)
	}
}

// TestReaddress: a host moved to a new address is reached there, its old
// address is silent, and a cut that named it follows it.
func TestReaddress(t *testing.T) {
	n := newNetwork(t)
	ctx := context.Background()
	echoServer(t, n, "b", 7000)
	old := n.Addr("b")
	if _, err := hello(ctx, n, "a", netip.AddrPortFrom(old, 7000)); err != nil {
		t.Fatal(err)
	}
	if err := n.Drop(ctx, ClientHost, "b"); err != nil {
		t.Fatal(err)
	}
	addr, err := n.Readdress(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if addr == old || n.Addr("b") != addr {
		t.Fatalf("Readdress gave %s (old %s, Addr says %s)", addr, old, n.Addr("b"))
	}
	// The listener was bound to the old address: a server on the new one.
	echoServer(t, n, "b", 7000)
	before := destUnreachs(t, n, "a")
	if _, err := hello(ctx, n, "a", netip.AddrPortFrom(old, 7000)); !isTimeout(err) {
		t.Errorf("a -> b's old address: %v, want a timeout", err)
	}
	if after := destUnreachs(t, n, "a"); after != before {
		t.Errorf("the old address answered with %d ICMP errors; want silence", after-before)
	}
	if got, err := hello(ctx, n, "a", netip.AddrPortFrom(addr, 7000)); err != nil || got != n.Addr("a").String() {
		t.Errorf("a -> b's new address: %q, %v", got, err)
	}
	if _, err := hello(ctx, n, ClientHost, netip.AddrPortFrom(addr, 7000)); !isTimeout(err) {
		t.Errorf("client -> b's new address while cut: %v, want a timeout", err)
	}
	if err := n.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := hello(ctx, n, ClientHost, netip.AddrPortFrom(addr, 7000)); err != nil {
		t.Errorf("client -> b after heal: %v", err)
	}
}

// TestExecInNamespace: ExecArgs runs a program in the host's namespace in
// the place of ip itself (the same process id), so the caller can signal
// it.
func TestExecInNamespace(t *testing.T) {
	n := newNetwork(t)
	cmd, err := n.Command("a", "/bin/sh", "-c", `echo $$ $(readlink /proc/$$/ns/net)`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := n.Host("a")
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(nsDir, h.NS), &st); err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(out))
	want := fmt.Sprintf("%d net:[%d]", cmd.Process.Pid, st.Ino)
	if got != want {
		t.Errorf("the program said %q, want %q (its own pid, and host a's namespace)", got, want)
	}
}

// TestCleanLeftovers: namespaces of this scheme whose process is gone are
// deleted; those of a live process are not.
func TestCleanLeftovers(t *testing.T) {
	n := newNetwork(t)
	ctx := context.Background()
	dead := exec.Command("/bin/true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s-%d-000000-router", NamePrefix, dead.Process.Pid)
	if processAlive(dead.Process.Pid) {
		t.Skipf("pid %d was taken again already", dead.Process.Pid)
	}
	if err := runIP(ctx, "ip", nil, "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if nsExists(stale) {
			_ = runIP(ctx, "ip", nil, "netns", "del", stale)
		}
	})
	CleanLeftovers(ctx, "", t.Logf)
	if nsExists(stale) {
		t.Errorf("%s is still there", stale)
	}
	h, _ := n.Host("a")
	if !nsExists(h.NS) || !nsExists(n.router) {
		t.Errorf("a live network's namespaces were deleted")
	}
}

// TestClose: Close deletes every namespace of the network.
func TestClose(t *testing.T) {
	n := newNetwork(t)
	var names []string
	for _, h := range n.HostNames() {
		hh, _ := n.Host(h)
		names = append(names, hh.NS)
	}
	names = append(names, n.router)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range names {
		if nsExists(ns) {
			t.Errorf("%s is still there after Close", ns)
		}
	}
	if _, err := n.AddHost(context.Background(), "c"); !errors.Is(err, ErrClosed) {
		t.Errorf("AddHost after Close: %v, want ErrClosed", err)
	}
}
