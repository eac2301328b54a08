package raftnode

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// hostAddr is an advertised raft address whose host is a name (a DNS name,
// "localhost"): peers record the name in the configuration and resolve it
// each time they dial, so a member whose name comes to point at another IP
// (a rescheduled container) is reached there. raft's TCP transport takes
// only an IP address to advertise (*net.TCPAddr), resolved once.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

// advertiseAddr parses Config.RaftAdvertise: an IP literal as a
// *net.TCPAddr (what raft's own transport advertises), a host name as a
// hostAddr, kept as it is and never resolved here. Nil when s is empty.
func advertiseAddr(s string) (net.Addr, error) {
	if s == "" {
		return nil, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, fmt.Errorf("raftnode: raft advertise address %q: %w", s, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("raftnode: raft advertise address %q: bad port", s)
	}
	if host == "" {
		return nil, fmt.Errorf("raftnode: raft advertise address %q has no host", s)
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() {
			return nil, fmt.Errorf("raftnode: raft advertise address %q is unspecified", s)
		}
		return net.ResolveTCPAddr("tcp", s)
	}
	return hostAddr(s), nil
}

// advertisable reports whether addr can be told to peers: a host name, or
// a TCP address with a specified IP.
func advertisable(addr net.Addr) bool {
	switch a := addr.(type) {
	case hostAddr:
		return true
	case *net.TCPAddr:
		return a.IP != nil && !a.IP.IsUnspecified()
	}
	return false
}

// tcpStream is a plain TCP raft.StreamLayer that advertises a host name
// (raft's TCPStreamLayer advertises only an IP). It dials as raft's does:
// the address, resolved at each dial.
type tcpStream struct {
	ln        net.Listener
	advertise hostAddr
}

func newTCPStream(bind string, advertise hostAddr) (*tcpStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	return &tcpStream{ln: ln, advertise: advertise}, nil
}

func (s *tcpStream) Accept() (net.Conn, error) { return s.ln.Accept() }
func (s *tcpStream) Close() error              { return s.ln.Close() }
func (s *tcpStream) Addr() net.Addr            { return s.advertise }

func (s *tcpStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", string(address))
}

var _ raft.StreamLayer = (*tcpStream)(nil)
