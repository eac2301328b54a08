package raftnode

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

// An accepted raft connection whose peer sends nothing is closed once the
// handshake bound passes, rather than holding raft's goroutine for it;
// a member that does the handshake gets through.
func TestTLSStreamHandshakeBound(t *testing.T) {
	ca, err := tlsutil.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueMember("n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r, err := tlsutil.NewReloader(write("n1.pem", certPEM), write("n1-key.pem", keyPEM), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	pool, err := tlsutil.LoadCAPool(write("ca.pem", ca.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	s, err := newTLSStream("127.0.0.1:0", nil, &TLS{Server: tlsutil.ServerConfig(r, pool, true), Client: tlsutil.ClientConfig(r, pool)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.handshake = 200 * time.Millisecond

	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	// A silent peer: the server side's first read fails within the bound.
	silent, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Close() }()
	srv := <-accepted
	start := time.Now()
	_, err = srv.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("read on a silent peer's connection: %v after %v", err, time.Since(start))
	}
	// A member gets through (the server side reads at once, as raft's
	// connection goroutine does).
	got := make(chan error, 1)
	go func() {
		srv := <-accepted
		b := make([]byte, 1)
		_, err := srv.Read(b)
		if err == nil && b[0] != 7 {
			err = errors.New("wrong byte")
		}
		got <- err
	}()
	c, err := s.Dial(raft.ServerAddress(s.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Write([]byte{7}); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("member connection: %v", err)
	}
}
