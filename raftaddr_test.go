package raftkv_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// openEmbedded opens the nodes of a cluster the way a new user embeds
// them: HTTP listeners, Join, BootstrapExpect, and no RaftAddr.
func openEmbedded(t *testing.T, dirs, addrs []string) []*raftkv.Node {
	t.Helper()
	nodes := make([]*raftkv.Node, len(dirs))
	for i := range dirs {
		var ln net.Listener
		err := testkit.Eventually(5*time.Second, func() error {
			var err error
			ln, err = net.Listen("tcp", addrs[i])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var join []string
		for j, a := range addrs {
			if j != i {
				join = append(join, a)
			}
		}
		n, err := raftkv.Open(raftkv.Config{
			ID:              fmt.Sprintf("n%d", i+1),
			DataDir:         dirs[i],
			HTTPListener:    ln,
			Join:            join,
			BootstrapExpect: len(dirs),
			Tuning:          testkit.FastTuning,
		})
		if err != nil {
			t.Fatalf("open n%d: %v", i+1, err)
		}
		nodes[i] = n
		t.Cleanup(func() { _ = n.Close() })
	}
	return nodes
}

// A cluster of embedded nodes with the default RaftAddr survives a restart
// of every node: each binds the raft port it had, which its peers know it by.
func TestEmbeddedDefaultRaftAddrSurvivesWholeClusterRestart(t *testing.T) {
	var dirs, addrs []string
	for i := range 3 {
		dirs = append(dirs, filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i+1)))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	nodes := openEmbedded(t, dirs, addrs)
	for _, n := range nodes {
		if err := n.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := make([]string, len(nodes))
	for i, n := range nodes {
		before[i] = n.RaftAddr()
	}
	if _, err := nodes[1].Put(ctx, []byte("kept"), []byte("yes")); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}

	nodes = openEmbedded(t, dirs, addrs)
	for i, n := range nodes {
		if n.RaftAddr() != before[i] {
			t.Errorf("n%d raft address %s after restart, was %s", i+1, n.RaftAddr(), before[i])
		}
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
	rec, err := nodes[2].Get(ctx, []byte("kept"), kv.ReadOptions{})
	if err != nil || string(rec.Value) != "yes" {
		t.Fatalf("get after restart: %q %v", rec.Value, err)
	}
}

// A node whose remembered raft port was taken meanwhile refuses to start
// on another one, and says why.
func TestRememberedRaftPortTaken(t *testing.T) {
	dir := t.TempDir()
	n, err := raftkv.Open(raftkv.Config{ID: "solo", DataDir: dir, Tuning: testkit.FastTuning})
	if err != nil {
		t.Fatal(err)
	}
	addr := n.RaftAddr()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	var squatter net.Listener
	err = testkit.Eventually(5*time.Second, func() error {
		var err error
		squatter, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	n, err = raftkv.Open(raftkv.Config{ID: "solo", DataDir: dir, Tuning: testkit.FastTuning})
	if err == nil {
		_ = n.Close()
		t.Fatal("Open succeeded on another port")
	}
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("error %v: want EADDRINUSE naming %s", err, addr)
	}
	squatter.Close()
	n, err = raftkv.Open(raftkv.Config{ID: "solo", DataDir: dir, Tuning: testkit.FastTuning})
	if err != nil {
		t.Fatalf("open once the port is free: %v", err)
	}
	defer n.Close()
	if n.RaftAddr() != addr {
		t.Fatalf("raft address %s, want the remembered %s", n.RaftAddr(), addr)
	}
}
