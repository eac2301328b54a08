package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// testCA is a certificate authority of the tests (internal/tlsutil has the
// real one; the client does not depend on it).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial atomic.Int64

// issue returns a certificate signed by ca: a server's for 127.0.0.1 and
// hosts (DNS names), or a client's without hosts; notAfter zero means an
// hour from now.
func (ca *testCA) issue(t *testing.T, name string, server bool, notAfter time.Time, hosts ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if notAfter.IsZero() {
		notAfter = time.Now().Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1) + 1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     hosts,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if len(hosts) == 0 {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsServer is an httptest TLS server that counts the connections it
// accepted and the requests that reached its handler.
type tlsServer struct {
	*httptest.Server
	conns, hits atomic.Int64
}

// newTLSServer serves h over TLS with conf (its certificate: ca's for
// 127.0.0.1 unless conf has one).
func newTLSServer(t *testing.T, ca *testCA, conf *tls.Config, h http.HandlerFunc) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}))
	if conf == nil {
		conf = &tls.Config{}
	}
	if len(conf.Certificates) == 0 {
		conf.Certificates = []tls.Certificate{ca.issue(t, "node", true, time.Time{})}
	}
	s.TLS = conf
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors the tests cause
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func tlsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// An https endpoint works with the CA that signed the node's certificate,
// and a bare host:port is https when Config.TLS is set.
func TestTLSEndpoint(t *testing.T) {
	ca := newTestCA(t, "ca")
	srv := newTLSServer(t, ca, nil, ok)
	host := strings.TrimPrefix(srv.URL, "https://")
	c := newClient(t, Config{Endpoints: []string{srv.URL, host}, TLS: &tls.Config{RootCAs: ca.pool}})
	if got := strings.Join(c.eps.order(), " "); got != srv.URL {
		t.Errorf("endpoints %q, want %q", got, srv.URL)
	}
	ctx := tlsCtx(t)
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), kv.WithoutIdempotencyKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if srv.hits.Load() != 2 || srv.conns.Load() != 1 {
		t.Errorf("%d requests on %d connections, want 2 on 1", srv.hits.Load(), srv.conns.Load())
	}

	// Without Config.TLS a bare host:port stays http, and TLS cannot be
	// combined with a client of the caller's.
	c = newClient(t, Config{Endpoints: []string{host}})
	if got := c.eps.order()[0]; got != "http://"+host {
		t.Errorf("endpoint %q without TLS", got)
	}
	if _, err := New(Config{Endpoints: []string{srv.URL}, TLS: &tls.Config{}, HTTPClient: srv.Client()}); err == nil {
		t.Error("New accepted both TLS and HTTPClient")
	}
}

// A node whose certificate the client cannot verify fails every call at
// once, whatever its kind: one attempt per endpoint, an error that wraps
// the verification error and ErrUnreachable (nothing reached a server, so
// a write is certainly not applied), not a retry loop until the deadline.
func TestTLSVerificationFailsFast(t *testing.T) {
	ca, other := newTestCA(t, "ca"), newTestCA(t, "other")
	tests := []struct {
		name   string
		cert   tls.Certificate // the nodes'
		roots  *x509.CertPool
		target any // what errors.As must find
	}{
		{"unknown authority", ca.issue(t, "node", true, time.Time{}), other.pool, &x509.UnknownAuthorityError{}},
		{"wrong host", ca.issue(t, "node", true, time.Time{}, "node.example"), ca.pool, &x509.HostnameError{}},
		{"expired", ca.issue(t, "node", true, time.Now().Add(-time.Minute)), ca.pool, &x509.CertificateInvalidError{}},
	}
	calls := []struct {
		name string
		call func(context.Context, *Client) error
	}{
		{"get", func(ctx context.Context, c *Client) error {
			_, err := c.Get(ctx, []byte("k"), kv.ReadOptions{})
			return err
		}},
		{"keyed put", func(ctx context.Context, c *Client) error {
			_, err := c.Put(ctx, []byte("k"), []byte("v"))
			return err
		}},
		{"unkeyed put", func(ctx context.Context, c *Client) error {
			_, err := c.Put(ctx, []byte("k"), []byte("v"), kv.WithoutIdempotencyKey())
			return err
		}},
		{"watch", func(ctx context.Context, c *Client) error {
			for _, err := range c.Watch(ctx, kv.WatchOptions{Key: []byte("k")}) {
				return err
			}
			return errors.New("the watch ended without an error")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTLSServer(t, ca, &tls.Config{Certificates: []tls.Certificate{tt.cert}}, ok)
			b := newTLSServer(t, ca, &tls.Config{Certificates: []tls.Certificate{tt.cert}}, ok)
			c := newClient(t, Config{Endpoints: []string{a.URL, b.URL}, TLS: &tls.Config{RootCAs: tt.roots}})
			for _, call := range calls {
				ctx := tlsCtx(t)
				before := a.conns.Load() + b.conns.Load()
				err := call.call(ctx, c)
				var verr *tls.CertificateVerificationError
				switch {
				case err == nil:
					t.Fatalf("%s succeeded", call.name)
				case ctx.Err() != nil:
					t.Errorf("%s: retried until the deadline: %v", call.name, err)
				case !errors.As(err, &verr) || !errors.As(err, tt.target):
					t.Errorf("%s: %v (%T) does not wrap a *tls.CertificateVerificationError and a %T", call.name, err, err, tt.target)
				case !errors.Is(err, ErrUnreachable) || errors.Is(err, kv.ErrOutcomeUnknown):
					t.Errorf("%s: %v: want ErrUnreachable, not an unknown outcome", call.name, err)
				case !strings.Contains(err.Error(), "TLS handshake with https://127.0.0.1:"):
					t.Errorf("%s: %v does not name the endpoint", call.name, err)
				}
				if n := a.conns.Load() + b.conns.Load() - before; n != 2 {
					t.Errorf("%s: %d connections, want one per endpoint", call.name, n)
				}
			}
			if n := a.hits.Load() + b.hits.Load(); n != 0 {
				t.Errorf("%d requests reached a handler", n)
			}
		})
	}
}

// A node that requires a client certificate serves a client with one
// signed by its client CA; a client without one, or with another CA's,
// fails at once with "not applied" (the node's TLS layer refused it, no
// request reached the HTTP server), in TLS 1.2 (refused in the handshake)
// and in TLS 1.3 (refused after the client sent the request).
func TestTLSClientCertificate(t *testing.T) {
	ca, other := newTestCA(t, "ca"), newTestCA(t, "other")
	good, bad := ca.issue(t, "client", false, time.Time{}), other.issue(t, "client", false, time.Time{})
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			srv := newTLSServer(t, ca, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool, MaxVersion: version}, ok)
			for _, tt := range []struct {
				name  string
				certs []tls.Certificate
			}{{"no certificate", nil}, {"another CA's", []tls.Certificate{bad}}} {
				c := newClient(t, Config{Endpoints: []string{srv.URL}, TLS: &tls.Config{RootCAs: ca.pool, Certificates: tt.certs}})
				ctx := tlsCtx(t)
				before := srv.conns.Load()
				_, err := c.Put(ctx, []byte("k"), []byte("v"), kv.WithoutIdempotencyKey())
				var op *net.OpError
				switch {
				case err == nil:
					t.Fatalf("%s: the put succeeded", tt.name)
				case ctx.Err() != nil:
					t.Errorf("%s: retried until the deadline: %v", tt.name, err)
				case errors.Is(err, kv.ErrOutcomeUnknown) || !errors.Is(err, ErrUnreachable) || !kv.NotSent(err):
					t.Errorf("%s: %v: want not applied (ErrUnreachable)", tt.name, err)
				case !errors.As(err, &op) || !strings.Contains(err.Error(), "remote error: tls:"):
					t.Errorf("%s: %v does not carry the node's alert", tt.name, err)
				}
				if n := srv.conns.Load() - before; n != 1 {
					t.Errorf("%s: %d connections, want 1", tt.name, n)
				}
			}
			if n := srv.hits.Load(); n != 0 {
				t.Errorf("%d requests reached the handler", n)
			}
			c := newClient(t, Config{Endpoints: []string{srv.URL}, TLS: &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{good}}})
			if _, err := c.Put(tlsCtx(t), []byte("k"), []byte("v"), kv.WithoutIdempotencyKey()); err != nil {
				t.Fatalf("with a good certificate: %v", err)
			}
		})
	}
}

// A client given an https endpoint learns the members over https: the
// addresses /v1/cluster lists (host:port) keep the configured scheme, and
// the client keeps working when the configured node goes away.
func TestTLSDiscoveryKeepsHTTPS(t *testing.T) {
	ca := newTestCA(t, "ca")
	var listed atomic.Value // []string
	cluster := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/cluster" {
			ok(w, r)
			return
		}
		var info kv.ClusterInfo
		for i, a := range listed.Load().([]string) {
			info.Nodes = append(info.Nodes, kv.NodeInfo{ID: fmt.Sprintf("n%d", i+1), APIAddr: a})
		}
		writeJSON(w, http.StatusOK, info)
	}
	a, b := newTLSServer(t, ca, nil, cluster), newTLSServer(t, ca, nil, cluster)
	listed.Store([]string{a.Listener.Addr().String(), b.Listener.Addr().String()})
	c := newClient(t, Config{Endpoints: []string{a.URL}, TLS: &tls.Config{RootCAs: ca.pool}, RefreshInterval: time.Hour})
	ctx := tlsCtx(t)
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, func() error { return hasAll(c, a.URL, b.URL) })
	if got := c.eps.order(); len(got) != 2 {
		t.Errorf("endpoints %q", got)
	}
	a.Close()
	before := b.hits.Load()
	if _, err := c.Get(ctx, []byte("k"), kv.ReadOptions{}); err != nil {
		t.Fatalf("Get with the configured endpoint closed: %v", err)
	}
	if b.hits.Load() == before {
		t.Error("the learned https endpoint served nothing")
	}
}

// A watch streams over https.
func TestTLSWatch(t *testing.T) {
	ca := newTestCA(t, "ca")
	h := history(1, 5)
	s := newWatchScript(t, h, streamPlan{lines: -1, end: "silent"})
	srv := newTLSServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, streamPlan{lines: -1, end: "silent"}, "A")
	})
	c := newClient(t, Config{Endpoints: []string{srv.URL}, TLS: &tls.Config{RootCAs: ca.pool}})
	got, err := collect(t, c.Watch(tlsCtx(t), kv.WatchOptions{Key: []byte("app/"), Prefix: true, FromIndex: 1}), upTo(5))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(h) {
		t.Errorf("delivered %v, want %v", got, h)
	}
}

// An https endpoint on a plaintext node is a configuration error too.
func TestTLSToPlaintextNode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(ok))
	t.Cleanup(srv.Close)
	c := newClient(t, Config{Endpoints: []string{strings.Replace(srv.URL, "http://", "https://", 1)}, TLS: &tls.Config{}})
	ctx := tlsCtx(t)
	_, err := c.Put(ctx, []byte("k"), []byte("v"), kv.WithoutIdempotencyKey())
	if !errors.Is(err, http.ErrSchemeMismatch) || !errors.Is(err, ErrUnreachable) || ctx.Err() != nil {
		t.Errorf("put = %v, want at once http.ErrSchemeMismatch and ErrUnreachable", err)
	}
}
