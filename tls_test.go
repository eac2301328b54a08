package raftkv_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/kv"
)

// A TLS cluster serves as a plaintext one does: writes through a
// follower (forwarded batches over mutual TLS), linearizable reads on
// followers (read indexes and leadership checks over mutual TLS),
// leadership transfer relayed by a follower, and ?redirect to https.
func TestTLSClusterServes(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{TLS: true})
	if !strings.HasPrefix(c.URL(0), "https://") || c.Node(0).Scheme() != "https" {
		t.Fatalf("URL %s, scheme %s", c.URL(0), c.Node(0).Scheme())
	}
	l, f := c.Leader(), c.Follower()
	put(t, c, f, "tls/a", "through-follower")
	for i := range c.Size() {
		if resp, body := get(t, c, i, "tls/a", ""); resp.StatusCode != http.StatusOK || body != "through-follower" {
			t.Fatalf("linearizable read on node %d: %d %s", i, resp.StatusCode, body)
		}
	}
	noFollow := *c.HTTP
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest(http.MethodPut, c.URL(f)+"/v1/kv/tls/r?redirect", strings.NewReader("x"))
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, "https://"+c.Node(l).HTTPAddr()) {
		t.Fatalf("redirect: %d %s Location %q", resp.StatusCode, body, loc)
	}

	// Transfer through a follower: relayed to the leader over TLS.
	target := clusterInfo(t, c, f).ID
	resp, body = c.Do(http.MethodPost, c.URL(f)+"/v1/cluster/transfer-leader?id="+target, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("transfer through follower: %d %s", resp.StatusCode, body)
	}
	if err := testkit.Eventually(10*time.Second, func() error {
		if !c.Node(f).IsLeader() {
			return errors.New("target is not the leader yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	put(t, c, l, "tls/b", "through-old-leader")
	for i := range c.Size() {
		if resp, body := get(t, c, i, "tls/b", ""); resp.StatusCode != http.StatusOK || body != "through-old-leader" {
			t.Fatalf("read after transfer on node %d: %d %s", i, resp.StatusCode, body)
		}
	}
}

// A member with a certificate from the cluster's CA joins and votes; a node
// with a certificate from another CA cannot: the members refuse its
// connections, and the configuration keeps its members.
func TestTLSJoin(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{TLS: true})
	var join []string
	for i := range c.Size() {
		join = append(join, c.Node(i).HTTPAddr())
	}

	// A stranger: its own CA, a member certificate from it.
	other := testkit.NewPKI(t, 0)
	other.IssueMember(t, "x1")
	x, err := raftkv.Open(raftkv.Config{
		ID: "x1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Join: join, Tuning: testkit.FastTuning,
		TLS: &raftkv.TLSConfig{CertFile: other.Path("x1.pem"), KeyFile: other.Path("x1-key.pem"), CAFile: other.Path("ca.pem")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()

	c.PKI.IssueMember(t, "n4")
	n4, err := raftkv.Open(raftkv.Config{
		ID: "n4", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Join: join, Tuning: testkit.FastTuning,
		TLS: &raftkv.TLSConfig{CertFile: c.PKI.Path("n4.pem"), KeyFile: c.PKI.Path("n4-key.pem"), CAFile: c.PKI.Path("ca.pem")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n4.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n4.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// n4 joined as a non-voter; the leader promotes it once caught up,
	// having asked it over TLS.
	err = testkit.Eventually(30*time.Second, func() error {
		info := clusterInfo(t, c, c.Leader())
		var ids []string
		for _, ni := range info.Nodes {
			ids = append(ids, ni.ID+"/"+ni.Suffrage)
		}
		if got := strings.Join(ids, ","); got != "n1/voter,n2/voter,n3/voter,n4/voter" {
			return fmt.Errorf("members %s, want n1-n4 voters and no x1", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// n4 serves: a write through it reaches every node.
	if _, err := n4.Put(ctx, []byte("tls/n4"), []byte("v")); err != nil {
		t.Fatalf("put through n4: %v", err)
	}
	if r, err := c.Node(0).Get(ctx, []byte("tls/n4"), kv.ReadOptions{}); err != nil || string(r.Value) != "v" {
		t.Fatalf("read on n1: %+v %v", r, err)
	}
	if ready := x.WaitReady(ctxTimeout(t, 2*time.Second)); ready == nil {
		t.Fatal("the stranger with another CA's certificate became ready")
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// writePair writes a certificate and key as name.pem and name-key.pem in
// dir and returns the loaded pair.
func writePair(t *testing.T, dir, name string, cert, key []byte) tls.Certificate {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// raftDial connects to a raft transport with pair as client certificate
// and reports whether the member on the other end accepted it: the dial
// and handshake succeed and the connection stays open (raft waits for an
// RPC), where a refused peer sees the handshake fail or, with TLS 1.3, the
// server's alert on its first read.
func raftDial(t *testing.T, addr string, roots *x509.CertPool, pair *tls.Certificate) error {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if pair != nil {
		cfg.Certificates = []tls.Certificate{*pair}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil // still open: accepted
	}
	return fmt.Errorf("connection ended: %w", err)
}

// The raft transport refuses a certificate from another CA, an expired
// member certificate, a client (non-member) certificate from the cluster's
// own CA, no certificate and plaintext; it accepts a member's.
func TestTLSRaftRefusesNonMembers(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{TLS: true})
	addr := c.Node(c.Leader()).RaftAddr()
	dir := t.TempDir()
	roots := c.PKI.Roots()

	cert, key, err := c.PKI.CA.IssueMember("n9", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	member := writePair(t, dir, "member", cert, key)
	if err := raftDial(t, addr, roots, &member); err != nil {
		t.Fatalf("a member certificate was refused: %v", err)
	}

	otherCA, err := tlsutil.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err = otherCA.IssueMember("n9", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := writePair(t, dir, "foreign", cert, key)
	now := time.Now()
	cert, key, err = c.PKI.CA.IssueMemberWindow("n9", []string{"127.0.0.1"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired := writePair(t, dir, "expired", cert, key)
	cert, key, err = c.PKI.CA.IssueClient("client", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := writePair(t, dir, "client", cert, key)
	for name, pair := range map[string]*tls.Certificate{"another CA": &foreign, "expired": &expired, "client certificate": &client, "no certificate": nil} {
		if err := raftDial(t, addr, roots, pair); err == nil {
			t.Errorf("%s: accepted by the raft transport", name)
		}
	}
	// The member dialer side too: a raft transport that is not the
	// cluster's is refused by the members' dialers (they verify the
	// server against the CA); checked through plaintext here.
	if got := plaintextAnswer(t, addr, "\x00\x00\x00\x00\x00\x00\x00\x00"); got != "" {
		t.Errorf("raft port answered plaintext with %q", got)
	}
	// Nothing of it changed the configuration.
	info := clusterInfo(t, c, c.Leader())
	if len(info.Nodes) != 3 {
		t.Fatalf("members %+v", info.Nodes)
	}
}

// plaintextAnswer sends msg over plain TCP and returns whatever comes back
// before the connection ends.
func plaintextAnswer(t *testing.T, addr, msg string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, msg); err != nil {
		return ""
	}
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s kept a plaintext connection open", addr)
	}
	return string(b)
}

// A plaintext HTTP request to the HTTPS port gets the connection closed,
// not Go's "400 Client sent an HTTP request to an HTTPS server".
func TestTLSPlaintextHTTPGetsNoAnswer(t *testing.T) {
	c := testkit.NewCluster(t, 1, testkit.Options{TLS: true})
	addr := c.Node(0).HTTPAddr()
	if got := plaintextAnswer(t, addr, "GET /v1/cluster HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); got != "" {
		t.Fatalf("plaintext request answered: %q", got)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/livez")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("plaintext GET answered %d", resp.StatusCode)
	}
	// The port still serves TLS.
	if resp, body := c.Do(http.MethodGet, c.URL(0)+"/livez", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("livez over TLS: %d %s", resp.StatusCode, body)
	}
}

// The internal endpoints, and any request marked as forwarded by a member,
// need a member certificate: a client certificate, or none, gets 403
// permission_denied; the public API serves them.
func TestTLSInternalEndpointsNeedMemberCert(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{TLS: true})
	l := c.Leader()
	base := c.URL(l)
	memberPair, err := tls.LoadX509KeyPair(c.PKI.Path("n1.pem"), c.PKI.Path("n1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.PKI.Roots()}}}
	member := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.PKI.Roots(), Certificates: []tls.Certificate{memberPair}}}}
	do := func(hc *http.Client, method, url, hdr string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if hdr != "" {
			req.Header.Set(httpapi.HeaderForwardedBy, hdr)
		}
		if method == http.MethodPost {
			req.Header.Set("Content-Type", httpapi.ApplyContentType)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	forbidden := []struct{ method, path, fwd string }{
		{http.MethodGet, httpapi.ReadIndexPath, ""},
		{http.MethodGet, httpapi.LeaderCheckPath, ""},
		{http.MethodPost, httpapi.ApplyPath, ""},
		{http.MethodGet, "/v1/kv/x", "n2"},
		{http.MethodPost, "/v1/cluster/transfer-leader", "n2"},
	}
	for name, hc := range map[string]*http.Client{"client certificate": c.HTTP, "no certificate": noCert} {
		for _, f := range forbidden {
			status, body := do(hc, f.method, base+f.path, f.fwd, nil)
			var e kv.ErrorResponse
			if status != http.StatusForbidden || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != "permission_denied" {
				t.Errorf("%s: %s %s (forwarded by %q): %d %s, want 403 permission_denied", name, f.method, f.path, f.fwd, status, body)
			}
		}
		if status, body := do(hc, http.MethodGet, base+"/v1/cluster", "", nil); status != http.StatusOK {
			t.Errorf("%s: GET /v1/cluster: %d %s", name, status, body)
		}
	}
	if status, body := do(member, http.MethodGet, base+httpapi.ReadIndexPath, "", nil); status != http.StatusOK {
		t.Errorf("member: read index: %d %s", status, body)
	}
	if status, body := do(member, http.MethodGet, base+httpapi.LeaderCheckPath, "", nil); status != http.StatusOK {
		t.Errorf("member: leader check: %d %s", status, body)
	}
}

// With TLSConfig.ClientCAFile the API requires a client certificate:
// signed by the client CA (or the cluster's CA); without one the handshake
// fails.
func TestTLSClientCARequiresClientCert(t *testing.T) {
	clientCA, err := tlsutil.NewCA("clients", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client-ca.pem"), clientCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key, err := clientCA.IssueClient("app", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	app := writePair(t, dir, "app", cert, key)
	c := testkit.NewCluster(t, 3, testkit.Options{TLS: true, Configure: func(_ int, cfg *raftkv.Config) {
		cfg.TLS.ClientCAFile = filepath.Join(dir, "client-ca.pem")
	}})
	url := c.URL(c.Follower()) + "/v1/kv/tls/c"
	withApp := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.PKI.Roots(), Certificates: []tls.Certificate{app}}}}
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader("v"))
	resp, err := withApp.Do(req)
	if err != nil {
		t.Fatalf("put with the client CA's certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("put with the client CA's certificate: %d", resp.StatusCode)
	}
	// An app certificate is no member certificate.
	resp, err = withApp.Get(c.URL(c.Leader()) + httpapi.ReadIndexPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("read index with the client CA's certificate: %d", resp.StatusCode)
	}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.PKI.Roots()}}}
	if resp, err := noCert.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("no client certificate: answered %d", resp.StatusCode)
	}
}

// Rotation: every node's certificate is replaced (same CA, new serial)
// while clients write through every node: no write fails, and new
// connections, to the HTTP API and to the raft transport, show the new
// certificates.
func TestTLSRotationWhileWriting(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{TLS: true})
	memberPair, err := tls.LoadX509KeyPair(c.PKI.Path("n1.pem"), c.PKI.Path("n1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes, failures atomic.Int64
	var firstErr atomic.Value
	for i := range c.Size() {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/kv/rot/%d/%d", c.URL(i), i, k), strings.NewReader("v"))
				resp, err := c.HTTP.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				writes.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("write %d/%d: %w", i, k, err))
				}
			}
		})
	}
	// Some writes before the rotation, and after it over new connections.
	moreWrites := func(n int64) {
		t.Helper()
		want := writes.Load() + n
		if err := testkit.Eventually(10*time.Second, func() error {
			if got := writes.Load(); got < want {
				return fmt.Errorf("%d writes, waiting for %d", got, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	moreWrites(20)
	serials := map[string]string{}
	for i := range c.Size() {
		id := fmt.Sprintf("n%d", i+1)
		serials[id] = c.PKI.IssueMember(t, id).SerialNumber.String()
	}
	serialOf := func(addr string, pair *tls.Certificate) (string, error) {
		cfg := &tls.Config{RootCAs: c.PKI.Roots()}
		if pair != nil {
			cfg.Certificates = []tls.Certificate{*pair}
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	err = testkit.Eventually(10*time.Second, func() error {
		for i := range c.Size() {
			n := c.Node(i)
			want := serials[n.ID()]
			for _, a := range []struct {
				what, addr string
				pair       *tls.Certificate
			}{{"http", n.HTTPAddr(), nil}, {"raft", n.RaftAddr(), &memberPair}} {
				got, err := serialOf(a.addr, a.pair)
				if err != nil {
					return fmt.Errorf("%s %s: %w", n.ID(), a.what, err)
				}
				if got != want {
					return fmt.Errorf("%s %s presents serial %s, want the new %s", n.ID(), a.what, got, want)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	// Writes over connections made after the rotation too.
	c.HTTP.CloseIdleConnections()
	moreWrites(20)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d writes failed during the rotation; first: %v", failures.Load(), writes.Load(), firstErr.Load())
	}
	if writes.Load() < 10 {
		t.Fatalf("only %d writes", writes.Load())
	}
	t.Logf("%d writes, none failed", writes.Load())
}

// Config.TLS takes the certificate, key and CA together, or nothing.
func TestTLSConfigNeedsAllThree(t *testing.T) {
	for _, tc := range []raftkv.TLSConfig{
		{CertFile: "c.pem"},
		{CertFile: "c.pem", KeyFile: "k.pem"},
		{ClientCAFile: "ca.pem"},
	} {
		n, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: t.TempDir(), TLS: &tc})
		if err == nil {
			n.Close()
			t.Errorf("%+v: opened", tc)
		} else if !strings.Contains(err.Error(), "CertFile, KeyFile and CAFile") {
			t.Errorf("%+v: %v", tc, err)
		}
	}
	// An empty TLSConfig is plaintext.
	n, err := raftkv.Open(raftkv.Config{ID: "n1", DataDir: t.TempDir(), TLS: &raftkv.TLSConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Scheme() != "http" {
		t.Fatalf("scheme %s", n.Scheme())
	}
}
