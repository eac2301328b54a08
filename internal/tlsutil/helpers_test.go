package tlsutil

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pemPair is a certificate and its key, PEM-encoded.
type pemPair struct{ cert, key []byte }

func mustCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustMember(t *testing.T, ca *CA, id string, hosts ...string) pemPair {
	t.Helper()
	c, k, err := ca.IssueMember(id, hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pemPair{c, k}
}

func mustClient(t *testing.T, ca *CA, name string) pemPair {
	t.Helper()
	c, k, err := ca.IssueClient(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pemPair{c, k}
}

func parsePEMCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writePair writes p to dir/name.pem and dir/name-key.pem (replacing them
// in place, as a careless rotation would) and returns the paths.
func writePair(t *testing.T, dir, name string, p pemPair) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, p.cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, p.key, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// testReloader writes p to a fresh directory and watches it every interval.
func testReloader(t *testing.T, p pemPair, interval time.Duration, logger *slog.Logger) (r *Reloader, certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = writePair(t, t.TempDir(), "node", p)
	r, err := newReloader(certFile, keyFile, logger, interval)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, certFile, keyFile
}

// logBuffer collects a logger's output for the test to read while the
// logger is in use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for state
	}
}

// keyBody returns the base64 lines of a PEM key, to look for in logs.
func keyBody(keyPEM []byte) []string {
	var lines []string
	for l := range strings.SplitSeq(string(keyPEM), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	return lines
}
