package tlsutil

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func serialOf(r *Reloader) string { return r.Leaf().SerialNumber.String() }

func TestReloaderPicksUpRotation(t *testing.T) {
	ca := mustCA(t, "ca")
	a, b := mustMember(t, ca, "n1", "127.0.0.1"), mustMember(t, ca, "n1", "127.0.0.1")
	var logs logBuffer
	r, certFile, _ := testReloader(t, a, 20*time.Millisecond, logs.logger())
	if got, want := serialOf(r), parsePEMCert(t, a.cert).SerialNumber.String(); got != want {
		t.Fatalf("serial %s, want %s", got, want)
	}
	c, err := r.GetCertificate(nil)
	if err != nil || c.Leaf != r.Leaf() {
		t.Fatalf("GetCertificate = %v, %v", c, err)
	}

	writePair(t, dirOf(certFile), "node", b)
	want := parsePEMCert(t, b.cert).SerialNumber.String()
	eventually(t, 5*time.Second, "new pair not picked up", func() bool { return serialOf(r) == want })
	c, err = r.GetClientCertificate(nil)
	if err != nil || c.Leaf.SerialNumber.String() != want {
		t.Fatalf("GetClientCertificate after rotation = %v, %v", c, err)
	}
	if !strings.Contains(logs.String(), "certificate loaded") {
		t.Errorf("rotation not logged:\n%s", logs.String())
	}
}

func dirOf(file string) string { return filepath.Dir(file) }

func TestReloaderKeepsOldPairOnBadFiles(t *testing.T) {
	ca := mustCA(t, "ca")
	a, b, c := mustMember(t, ca, "n1"), mustMember(t, ca, "n1"), mustMember(t, ca, "n1")
	var logs logBuffer
	r, certFile, keyFile := testReloader(t, a, 20*time.Millisecond, logs.logger())
	dir := dirOf(certFile)
	old := serialOf(r)

	steps := []struct {
		name string
		p    pemPair
	}{
		{"key of another certificate", pemPair{b.cert, c.key}},
		{"garbage certificate", pemPair{[]byte("not a certificate"), b.key}},
		{"empty key", pemPair{b.cert, nil}},
	}
	for i, s := range steps {
		writePair(t, dir, "node", s.p)
		eventually(t, 5*time.Second, s.name+": refusal not logged", func() bool {
			return strings.Count(logs.String(), "do not load") > i
		})
		if got := serialOf(r); got != old {
			t.Fatalf("%s: serving %s, want the old %s", s.name, got, old)
		}
		if err := r.Reload(); err == nil {
			t.Fatalf("%s: Reload succeeded", s.name)
		}
		if got := serialOf(r); got != old {
			t.Fatalf("%s: after Reload serving %s, want the old %s", s.name, got, old)
		}
	}
	for _, k := range [][]byte{a.key, b.key, c.key} {
		for _, line := range keyBody(k) {
			if strings.Contains(logs.String(), line) {
				t.Fatalf("key material in the log:\n%s", logs.String())
			}
		}
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Fatalf("key in the log:\n%s", logs.String())
	}

	// Fixing the key file completes the rotation.
	writePair(t, dir, "node", b)
	want := parsePEMCert(t, b.cert).SerialNumber.String()
	eventually(t, 5*time.Second, "good pair after a bad one not picked up", func() bool { return serialOf(r) == want })

	// A missing file keeps the pair too.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload with no key file succeeded")
	}
	if got := serialOf(r); got != want {
		t.Fatalf("after losing the key file serving %s, want %s", got, want)
	}
}

func TestReloaderReloadNow(t *testing.T) {
	ca := mustCA(t, "ca")
	a, b := mustMember(t, ca, "n1"), mustMember(t, ca, "n1")
	r, certFile, _ := testReloader(t, a, time.Hour, nil) // no poll during the test: only Reload
	writePair(t, dirOf(certFile), "node", b)
	if got, want := serialOf(r), parsePEMCert(t, a.cert).SerialNumber.String(); got != want {
		t.Fatalf("before Reload serving %s, want %s", got, want)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, want := serialOf(r), parsePEMCert(t, b.cert).SerialNumber.String(); got != want {
		t.Fatalf("after Reload serving %s, want %s", got, want)
	}
	r.Close()
	r.Close() // idempotent
	if _, err := r.GetCertificate(nil); err != nil {
		t.Fatalf("GetCertificate after Close: %v", err)
	}
}

func TestNewReloaderErrors(t *testing.T) {
	ca := mustCA(t, "ca")
	a, b := mustMember(t, ca, "n1"), mustMember(t, ca, "n2")
	dir := t.TempDir()
	cases := []struct {
		name string
		p    *pemPair
	}{
		{"missing files", nil},
		{"mismatched key", &pemPair{a.cert, b.key}},
		{"key as certificate", &pemPair{a.key, a.key}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			certFile, keyFile := dir+"/none.pem", dir+"/none-key.pem"
			if tc.p != nil {
				certFile, keyFile = writePair(t, t.TempDir(), "x", *tc.p)
			}
			if r, err := NewReloader(certFile, keyFile, nil); err == nil {
				r.Close()
				t.Fatal("NewReloader succeeded")
			}
		})
	}
}

// TestReloaderConcurrent reads the pair from many goroutines while it is
// swapped, for the race detector.
func TestReloaderConcurrent(t *testing.T) {
	ca := mustCA(t, "ca")
	pairs := []pemPair{mustMember(t, ca, "n1"), mustMember(t, ca, "n1")}
	r, certFile, _ := testReloader(t, pairs[0], 5*time.Millisecond, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := r.GetCertificate(nil)
				if err != nil || c.Leaf == nil || r.Leaf() == nil {
					t.Error("no certificate during rotation")
					return
				}
			}
		})
	}
	for i := range 20 {
		writePair(t, dirOf(certFile), "node", pairs[i%2])
		if err := r.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestRotationHandshake runs a mutual-TLS server over loopback whose
// certificate and whose client's certificate are rotated on disk: new
// handshakes show both new certificates, with the real one-second poll.
func TestRotationHandshake(t *testing.T) {
	ca := mustCA(t, "ca")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	srvA, srvB := mustMember(t, ca, "n1", "127.0.0.1"), mustMember(t, ca, "n1", "127.0.0.1")
	cliA, cliB := mustMember(t, ca, "n2", "127.0.0.1"), mustMember(t, ca, "n2", "127.0.0.1")
	srvDir, cliDir := t.TempDir(), t.TempDir()

	srvCert, srvKey := writePair(t, srvDir, "n1", srvA)
	srv, err := NewReloader(srvCert, srvKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cliCert, cliKey := writePair(t, cliDir, "n2", cliA)
	cli, err := NewReloader(cliCert, cliKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cli.Close)

	// The server answers each connection with the serial of the client's
	// certificate and whether it is a member.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(srv, pool, true))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				cs := tc.ConnectionState()
				fmt.Fprintf(tc, "%s %v\n", cs.PeerCertificates[0].SerialNumber, IsMember(&cs))
			})
		}
	})

	dial := func() (serverSerial, seenClient string) {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), ClientConfig(cli, pool))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		cs := c.ConnectionState()
		if !IsMember(&cs) {
			t.Fatal("server certificate is not a member's")
		}
		if !strings.HasSuffix(line, " true\n") {
			t.Fatalf("server saw %q: client not a member", line)
		}
		return cs.PeerCertificates[0].SerialNumber.String(), strings.Fields(line)[0]
	}
	serial := func(p pemPair) string { return parsePEMCert(t, p.cert).SerialNumber.String() }

	if s, c := dial(); s != serial(srvA) || c != serial(cliA) {
		t.Fatalf("before rotation: server %s client %s, want %s %s", s, c, serial(srvA), serial(cliA))
	}
	writePair(t, srvDir, "n1", srvB)
	writePair(t, cliDir, "n2", cliB)
	eventually(t, 10*time.Second, "handshakes do not show the rotated certificates", func() bool {
		s, c := dial()
		return s == serial(srvB) && c == serial(cliB)
	})
}
