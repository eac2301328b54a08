package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DevPKIValidity is how long WriteDevPKI's certificates are valid.
const DevPKIValidity = 365 * 24 * time.Hour

// backdate moves NotBefore into the past so that a peer whose clock is a
// little behind does not refuse a certificate issued a moment ago.
const backdate = 5 * time.Minute

// CA is a certificate authority of the development PKI: a self-signed
// certificate and its key, also PEM-encoded (the key as PKCS#8).
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a self-signed CA with an ECDSA P-256 key, valid from a few
// minutes ago for validity. It may sign end-entity certificates only (path
// length 0).
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("tlsutil: CA validity %v is not positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"raftkv"}, CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// IssueMember signs a member certificate for node id, valid from a few
// minutes ago for validity: OU MemberOU, server- and client-auth usages,
// the hosts as subject alternative names (IP addresses as IP SANs, the rest
// as DNS names) and the id as one more DNS name.
func (ca *CA) IssueMember(id string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("tlsutil: validity %v is not positive", validity)
	}
	now := time.Now()
	return ca.IssueMemberWindow(id, hosts, now.Add(-backdate), now.Add(validity))
}

// IssueMemberWindow is IssueMember with an explicit validity window, for
// tests that need a certificate that has expired or is not yet valid.
func (ca *CA) IssueMemberWindow(id string, hosts []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if id == "" {
		return nil, nil, errors.New("tlsutil: member id is empty")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"raftkv"}, OrganizationalUnit: []string{MemberOU}, CommonName: id},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	addSANs(tmpl, append(slices.Clone(hosts), id))
	return ca.issue(tmpl)
}

// IssueClient signs a client certificate named name, valid from a few
// minutes ago for validity: OU ClientOU, client-auth usage only.
func (ca *CA) IssueClient(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if name == "" {
		return nil, nil, errors.New("tlsutil: client name is empty")
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("tlsutil: validity %v is not positive", validity)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"raftkv"}, OrganizationalUnit: []string{ClientOU}, CommonName: name},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl)
}

// addSANs sets the subject alternative names: IPs as IP SANs, the rest as
// DNS names, each once, empty names skipped.
func addSANs(tmpl *x509.Certificate, names []string) {
	for _, h := range names {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
}

// issue gives tmpl a fresh P-256 key and serial and signs it.
func (ca *CA) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	if !tmpl.NotAfter.After(tmpl.NotBefore) {
		return nil, nil, fmt.Errorf("tlsutil: NotAfter %v is not after NotBefore %v", tmpl.NotAfter, tmpl.NotBefore)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteDevPKI writes a development PKI valid for DevPKIValidity into dir
// (created, mode 0700, if missing): ca.pem and ca-key.pem, <id>.pem and
// <id>-key.pem for each node (a member certificate for the hosts and the
// id), client.pem and client-key.pem (a client certificate named
// "client"). Keys are mode 0600, certificates 0644 (less the umask). It refuses to
// overwrite: if any of the files exists, it writes nothing and fails.
func WriteDevPKI(dir string, nodes, hosts []string) error {
	return WriteDevPKIValidity(dir, nodes, hosts, DevPKIValidity)
}

// WriteDevPKIValidity is WriteDevPKI with every certificate, the CA's
// included, valid for validity.
func WriteDevPKIValidity(dir string, nodes, hosts []string, validity time.Duration) error {
	if len(nodes) == 0 {
		return errors.New("tlsutil: no nodes")
	}
	seen := map[string]bool{}
	for _, id := range nodes {
		if !validFileID(id) {
			return fmt.Errorf("tlsutil: node id %q cannot be a file name (letters, digits, '.', '-', '_')", id)
		}
		if id == "ca" || id == "client" || strings.HasSuffix(id, "-key") {
			return fmt.Errorf("tlsutil: node id %q would clash with the CA, client or key files", id)
		}
		if seen[id] {
			return fmt.Errorf("tlsutil: node id %q given twice", id)
		}
		seen[id] = true
	}

	type file struct {
		name string
		data []byte
		mode os.FileMode
	}
	var files []file
	pair := func(base string, certPEM, keyPEM []byte) {
		files = append(files, file{base + ".pem", certPEM, 0o644}, file{base + "-key.pem", keyPEM, 0o600})
	}
	ca, err := NewCA("raftkv development CA", validity)
	if err != nil {
		return err
	}
	pair("ca", ca.CertPEM, ca.KeyPEM)
	for _, id := range nodes {
		certPEM, keyPEM, err := ca.IssueMember(id, hosts, validity)
		if err != nil {
			return err
		}
		pair(id, certPEM, keyPEM)
	}
	certPEM, keyPEM, err := ca.IssueClient("client", validity)
	if err != nil {
		return err
	}
	pair("client", certPEM, keyPEM)

	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f.name)); err == nil {
			return fmt.Errorf("tlsutil: %s exists; not overwriting a PKI (remove the directory's files first)", filepath.Join(dir, f.name))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var written []string
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := writeNew(path, f.data, f.mode); err != nil {
			for _, p := range written { // all or nothing
				_ = os.Remove(p)
			}
			return err
		}
		written = append(written, path)
	}
	return nil
}

// writeNew writes a file that must not exist yet (O_EXCL: a file created
// since the check is not overwritten either) with mode perm (less the
// umask's bits).
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func validFileID(id string) bool {
	if id == "" || id == "." || id == ".." || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
