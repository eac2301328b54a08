package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

// TLS makes the raft transport mutual TLS: Server is the listener's
// configuration (the member certificate, client certificates required and
// verified against the cluster's CA), Client the dialer's (the member
// certificate as client certificate, the CA as roots). On both ends the
// peer must also present a member certificate (tlsutil.IsMember): a
// client certificate signed by the same CA cannot connect, vote or append.
type TLS struct {
	Server *tls.Config
	Client *tls.Config
}

// errNotMember is the handshake's error for a verified peer certificate
// that is not a member's.
var errNotMember = errors.New("raftnode: peer certificate is not a raftkv member certificate")

// membersOnly returns a copy of c whose handshakes also fail unless the
// peer's verified certificate is a member's (after c's own
// VerifyConnection, if any).
func membersOnly(c *tls.Config) *tls.Config {
	c = c.Clone()
	prev := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if !tlsutil.IsMember(&cs) {
			return errNotMember
		}
		return nil
	}
	return c
}

// tlsStream is a raft.StreamLayer over crypto/tls. Accept hands out
// connections whose handshake runs on their first read, on the goroutine
// raft serves the connection on, so one slow peer does not hold up the
// accept loop; a peer that fails it (no certificate, another CA, expired,
// not a member, plaintext) gets its connection closed before raft reads
// anything. Dial completes the handshake before it returns.
type tlsStream struct {
	ln        net.Listener // a tls listener
	advertise net.Addr
	client    *tls.Config
	// handshake bounds an accepted connection's handshake: a peer that
	// connects and sends nothing is closed then, rather than holding a
	// goroutine of raft's for as long as it stays connected.
	handshake time.Duration
}

// defaultHandshakeTimeout is tlsStream.handshake.
const defaultHandshakeTimeout = 10 * time.Second

// newTLSStream listens on bind with server's configuration; peers are told
// to dial advertise (default the bound address, which must not then be
// unspecified).
func newTLSStream(bind string, advertise net.Addr, t *TLS) (*tlsStream, error) {
	if t.Server == nil || t.Client == nil {
		return nil, errors.New("raftnode: TLS needs both a server and a client configuration")
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &tlsStream{ln: tls.NewListener(ln, membersOnly(t.Server)), advertise: advertise, client: membersOnly(t.Client), handshake: defaultHandshakeTimeout}
	if !advertisable(s.Addr()) {
		_ = ln.Close()
		return nil, fmt.Errorf("raftnode: raft address %s is not advertisable: set RaftAdvertise", s.Addr())
	}
	return s, nil
}

func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &boundedHandshake{Conn: c.(*tls.Conn), timeout: s.handshake}, nil
}

// boundedHandshake runs an accepted connection's handshake, within its
// timeout, on the first Read or Write (on raft's goroutine for the
// connection, not the accept loop); a failed or late handshake fails that
// call and every later one, and closes the connection.
type boundedHandshake struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *boundedHandshake) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		if c.err = c.HandshakeContext(ctx); c.err != nil {
			_ = c.Close()
		}
	})
	return c.err
}

func (c *boundedHandshake) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *boundedHandshake) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (s *tlsStream) Close() error { return s.ln.Close() }

func (s *tlsStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}

// Dial connects to a peer and completes the handshake within timeout: the
// peer must present a member certificate valid for the host dialed.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	return d.DialContext(ctx, "tcp", string(address))
}

var _ raft.StreamLayer = (*tlsStream)(nil)
