package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

const certSummary = `Write a development PKI into DIR with Go's crypto/x509 (no openssl needed):
a CA (ca.pem, ca-key.pem), a member certificate and key per node (n1.pem,
n1-key.pem, ...: server and client auth, OU raftkv-member, the --hosts and
the node id as names) and a client pair (client.pem, client-key.pem: OU
raftkv-client). Keys are written mode 0600. It refuses to overwrite any
existing file. For development and tests: the CA key sits next to the
certificates.

Then: raftkv serve --tls-cert DIR/n1.pem --tls-key DIR/n1-key.pem --tls-ca DIR/ca.pem`

func runCert(args []string, stdout, stderr io.Writer) error {
	c := newCommand("cert", "", certSummary, stderr)
	dir := c.fs.String("dir", "", "write the files into directory `DIR` (created if missing; required)")
	nodes := c.fs.String("nodes", "n1,n2,n3", "comma-separated node ids, one member certificate each")
	hosts := c.fs.String("hosts", "127.0.0.1,localhost", "comma-separated IP addresses and DNS names of the nodes, in every member certificate")
	days := c.fs.Int("days", 365, "the CA and every certificate are valid for `N` days")
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("cert: --dir is required")
	}
	if *days <= 0 {
		return usagef("cert: --days %d: must be positive", *days)
	}
	ids := certNames(*nodes)
	if len(ids) == 0 {
		return usagef("cert: --nodes is empty")
	}
	if err := tlsutil.WriteDevPKIValidity(*dir, ids, certNames(*hosts), time.Duration(*days)*24*time.Hour); err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	files := []string{"ca.pem", "ca-key.pem"}
	for _, id := range append(ids, "client") {
		files = append(files, id+".pem", id+"-key.pem")
	}
	for _, f := range files {
		fmt.Fprintln(stdout, filepath.Join(*dir, f))
	}
	return nil
}

// certNames splits a comma-separated flag value, dropping empty items.
func certNames(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
