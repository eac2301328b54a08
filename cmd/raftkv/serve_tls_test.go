package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --tls-cert, --tls-key and --tls-ca go together; --tls-client-ca needs them.
func TestServeTLSFlagsGoTogether(t *testing.T) {
	for _, tls := range [][]string{
		{"--tls-cert", "c.pem"},
		{"--tls-cert", "c.pem", "--tls-key", "k.pem"},
		{"--tls-ca", "ca.pem"},
		{"--tls-client-ca", "ca.pem"},
	} {
		args := append([]string{"serve", "--id", "n1", "--data-dir", t.TempDir()}, tls...)
		err := run(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err, &bytes.Buffer{}) != 2 {
			t.Errorf("raftkv %v: %v, want a usage error", args, err)
		}
	}
	t.Setenv("RAFTKV_TLS_CERT", "c.pem")
	args := []string{"serve", "--id", "n1", "--data-dir", t.TempDir()}
	if err := run(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}); exitCode(err, &bytes.Buffer{}) != 2 {
		t.Errorf("RAFTKV_TLS_CERT alone: %v, want a usage error", err)
	}
}
