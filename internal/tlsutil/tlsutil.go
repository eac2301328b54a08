package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
)

// MemberOU is the organizational unit of a member certificate: the
// certificate a node serves and presents to other members. Member
// certificates have both the server- and client-auth extended key usages.
const MemberOU = "raftkv-member"

// ClientOU is the organizational unit of a client certificate (client-auth
// extended key usage only). A client certificate is never a member's.
const ClientOU = "raftkv-client"

// LoadCAPool reads PEM files of CA certificates into one pool (a call
// with one file is the common case; several give, say, the API's pool of
// the members' CA and a separate client CA). Unlike
// x509.CertPool.AppendCertsFromPEM, it fails on a certificate that does not
// parse and on a file with no certificate at all, so a wrong path or a
// truncated file is an error rather than a pool that trusts nothing.
// Blocks of other types (a key, say) are skipped.
func LoadCAPool(files ...string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, errors.New("tlsutil: no CA file")
	}
	pool := x509.NewCertPool()
	for _, file := range files {
		if err := appendCAFile(pool, file); err != nil {
			return nil, err
		}
	}
	return pool, nil
}

func appendCAFile(pool *x509.CertPool, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("%s: certificate %d: %w", file, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s: no PEM certificate found", file)
	}
	return nil
}

// ServerConfig returns the configuration of a TLS listener: TLS 1.2 at
// least, r's current certificate for every handshake. With clientCAs nil no
// client certificate is asked for. Otherwise a client certificate is
// verified against clientCAs: with require it must be given
// (RequireAndVerifyClientCert), without require it may be absent but, if
// given, must verify (VerifyClientCertIfGiven). Whether a verified peer is
// a member is for the handler to decide with IsMember.
func ServerConfig(r *Reloader, clientCAs *x509.CertPool, require bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
	}
	if clientCAs != nil {
		cfg.ClientCAs = clientCAs
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if require {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg
}

// ClientConfig returns the configuration of a TLS dialer: TLS 1.2 at least,
// the server's certificate verified against roots (nil: the system's roots),
// and, when r is not nil, r's current certificate presented whenever the
// server asks for one. The server name comes from the dialed address unless
// the caller sets ServerName.
func ClientConfig(r *Reloader, roots *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
	}
	if r != nil {
		cfg.GetClientCertificate = r.GetClientCertificate
	}
	return cfg
}

// IsMember reports whether the peer of a connection is a member of the
// cluster: its certificate was verified (crypto/tls filled VerifiedChains)
// and the leaf carries MemberOU. An unverified certificate (a server that
// does not ask for client certificates, InsecureSkipVerify) is never a
// member's, nor is a nil state.
func IsMember(cs *tls.ConnectionState) bool {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return false
	}
	return slices.Contains(cs.VerifiedChains[0][0].Subject.OrganizationalUnit, MemberOU)
}

// errNoCertificate is GetCertificate's answer before a pair was loaded,
// which NewReloader never lets happen; it guards a zero Reloader.
var errNoCertificate = errors.New("tlsutil: no certificate loaded")
