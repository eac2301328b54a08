package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// The ACL flags of raftkv serve that are refused at start (exit 2),
// naming the flag and never a token file's content.
func TestServeACLFlagErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "a-good-root-token-0123456789\n")
	short := write("short", "tooshort\n")
	spaced := write("spaced", "a token with spaces in it\n")
	empty := write("empty", " \n")
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--acl-bootstrap-token-file", good}, "--acl-bootstrap-token-file without --acl"},
		{nil, []string{"--acl-metrics", "--acl-token-file", good}, "--acl-token-file, --acl-metrics without --acl"},
		{nil, []string{"--acl-bootstrap-reset"}, "--acl-bootstrap-reset without --acl"},
		{map[string]string{"RAFTKV_ACL_METRICS": "true"}, nil, "--acl-metrics without --acl"},
		{nil, []string{"--acl", "--acl-bootstrap-token-file", missing}, "--acl-bootstrap-token-file: open " + missing},
		{nil, []string{"--acl", "--acl-bootstrap-token-file", short}, "a token must be 16 to 512 bytes, this one is 8"},
		{nil, []string{"--acl", "--acl-bootstrap-token-file", empty}, "this one is 0"},
		{nil, []string{"--acl", "--acl-bootstrap-token-file", spaced}, "printable ASCII without spaces"},
		{nil, []string{"--acl", "--acl-token-file", short}, "--acl-token-file " + short},
		{map[string]string{"RAFTKV_ACL": "true", "RAFTKV_ACL_TOKEN_FILE": missing}, nil, "--acl-token-file: open"},
		{nil, []string{"--acl", "--acl-bootstrap-reset"}, "--acl-bootstrap-reset needs --acl-bootstrap-token-file"},
		{map[string]string{"RAFTKV_ACL": "maybe"}, nil, "RAFTKV_ACL="},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"serve", "--id", "n1", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}, tt.args...)
			r := runCLI(args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("raftkv %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(args, " "), r.code, r.stderr, tt.want)
			}
			for _, secret := range []string{"tooshort", "a token with spaces", "a-good-root-token"} {
				if strings.Contains(r.stderr, secret) {
					t.Errorf("stderr %q shows a token file's content", r.stderr)
				}
			}
		})
	}
}

// servedNode is a raftkv serve run by a test.
type servedNode struct {
	http   string // its API address, from its "node started" log line
	stderr *syncBuffer
	stop   func() error // Ctrl-C; returns run's error
}

// serveNode runs raftkv serve with args (plus an id, a data dir and
// ephemeral ports, and JSON logs) until the test ends, and waits for it to
// log its API address.
func serveNode(t *testing.T, id string, args ...string) *servedNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &servedNode{stderr: &syncBuffer{}}
	done := make(chan error, 1)
	args = append([]string{"serve", "--id", id, "--data-dir", filepath.Join(t.TempDir(), id),
		"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	go func() { done <- run(ctx, args, nil, &syncBuffer{}, n.stderr) }()
	var stopped bool
	var runErr error
	n.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() { _ = n.stop() })
	err := testkit.Eventually(30*time.Second, func() error {
		select {
		case err := <-done:
			stopped, runErr = true, err
			return fmt.Errorf("serve ended: %v", err)
		default:
		}
		sc := bufio.NewScanner(strings.NewReader(n.stderr.String()))
		for sc.Scan() {
			var line struct{ Msg, HTTP string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "node started" && line.HTTP != "" {
				n.http = line.HTTP
				return nil
			}
		}
		return errors.New("no \"node started\" line yet")
	})
	if err != nil {
		t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), err, n.stderr.String())
	}
	return n
}

// A node started through serve's flags with --acl and a bootstrap token
// file: the file's secret (surrounding whitespace trimmed) is the root
// token, requests without it are refused, /metrics too with
// --acl-metrics, and the secret appears in no log line (a file others may
// read is warned of). A second node
// joins it with --acl-token-file (an admin token made with the CLI),
// given through RAFTKV_* variables, and honours the root token.
func TestServeACLFlags(t *testing.T) {
	const root = "serve-flag-test-root-token-0123"
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root-token")
	if err := os.WriteFile(rootFile, []byte("  "+root+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(rootFile, 0o640); err != nil { // group-readable: a warning
		t.Fatal(err)
	}
	n1 := serveNode(t, "n1", "--acl", "--acl-bootstrap-token-file", rootFile, "--acl-metrics")
	if !strings.Contains(n1.stderr.String(), "readable by other users") {
		t.Errorf("no warning for a group-readable token file:\n%s", n1.stderr.String())
	}
	url1 := "http://" + n1.http
	status := func(url, token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	// The root token works once the node leads (a single node elects itself).
	if err := testkit.Eventually(30*time.Second, func() error {
		r := runCLI("put", "--addr", url1, "--token", root, "app/x", "1")
		if r.err != nil {
			return r.err
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, token string
		want        int
	}{
		{"/v1/kv/app/x", "", http.StatusUnauthorized},
		{"/v1/kv/app/x", root + "x", http.StatusUnauthorized},
		{"/v1/kv/app/x", root, http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized}, // --acl-metrics
		{"/metrics", root, http.StatusOK},
	} {
		if got := status(url1+tt.path, tt.token); got != tt.want {
			t.Errorf("GET %s with token %q: %d, want %d", tt.path, tt.token, got, tt.want)
		}
	}
	// raftkv health, the probe of a node with --acl-metrics, needs the token.
	if err := testkit.Eventually(30*time.Second, func() error {
		return runCLI("health", "--addr", url1, "--token", root).err
	}); err != nil {
		t.Errorf("health with the token: %v", err)
	}
	if r := runCLI("health", "--addr", url1); r.err == nil || !strings.Contains(r.err.Error(), "unauthenticated") {
		t.Errorf("health without a token on an --acl-metrics node: %q, %v", r.stdout, r.err)
	}

	// n2 joins with an admin token of its own, its flags from the
	// environment.
	admin := runCLI("acl", "token", "create", "--addr", url1, "--token", root, "--admin", "--description", "joins")
	if admin.err != nil {
		t.Fatal(admin.err)
	}
	joinFile := filepath.Join(dir, "join-token")
	if err := os.WriteFile(joinFile, []byte(admin.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RAFTKV_ACL", "true")
	t.Setenv("RAFTKV_ACL_TOKEN_FILE", joinFile)
	n2 := serveNode(t, "n2", "--join", n1.http)
	url2 := "http://" + n2.http
	if err := testkit.Eventually(30*time.Second, func() error {
		r := runCLI("get", "--addr", url2, "--token", root, "app/x")
		if r.err != nil || r.stdout != "1" {
			return fmt.Errorf("get app/x on n2: %q, %v", r.stdout, r.err)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, n2.stderr.String())
	}
	if r := runCLI("get", "--addr", url2, "app/x"); !errors.Is(r.err, kv.ErrUnauthenticated) {
		t.Errorf("get on n2 without a token: %v, want unauthenticated", r.err)
	}
	if r := runCLI("cluster", "--addr", url2, "--token", root); r.err != nil || strings.Count(r.stdout, "voter") != 2 {
		t.Errorf("cluster: %q, %v; want two voters", r.stdout, r.err)
	}

	for i, n := range []*servedNode{n2, n1} {
		if err := n.stop(); err != nil {
			t.Errorf("n%d stopped with %v", 2-i, err)
		}
		for _, secret := range []string{root, strings.TrimSpace(admin.stdout)} {
			if strings.Contains(n.stderr.String(), secret) {
				t.Errorf("n%d logged a token's secret:\n%s", 2-i, n.stderr.String())
			}
		}
	}
}
