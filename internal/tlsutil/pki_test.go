package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCA(t *testing.T) {
	ca := mustCA(t, "test ca")
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA %v, MaxPathLen %d, KeyUsage %v", c.IsCA, c.MaxPathLen, c.KeyUsage)
	}
	if c.Subject.CommonName != "test ca" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if got := parsePEMCert(t, ca.CertPEM); !got.Equal(c) {
		t.Error("CertPEM is not Cert")
	}
	if _, err := NewCA("x", 0); err == nil {
		t.Error("NewCA with zero validity succeeded")
	}
}

func TestIssue(t *testing.T) {
	ca := mustCA(t, "ca")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	verify := func(c *x509.Certificate, usage x509.ExtKeyUsage, at time.Time) error {
		_, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: at})
		return err
	}
	now := time.Now()

	m := parsePEMCert(t, mustMember(t, ca, "n1", "127.0.0.1", "localhost", "::1", "node1.example", "localhost", " ").cert)
	wantIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	if !slices.EqualFunc(m.IPAddresses, wantIPs, net.IP.Equal) {
		t.Errorf("member IP SANs %v, want %v", m.IPAddresses, wantIPs)
	}
	if want := []string{"localhost", "node1.example", "n1"}; !slices.Equal(m.DNSNames, want) {
		t.Errorf("member DNS SANs %q, want %q", m.DNSNames, want)
	}
	if !slices.Equal(m.Subject.OrganizationalUnit, []string{MemberOU}) || m.Subject.CommonName != "n1" {
		t.Errorf("member subject %v", m.Subject)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := verify(m, u, now); err != nil {
			t.Errorf("member for usage %v: %v", u, err)
		}
	}
	if err := m.VerifyHostname("n1"); err != nil {
		t.Errorf("member id not a SAN: %v", err)
	}

	c := parsePEMCert(t, mustClient(t, ca, "alice").cert)
	if !slices.Equal(c.Subject.OrganizationalUnit, []string{ClientOU}) || c.Subject.CommonName != "alice" {
		t.Errorf("client subject %v", c.Subject)
	}
	if err := verify(c, x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Errorf("client for client auth: %v", err)
	}
	if err := verify(c, x509.ExtKeyUsageServerAuth, now); err == nil {
		t.Error("client certificate verifies for server auth")
	}

	cert, _, err := ca.IssueMemberWindow("old", nil, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old := parsePEMCert(t, cert)
	if err := verify(old, x509.ExtKeyUsageServerAuth, now); err == nil {
		t.Error("expired member certificate verifies")
	}
	if !old.NotBefore.Equal(now.Add(-48*time.Hour).Truncate(time.Second)) || !old.NotAfter.Equal(now.Add(-24*time.Hour).Truncate(time.Second)) {
		t.Errorf("window %v to %v", old.NotBefore, old.NotAfter)
	}

	bad := []struct {
		name string
		err  error
	}{
		{"member without id", func() error { _, _, err := ca.IssueMember("", nil, time.Hour); return err }()},
		{"member with zero validity", func() error { _, _, err := ca.IssueMember("n1", nil, 0); return err }()},
		{"window ending before it starts", func() error { _, _, err := ca.IssueMemberWindow("n1", nil, now, now.Add(-time.Second)); return err }()},
		{"client without name", func() error { _, _, err := ca.IssueClient("", time.Hour); return err }()},
		{"client with negative validity", func() error { _, _, err := ca.IssueClient("c", -time.Hour); return err }()},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: no error", b.name)
		}
	}
}

func TestWriteDevPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	nodes := []string{"n1", "n2", "n3"}
	if err := WriteDevPKI(dir, nodes, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	names := []string{"ca.pem", "ca-key.pem", "n1.pem", "n1-key.pem", "n2.pem", "n2-key.pem", "n3.pem", "n3-key.pem", "client.pem", "client-key.pem"}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(names) {
		t.Errorf("%d files written, want %d", len(entries), len(names))
	}
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); strings.HasSuffix(n, "-key.pem") && perm != 0o600 {
			t.Errorf("%s: mode %v, want 0600", n, perm)
		} else if perm&^0o644 != 0 {
			t.Errorf("%s: mode %v, want at most 0644", n, perm)
		}
	}

	pool, err := LoadCAPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range append(nodes, "client") {
		r, err := NewReloader(filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem"), nil)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		r.Close()
		if _, err := r.Leaf().Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		wantOU := MemberOU
		if id == "client" {
			wantOU = ClientOU
		}
		if ou := r.Leaf().Subject.OrganizationalUnit; !slices.Equal(ou, []string{wantOU}) {
			t.Errorf("%s: OU %q, want %q", id, ou, wantOU)
		}
	}

	// A second run refuses and changes nothing.
	before, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err := WriteDevPKI(dir, nodes, nil); err == nil {
		t.Error("second WriteDevPKI succeeded")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); string(after) != string(before) {
		t.Error("second WriteDevPKI changed ca.pem")
	}

	// One file already there (a node added later): nothing is written.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, "n2-key.pem"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteDevPKI(dir2, nodes, nil); err == nil {
		t.Error("WriteDevPKI over an existing key succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir2, "ca.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ca.pem written although the PKI was refused: %v", err)
	}
}

func TestWriteDevPKIRejects(t *testing.T) {
	for _, nodes := range [][]string{nil, {""}, {"n1", "n1"}, {"../n1"}, {"a/b"}, {"ca"}, {"client"}, {"n1-key"}, {".."}} {
		dir := t.TempDir()
		if err := WriteDevPKI(dir, nodes, nil); err == nil {
			t.Errorf("WriteDevPKI(%q) succeeded", nodes)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("WriteDevPKI(%q) wrote %d files", nodes, len(entries))
		}
	}
	if err := WriteDevPKIValidity(t.TempDir(), []string{"n1"}, nil, 0); err == nil {
		t.Error("zero validity accepted")
	}
}
