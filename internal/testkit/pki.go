package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/tlsutil"
)

// PKI is a development PKI in a test's temporary directory: a CA, a member
// certificate per node ("n1.pem", "n1-key.pem", ...; valid for 127.0.0.1
// and localhost) and a client certificate ("client.pem").
type PKI struct {
	CA  *tlsutil.CA
	Dir string
}

// NewPKI writes a CA and member certificates for nodes n1..n<size>.
func NewPKI(t testing.TB, size int) *PKI {
	t.Helper()
	ca, err := tlsutil.NewCA("raftkv test CA", 24*time.Hour)
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	p := &PKI{CA: ca, Dir: t.TempDir()}
	p.write(t, "ca.pem", ca.CertPEM)
	for i := range size {
		p.IssueMember(t, fmt.Sprintf("n%d", i+1))
	}
	cert, key, err := ca.IssueClient("client", 24*time.Hour)
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	p.write(t, "client.pem", cert)
	p.write(t, "client-key.pem", key)
	return p
}

// IssueMember (re)writes id's member certificate and key with a new
// serial: the node's Reloader picks them up within a second or so.
func (p *PKI) IssueMember(t testing.TB, id string) *x509.Certificate {
	t.Helper()
	cert, key, err := p.CA.IssueMember(id, []string{"127.0.0.1", "localhost"}, 24*time.Hour)
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	// The key first, then the certificate: the Reloader keeps the old
	// pair while the two do not match.
	p.write(t, id+"-key.pem", key)
	p.write(t, id+".pem", cert)
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	return leaf
}

func (p *PKI) write(t testing.TB, name string, data []byte) {
	t.Helper()
	// A temporary file renamed into place: a reader never sees half a file.
	tmp := filepath.Join(p.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatalf("pki: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(p.Dir, name)); err != nil {
		t.Fatalf("pki: %v", err)
	}
}

// Path is the path of one of the PKI's files ("ca.pem", "n1.pem", ...).
func (p *PKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// Config is node i's (0-based) raftkv.TLSConfig.
func (p *PKI) Config(i int) *raftkv.TLSConfig {
	id := fmt.Sprintf("n%d", i+1)
	return &raftkv.TLSConfig{CertFile: p.Path(id + ".pem"), KeyFile: p.Path(id + "-key.pem"), CAFile: p.Path("ca.pem")}
}

// Roots is a pool holding the CA.
func (p *PKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Cert)
	return pool
}

// ClientTLS is a client's TLS configuration: the CA as roots, the client
// certificate.
func (p *PKI) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.Path("client.pem"), p.Path("client-key.pem"))
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.Roots(), Certificates: []tls.Certificate{pair}}
}
