package main

import (
	"crypto/tls"
	"flag"
	"os"
	"strings"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

// tlsFlags holds --cacert, --cert and --key: the TLS of the client
// commands and of raftkv bench.
type tlsFlags struct{ cacert, cert, key string }

// add registers the flags on fs, their defaults from $RAFTKV_CACERT,
// $RAFTKV_CERT and $RAFTKV_KEY.
func (t *tlsFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&t.cacert, "cacert", os.Getenv("RAFTKV_CACERT"), "verify the nodes' certificates with the CA certificates in PEM `FILE` instead of the system's ($RAFTKV_CACERT)")
	fs.StringVar(&t.cert, "cert", os.Getenv("RAFTKV_CERT"), "present the client certificate in PEM `FILE`, with --key ($RAFTKV_CERT)")
	fs.StringVar(&t.key, "key", os.Getenv("RAFTKV_KEY"), "the private key of --cert, PEM `FILE` ($RAFTKV_KEY)")
}

// config reads the files once (a command is short-lived) and returns the
// client's TLS configuration, or nil when no flag is set: then https
// endpoints are verified with the system's roots. A file that cannot be
// read or parsed, and --cert without --key, are usage errors.
func (t *tlsFlags) config() (*tls.Config, error) {
	if t.cacert == "" && t.cert == "" && t.key == "" {
		return nil, nil
	}
	if (t.cert == "") != (t.key == "") {
		return nil, usagef("--cert and --key go together")
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.cacert != "" {
		pool, err := tlsutil.LoadCAPool(t.cacert)
		if err != nil {
			return nil, usagef("--cacert: %v", err)
		}
		conf.RootCAs = pool
	}
	if t.cert != "" {
		pair, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, usagef("--cert, --key: %v", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

// defaultTLSAddr replaces defaultAddr when TLS flags are given.
const defaultTLSAddr = "https://127.0.0.1:8001"

// splitAddr splits --addr into its endpoints. With TLS (tlsOn) the
// default address is https, a bare host:port gets https://, and an http://
// endpoint is a usage error: it would ignore the flags.
func splitAddr(addr string, tlsOn bool) ([]string, error) {
	if tlsOn && addr == defaultAddr {
		addr = defaultTLSAddr
	}
	var endpoints []string
	for e := range strings.SplitSeq(addr, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if tlsOn {
			scheme, _, found := strings.Cut(e, "://")
			switch {
			case !found:
				e = "https://" + e
			case strings.EqualFold(scheme, "http"):
				return nil, usagef("--addr: %s is plaintext http, but --cacert, --cert or --key is given: use https://", e)
			}
		}
		endpoints = append(endpoints, e)
	}
	return endpoints, nil
}
