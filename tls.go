package raftkv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"

	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/raftnode"
)

// nodeTLS is a node's TLS set-up (Config.TLS): one Reloader serves the
// member certificate to every listener and dialer (docs/architecture.md,
// "TLS").
type nodeTLS struct {
	certs *tlsutil.Reloader
	// memberCAs are the certificates of Config.TLS.CAFile: a peer is a
	// member only if its chain ends at one of them (a client CA may sign
	// anything, even a certificate that calls itself a member).
	memberCAs []*x509.Certificate
	// raft is the raft transport's pair: member certificates both ways,
	// verified against CAFile.
	raft raftnode.TLS
	// client is the member client's configuration (peers' HTTP).
	client *tls.Config
	// api is the HTTP API's: CAFile's and ClientCAFile's certificates
	// verified, required when ClientCAFile is set.
	api *tls.Config
}

// openTLS loads c's files and starts the Reloader; the caller closes it
// (close) after the servers that use it.
func openTLS(c *TLSConfig, logger *slog.Logger) (*nodeTLS, error) {
	members, err := tlsutil.LoadCAPool(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("raftkv: TLS CA: %w", err)
	}
	memberCAs, err := readCerts(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("raftkv: TLS CA: %w", err)
	}
	apiCAs, require := members, false
	if c.ClientCAFile != "" {
		if _, err := tlsutil.LoadCAPool(c.ClientCAFile); err != nil {
			return nil, fmt.Errorf("raftkv: TLS client CA: %w", err)
		}
		clientCAs, err := readCerts(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("raftkv: TLS client CA: %w", err)
		}
		apiCAs, require = x509.NewCertPool(), true
		for _, ca := range slices.Concat(memberCAs, clientCAs) {
			apiCAs.AddCert(ca)
		}
	}
	certs, err := tlsutil.NewReloader(c.CertFile, c.KeyFile, logger.With("component", "tls"))
	if err != nil {
		return nil, fmt.Errorf("raftkv: TLS certificate: %w", err)
	}
	return &nodeTLS{
		certs:     certs,
		memberCAs: memberCAs,
		raft: raftnode.TLS{
			Server: tlsutil.ServerConfig(certs, members, true),
			Client: tlsutil.ClientConfig(certs, members),
		},
		client: tlsutil.ClientConfig(certs, members),
		api:    tlsutil.ServerConfig(certs, apiCAs, require),
	}, nil
}

// readCerts parses every certificate of a PEM file.
func readCerts(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificate", file)
	}
	return out, nil
}

// isMember reports whether a connection's verified peer certificate is a
// member certificate issued under the cluster's CA.
func (t *nodeTLS) isMember(cs *tls.ConnectionState) bool {
	if !tlsutil.IsMember(cs) {
		return false
	}
	for _, chain := range cs.VerifiedChains {
		if len(chain) > 0 && slices.ContainsFunc(t.memberCAs, chain[len(chain)-1].Equal) {
			return true
		}
	}
	return false
}

// ReloadTLS reads the node's certificate and key files again now (raftkv
// serve calls it on SIGHUP); they are also picked up by themselves within
// about a second of a change. New connections use the new pair; a pair
// that does not load keeps the old one and is returned as the error. A
// node without TLS returns nil.
func (n *Node) ReloadTLS() error {
	if n.tls == nil {
		return nil
	}
	return n.tls.certs.Reload()
}

// Scheme is how this node and its peers are reached: "https" with TLS,
// else "http".
func (n *Node) Scheme() string {
	if n.tls != nil {
		return "https"
	}
	return "http"
}

// errNotTLS ends a connection to a TLS port whose first byte is not a TLS
// handshake record's.
var errNotTLS = errors.New("not a TLS connection")

// tlsOnlyListener hands out connections that end, without a word, when
// their first byte is not a TLS handshake record's (0x16): wrapped by
// tls.NewListener, it keeps http.Server from answering a plaintext
// request with its "400 Client sent an HTTP request to an HTTPS server".
// The check runs on the connection's first read (the handshake, on the
// server's goroutine for that connection), never in Accept.
type tlsOnlyListener struct{ net.Listener }

func (l tlsOnlyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsOnlyConn{Conn: c}, nil
}

// tlsOnlyConn checks its first byte. tls.Conn reads it under its own
// lock, so reads never race.
type tlsOnlyConn struct {
	net.Conn
	checked bool
}

func (c *tlsOnlyConn) Read(p []byte) (int, error) {
	if c.checked || len(p) == 0 {
		return c.Conn.Read(p)
	}
	n, err := c.Conn.Read(p[:1])
	if n == 0 {
		return n, err
	}
	c.checked = true
	if p[0] != 0x16 {
		_ = c.Close()
		return 0, errNotTLS
	}
	return n, err
}
