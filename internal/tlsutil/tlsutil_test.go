package tlsutil

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshakeResult is what one loopback TLS connection showed each side.
type handshakeResult struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

func (h handshakeResult) ok() bool { return h.serverErr == nil && h.clientErr == nil }

// handshake makes one real TLS connection over loopback: the server
// handshakes and writes a byte, the client reads it (under TLS 1.3 a
// server's refusal of the client certificate reaches the client only
// then).
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err = tc.Handshake(); err == nil {
			_, err = tc.Write([]byte("k"))
		}
		done <- result{tc.ConnectionState(), err}
	}()

	var h handshakeResult
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cliCfg)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 1))
		h.client = c.ConnectionState()
		c.Close()
	}
	h.clientErr = err
	select {
	case r := <-done:
		h.server, h.serverErr = r.cs, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("server side of the handshake did not finish")
	}
	return h
}

func TestHandshakeMatrix(t *testing.T) {
	ca, other := mustCA(t, "ca"), mustCA(t, "other ca")
	pool, otherPool := x509.NewCertPool(), x509.NewCertPool()
	pool.AddCert(ca.Cert)
	otherPool.AddCert(other.Cert)
	expCert, expKey, err := ca.IssueMemberWindow("n9", []string{"127.0.0.1"}, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]pemPair{
		"n1":        mustMember(t, ca, "n1", "127.0.0.1", "localhost"),
		"n2":        mustMember(t, ca, "n2", "127.0.0.1", "localhost"),
		"client":    mustClient(t, ca, "client"),
		"foreign":   mustMember(t, other, "n1", "127.0.0.1"),
		"expired":   {expCert, expKey},
		"localhost": mustMember(t, ca, "n3", "localhost"), // no IP SAN: dialing 127.0.0.1 fails
	}
	reloaders := map[string]*Reloader{}
	for name, p := range ids {
		r, _, _ := testReloader(t, p, time.Hour, nil)
		reloaders[name] = r
	}

	tests := []struct {
		name      string
		server    string
		clientCAs *x509.CertPool
		require   bool
		client    string // "": no certificate
		roots     *x509.CertPool
		maxVer    uint16
		ok        bool
		member    bool // the server sees a member
	}{
		{name: "member to member", server: "n1", clientCAs: pool, require: true, client: "n2", roots: pool, ok: true, member: true},
		{name: "member to member, cert optional", server: "n1", clientCAs: pool, client: "n2", roots: pool, ok: true, member: true},
		{name: "client certificate is not a member", server: "n1", clientCAs: pool, require: true, client: "client", roots: pool, ok: true},
		{name: "client certificate of another CA", server: "n1", clientCAs: pool, require: true, client: "foreign", roots: pool},
		{name: "client certificate of another CA, cert optional", server: "n1", clientCAs: pool, client: "foreign", roots: pool},
		{name: "expired client certificate", server: "n1", clientCAs: pool, require: true, client: "expired", roots: pool},
		{name: "no client certificate, required", server: "n1", clientCAs: pool, require: true, roots: pool},
		{name: "no client certificate, optional", server: "n1", clientCAs: pool, roots: pool, ok: true},
		{name: "unverified client certificate is not a member", server: "n1", client: "n2", roots: pool, ok: true},
		{name: "server certificate of another CA", server: "foreign", clientCAs: pool, require: true, client: "n2", roots: pool},
		{name: "server trusted only by the other CA", server: "n1", clientCAs: pool, require: true, client: "n2", roots: otherPool},
		{name: "expired server certificate", server: "expired", clientCAs: pool, require: true, client: "n2", roots: pool},
		{name: "server certificate without the dialed IP", server: "localhost", clientCAs: pool, require: true, client: "n2", roots: pool},
		{name: "TLS 1.1 client", server: "n1", clientCAs: pool, require: true, client: "n2", roots: pool, maxVer: tls.VersionTLS11},
		{name: "TLS 1.2 client", server: "n1", clientCAs: pool, require: true, client: "n2", roots: pool, maxVer: tls.VersionTLS12, ok: true, member: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cliCfg := ClientConfig(reloaders[tc.client], tc.roots) // nil Reloader for ""
			cliCfg.MaxVersion = tc.maxVer
			h := handshake(t, ServerConfig(reloaders[tc.server], tc.clientCAs, tc.require), cliCfg)
			if h.ok() != tc.ok {
				t.Fatalf("handshake ok = %v, want %v (server: %v; client: %v)", h.ok(), tc.ok, h.serverErr, h.clientErr)
			}
			if !h.ok() {
				t.Logf("refused: server: %v; client: %v", h.serverErr, h.clientErr)
				return
			}
			if got := IsMember(&h.server); got != tc.member {
				t.Errorf("server: IsMember = %v, want %v", got, tc.member)
			}
			if !IsMember(&h.client) {
				t.Error("client: the server's member certificate is not IsMember")
			}
			if h.server.Version < tls.VersionTLS12 {
				t.Errorf("version %x", h.server.Version)
			}
		})
	}
}

func TestIsMemberNeedsAVerifiedChain(t *testing.T) {
	ca := mustCA(t, "ca")
	member := parsePEMCert(t, mustMember(t, ca, "n1").cert)
	client := parsePEMCert(t, mustClient(t, ca, "c").cert)
	tests := []struct {
		name string
		cs   *tls.ConnectionState
		want bool
	}{
		{"nil", nil, false},
		{"empty", &tls.ConnectionState{}, false},
		{"unverified member certificate", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{member}}, false},
		{"empty chain", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}}, false},
		{"verified client", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{client, ca.Cert}}}, false},
		{"verified member", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{member, ca.Cert}}}, true},
		{"verified CA alone", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{ca.Cert}}}, false},
	}
	for _, tc := range tests {
		if got := IsMember(tc.cs); got != tc.want {
			t.Errorf("%s: IsMember = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestConfigs(t *testing.T) {
	ca := mustCA(t, "ca")
	r, _, _ := testReloader(t, mustMember(t, ca, "n1"), time.Hour, nil)
	pool := x509.NewCertPool()
	tests := []struct {
		clientCAs *x509.CertPool
		require   bool
		want      tls.ClientAuthType
	}{
		{nil, false, tls.NoClientCert},
		{nil, true, tls.NoClientCert},
		{pool, false, tls.VerifyClientCertIfGiven},
		{pool, true, tls.RequireAndVerifyClientCert},
	}
	for _, tc := range tests {
		cfg := ServerConfig(r, tc.clientCAs, tc.require)
		if cfg.ClientAuth != tc.want || cfg.ClientCAs != tc.clientCAs || cfg.MinVersion != tls.VersionTLS12 || cfg.GetCertificate == nil {
			t.Errorf("ServerConfig(%v, %v) = ClientAuth %v, MinVersion %x", tc.clientCAs != nil, tc.require, cfg.ClientAuth, cfg.MinVersion)
		}
	}
	if cfg := ClientConfig(nil, pool); cfg.GetClientCertificate != nil || cfg.RootCAs != pool || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("ClientConfig(nil) = %+v", cfg)
	}
	if cfg := ClientConfig(r, pool); cfg.GetClientCertificate == nil {
		t.Error("ClientConfig(r) presents no certificate")
	}
}

func TestLoadCAPool(t *testing.T) {
	ca, other := mustCA(t, "ca"), mustCA(t, "other")
	member := mustMember(t, ca, "n1", "127.0.0.1")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	bad := []struct{ name, data string }{
		{"empty", ""},
		{"text", "hello, world\n"},
		{"random", string(random)},
		{"key only", string(ca.KeyPEM)},
		{"truncated", string(ca.CertPEM[:len(ca.CertPEM)/2])},
		{"bad certificate bytes", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
		{"a good one then a bad one", string(ca.CertPEM) + "-----BEGIN CERTIFICATE-----\nbm90IGRlcg==\n-----END CERTIFICATE-----\n"},
		{"garbage inside the armor", "-----BEGIN CERTIFICATE-----\n" + strings.Repeat("!", 100) + "\n-----END CERTIFICATE-----\n"},
	}
	for _, b := range bad {
		if pool, err := LoadCAPool(write(b.name, []byte(b.data))); err == nil || pool != nil {
			t.Errorf("%s: LoadCAPool = %v, %v; want an error", b.name, pool, err)
		}
	}
	if _, err := LoadCAPool(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("missing file: no error")
	}
	if _, err := LoadCAPool(); err == nil {
		t.Error("no file: no error")
	}
	if _, err := LoadCAPool(write("good.pem", ca.CertPEM), write("bad.pem", []byte("x"))); err == nil {
		t.Error("a good file and a bad one: no error")
	}

	// Two files: both CAs trusted.
	pool2, err := LoadCAPool(write("ca.pem", ca.CertPEM), write("other.pem", other.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*CA{ca, other} {
		leaf := parsePEMCert(t, mustMember(t, c, "n1").cert)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool2}); err != nil {
			t.Errorf("two files: member of %s not verified: %v", c.Cert.Subject.CommonName, err)
		}
	}

	// Two CAs (and a key block, skipped) in one file: both trusted.
	pool, err := LoadCAPool(write("both.pem", append(append(append([]byte{}, ca.CertPEM...), ca.KeyPEM...), other.CertPEM...)))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEMCert(t, member.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("member not verified by the loaded pool: %v", err)
	}
	otherLeaf := parsePEMCert(t, mustMember(t, other, "n1").cert)
	if _, err := otherLeaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("second CA of the file not trusted: %v", err)
	}
}
