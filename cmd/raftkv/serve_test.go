package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlagsFromEnv(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "")
	expect := fs.Int("bootstrap-expect", 0, "")
	httpAddr := fs.String("http-addr", "127.0.0.1:8001", "")
	t.Setenv("RAFTKV_DATA_DIR", "/from/env")
	t.Setenv("RAFTKV_BOOTSTRAP_EXPECT", "3")
	t.Setenv("RAFTKV_HTTP_ADDR", "127.0.0.1:9999")
	if err := fs.Parse([]string{"--http-addr", "127.0.0.1:7777"}); err != nil {
		t.Fatal(err)
	}
	if err := flagsFromEnv(fs); err != nil {
		t.Fatal(err)
	}
	// The environment fills what the command line left out; the command line wins.
	if *dataDir != "/from/env" || *expect != 3 || *httpAddr != "127.0.0.1:7777" {
		t.Fatalf("data-dir %q, bootstrap-expect %d, http-addr %q", *dataDir, *expect, *httpAddr)
	}
	t.Setenv("RAFTKV_BOOTSTRAP_EXPECT", "three")
	fs2 := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs2.Int("bootstrap-expect", 0, "")
	if err := flagsFromEnv(fs2); err == nil || !strings.Contains(err.Error(), "RAFTKV_BOOTSTRAP_EXPECT") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve"},               // no --id / --data-dir
		{"serve", "--id", "n1"}, // no --data-dir
		{"serve", "--id", "n1", "--data-dir", t.TempDir(), "--raft-peer-addrs", "n2"},
		{"serve", "--id", "n1", "--data-dir", t.TempDir(), "--api-peer-addrs", "=127.0.0.1:1"},
		{"serve", "--id", "n1", "--data-dir", t.TempDir(), "--log-format", "xml"},
		{"serve", "--no-such-flag"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
		if exitCode(err, &bytes.Buffer{}) != 2 {
			t.Errorf("raftkv %v: %v, want a usage error", args, err)
		}
	}
}

// --raft-log-store takes boltdb or wal; anything else, on the command line
// or from RAFTKV_RAFT_LOG_STORE, is a usage error that says what it takes,
// before anything is written.
func TestServeRaftLogStoreFlag(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  string
	}{
		{"unknown", []string{"--raft-log-store", "rocksdb"}, ""},
		{"empty", []string{"--raft-log-store="}, ""},
		{"case matters", []string{"--raft-log-store", "WAL"}, ""},
		{"from the environment", nil, "bolt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("RAFTKV_RAFT_LOG_STORE", tt.env)
			}
			dir := filepath.Join(t.TempDir(), "n1")
			args := append([]string{"serve", "--id", "n1", "--data-dir", dir}, tt.args...)
			var out, errOut bytes.Buffer
			err := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
			if code := exitCode(err, &bytes.Buffer{}); code != 2 || !strings.Contains(err.Error(), "--raft-log-store must be boltdb or wal") {
				t.Fatalf("raftkv %v: exit %d, %v; want a usage error about --raft-log-store", args, code, err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("the refused serve created %s (%v)", dir, err)
			}
		})
	}
}
