package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

func TestCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	var stdout bytes.Buffer
	args := []string{"cert", "--dir", dir, "--nodes", "a, b", "--hosts", "127.0.0.1,localhost,::1", "--days", "2"}
	if err := run(context.Background(), args, nil, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "a.pem", "a-key.pem", "b.pem", "b-key.pem", "client.pem", "client-key.pem"} {
		if !strings.Contains(stdout.String(), filepath.Join(dir, f)+"\n") {
			t.Errorf("output does not list %s:\n%s", f, stdout.String())
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "a-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("a-key.pem: %v, %v", fi, err)
	}

	pool, err := tlsutil.LoadCAPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "client"} {
		r, err := tlsutil.NewReloader(filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem"), nil)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		r.Close()
		leaf := r.Leaf()
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		if d := leaf.NotAfter.Sub(leaf.NotBefore).Hours(); d < 47 || d > 49 {
			t.Errorf("%s: valid for %.1f hours, want about 48 (--days 2)", id, d)
		}
		if id != "client" {
			for _, h := range []string{"127.0.0.1", "localhost", "::1", id} {
				if err := leaf.VerifyHostname(h); err != nil {
					t.Errorf("%s: %v", id, err)
				}
			}
		}
	}

	// A second run refuses to overwrite, and says why.
	before, _ := os.ReadFile(filepath.Join(dir, "a-key.pem"))
	err = run(context.Background(), args, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second run = %v, want a refusal to overwrite", err)
	}
	if exitCode(err, io.Discard) != 1 {
		t.Errorf("second run: exit code %d, want 1", exitCode(err, io.Discard))
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "a-key.pem")); !bytes.Equal(before, after) {
		t.Error("second run changed a-key.pem")
	}
}

func TestCertUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"cert"},
		{"cert", "--dir", t.TempDir(), "extra"},
		{"cert", "--dir", t.TempDir(), "--nodes", " , "},
		{"cert", "--dir", t.TempDir(), "--days", "0"},
		{"cert", "--dir", t.TempDir(), "--bogus"},
	} {
		err := run(context.Background(), args, nil, io.Discard, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"help", "cert"}, nil, &stdout, &stderr); err != nil || !strings.Contains(stderr.String(), "-dir DIR") {
		t.Errorf("help cert = %v, %q", err, stderr.String())
	}
	stdout.Reset()
	_ = run(context.Background(), []string{"help"}, nil, &stdout, io.Discard)
	if !strings.Contains(stdout.String(), "raftkv cert") {
		t.Error("help does not mention raftkv cert")
	}
}
