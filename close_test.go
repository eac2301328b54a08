package raftkv_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
)

// A connection that never sends a request (a peer's pooled client parks
// one when a request is cancelled while it dials) must not hold up Close:
// http.Server.Shutdown alone waits five seconds for it and then fails.
func TestCloseWithConnectionThatSendsNothing(t *testing.T) {
	n, err := raftkv.Open(raftkv.Config{ID: "solo", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Tuning: testkit.FastTuning})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := n.Close(); err != nil {
		t.Fatalf("close with a silent connection open: %v", err)
	}
	// The node closed it: a read ends at once instead of blocking.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent connection is still open")
	}
}
