package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testPKI writes into a temporary directory a CA (ca.pem), a client pair
// it signed (client.pem, client-key.pem), another CA (other-ca.pem) and a
// file that is no PEM (garbage.pem); it returns the directory and a
// server certificate for 127.0.0.1 signed by the CA, and the CA's pool.
func testPKI(t *testing.T) (dir string, server tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	dir = t.TempDir()
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	create := func(tmpl, parent *x509.Certificate, pub, signer any) []byte {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		key := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
		cert, err := x509.ParseCertificate(create(tmpl, tmpl, &key.PublicKey, key))
		if err != nil {
			t.Fatal(err)
		}
		write(name+".pem", "CERTIFICATE", cert.Raw)
		return cert, key
	}
	ca, caKey := newCA("ca")
	newCA("other-ca")
	pool = x509.NewCertPool()
	pool.AddCert(ca)

	key := newKey()
	write("client.pem", "CERTIFICATE", create(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, &key.PublicKey, caKey))
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write("client-key.pem", "PRIVATE KEY", der)
	if err := os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	key = newKey()
	server = tls.Certificate{PrivateKey: key, Certificate: [][]byte{create(&x509.Certificate{SerialNumber: big.NewInt(3),
		Subject: pkix.Name{CommonName: "node"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &key.PublicKey, caKey)}}
	return dir, server, pool
}

func TestTLSFlagErrors(t *testing.T) {
	dir, _, _ := testPKI(t)
	f := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		env  map[string]string
		args []string
		want string // in the message
	}{
		{nil, []string{"get", "--cacert", f("missing.pem"), "k"}, "--cacert: open"},
		{nil, []string{"get", "--cacert", f("garbage.pem"), "k"}, "no PEM certificate"},
		{nil, []string{"get", "--cert", f("client.pem"), "k"}, "--cert and --key go together"},
		{nil, []string{"put", "--key", f("client-key.pem"), "k", "v"}, "--cert and --key go together"},
		{nil, []string{"get", "--cert", f("client.pem"), "--key", f("missing.pem"), "k"}, "--cert, --key: open"},
		{nil, []string{"get", "--cert", f("ca.pem"), "--key", f("client-key.pem"), "k"}, "--cert, --key: tls:"},
		{nil, []string{"get", "--cacert", f("ca.pem"), "--addr", "https://127.0.0.1:1,http://127.0.0.1:2", "k"}, "plaintext http"},
		{map[string]string{"RAFTKV_CACERT": f("missing.pem")}, []string{"watch", "k"}, "--cacert: open"},
		{map[string]string{"RAFTKV_CERT": f("client.pem")}, []string{"lease", "ls"}, "--cert and --key go together"},
		{map[string]string{"RAFTKV_KEY": f("client-key.pem"), "RAFTKV_CERT": f("missing.pem")}, []string{"lock", "n", "true"}, "--cert, --key: open"},
		{nil, []string{"bench", "--cacert", f("missing.pem")}, "--cacert: open"},
		{nil, []string{"bench", "--cert", f("client.pem")}, "--cert and --key go together"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			err := run(context.Background(), tt.args, strings.NewReader(""), io.Discard, io.Discard)
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run = %v, want a usage error with %q", err, tt.want)
			}
			if got := exitCode(err, io.Discard); got != 2 {
				t.Errorf("exit code %d, want 2", got)
			}
		})
	}
}

func TestSplitAddr(t *testing.T) {
	tests := []struct {
		addr  string
		tlsOn bool
		want  []string
	}{
		{defaultAddr, false, []string{defaultAddr}},
		{defaultAddr, true, []string{"https://127.0.0.1:8001"}},
		{"h:1, https://h:2,,", true, []string{"https://h:1", "https://h:2"}},
		{"h:1, http://h:2", false, []string{"h:1", "http://h:2"}},
	}
	for _, tt := range tests {
		got, err := splitAddr(tt.addr, tt.tlsOn)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("splitAddr(%q, %v) = %q, %v; want %q", tt.addr, tt.tlsOn, got, err, tt.want)
		}
	}
}

// The client commands reach a node that requires client certificates with
// --cacert, --cert and --key (or their variables); without a client
// certificate, or without the CA, they fail at once (exit 1) naming the
// cause.
func TestTLSClientCommands(t *testing.T) {
	dir, cert, pool := testPKI(t)
	f := func(name string) string { return filepath.Join(dir, name) }
	srv := httptest.NewUnstartedServer(newFakeServer())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")

	cli := func(args ...string) (string, error) {
		t.Helper()
		var stdout bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(""), &stdout, io.Discard)
		return stdout.String(), err
	}
	if _, err := cli("put", "--addr", srv.URL, "--cacert", f("ca.pem"), "--cert", f("client.pem"), "--key", f("client-key.pem"), "k", "v1"); err != nil {
		t.Fatal(err)
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("RAFTKV_CACERT", f("ca.pem"))
		t.Setenv("RAFTKV_CERT", f("client.pem"))
		t.Setenv("RAFTKV_KEY", f("client-key.pem"))
		t.Setenv("RAFTKV_ADDR", host) // bare host:port: https with TLS
		if out, err := cli("get", "k"); err != nil || out != "v1" {
			t.Errorf("get = %q, %v; want v1", out, err)
		}
	})
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no client certificate", []string{"--cacert", f("ca.pem")}, "remote error: tls:"},
		{"another CA", []string{"--cacert", f("other-ca.pem"), "--cert", f("client.pem"), "--key", f("client-key.pem")}, "certificate signed by unknown authority"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"put", "--addr", srv.URL, "--timeout", "20s"}, tt.args...)
			start := time.Now()
			_, err := cli(append(args, "k", "v2")...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "deadline") {
				t.Fatalf("put = %v, want an error with %q before the timeout", err, tt.want)
			}
			if exitCode(err, io.Discard) != 1 {
				t.Errorf("exit code %d, want 1", exitCode(err, io.Discard))
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s: retried a configuration error", d)
			}
		})
	}
}
