package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

const cliRootToken = "cli-test-root-token-0123456789"

// cliResult is one run of the CLI: its stdout, stderr, error and exit code.
type cliResult struct {
	stdout, stderr string
	err            error
	code           int
}

// runCLI runs the command line args as main does.
func runCLI(args ...string) cliResult {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	code := exitCode(err, &stderr)
	return cliResult{stdout.String(), stderr.String(), err, code}
}

// The ACL commands and --token on a real three-node cluster with ACLs, as
// an operator types them: the root token creates a token that may only
// read app/; with it (--token) a read works and a write is refused with a
// clear message and exit 1; acl token ls shows it; once revoked it fails
// on every node.
func TestCLIACLOnCluster(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{Configure: func(_ int, cfg *raftkv.Config) {
		cfg.ACL = &raftkv.ACLConfig{BootstrapToken: cliRootToken}
	}})
	addr := "--addr=" + c.URL(c.Follower()) + "," + c.URL(c.Leader())
	ok := func(args ...string) cliResult {
		t.Helper()
		r := runCLI(args...)
		if r.err != nil {
			t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), r.err, r.stderr)
		}
		return r
	}

	// The client flags may come before the command.
	ok("--token", cliRootToken, addr, "put", "app/greeting", "hello")
	ok("put", addr, "--token="+cliRootToken, "other/secret", "s")

	// No token: 401, with a hint; a wrong one: 401 too.
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"get", addr, "app/greeting"}, []string{"unauthenticated", "needs a token", "--token or $RAFTKV_TOKEN"}},
		{[]string{"get", addr, "--token", "not-a-token-of-this-cluster", "app/greeting"}, []string{"unauthenticated", "not known to this cluster"}},
	} {
		r := runCLI(tt.args...)
		if r.code != 1 || !errors.Is(r.err, kv.ErrUnauthenticated) {
			t.Errorf("raftkv %s: exit %d, %v; want exit 1, unauthenticated", strings.Join(tt.args, " "), r.code, r.err)
		}
		for _, w := range tt.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("raftkv %s: stderr %q lacks %q", strings.Join(tt.args, " "), r.stderr, w)
			}
		}
	}

	// The root token from $RAFTKV_TOKEN creates a read-only token: the
	// secret alone on stdout, the id and rules on stderr.
	t.Setenv("RAFTKV_TOKEN", cliRootToken+"\n") // as $(cat file) or a file's content would give it
	created := ok("acl", "token", "create", addr, "--read", "app/", "--description", "app reader")
	secret := strings.TrimSpace(created.stdout)
	if err := kv.ValidateSecret(secret); err != nil || strings.Count(created.stdout, "\n") != 1 {
		t.Fatalf("acl token create printed %q: want the secret alone (%v)", created.stdout, err)
	}
	var id uint64
	if _, err := fmt.Sscanf(created.stderr, "token %d created (read \"app/\")", &id); err != nil || !strings.Contains(created.stderr, "only this once") {
		t.Fatalf("acl token create: stderr %q (%v)", created.stderr, err)
	}
	// --json: the whole token, secret included.
	var admin kv.ACLToken
	if err := json.Unmarshal([]byte(ok("acl", "token", "create", addr, "--admin", "--write", "", "--json").stdout), &admin); err != nil ||
		admin.ID == 0 || admin.Secret == "" || !admin.Rules.Admin || !slices.Equal(admin.Rules.Write, []string{""}) {
		t.Fatalf("acl token create --json: %+v, %v", admin, err)
	}
	t.Setenv("RAFTKV_TOKEN", "")

	// The read-only token reads app/, nothing else, and writes nothing.
	if got := ok("get", addr, "--token", secret, "app/greeting").stdout; got != "hello" {
		t.Errorf("get with the read-only token: %q", got)
	}
	if got := ok("ls", addr, "--token", secret, "app/").stdout; got != "app/greeting\thello\n" {
		t.Errorf("ls app/ with the read-only token: %q", got)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"put", "app/greeting", "bye"}, `permission denied: the token lacks write on "app/greeting"`},
		{[]string{"del", "--prefix", "app/"}, `permission denied: the token lacks write on the prefix "app/"`},
		{[]string{"get", "other/secret"}, `permission denied: the token lacks read on "other/secret"`},
		{[]string{"ls"}, `permission denied: the token lacks read on the prefix ""`},
		{[]string{"acl", "token", "ls"}, "permission denied: the token lacks admin"},
		{[]string{"acl", "token", "create", "--read", "app/"}, "permission denied: the token lacks admin"},
	} {
		args := append(append([]string{}, tt.args...), addr, "--token", secret)
		r := runCLI(args...)
		if r.code != 1 || !errors.Is(r.err, kv.ErrPermissionDenied) || r.stderr != "raftkv: "+tt.want+"\n" {
			t.Errorf("raftkv %s: exit %d, stderr %q; want exit 1, %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
	}
	if got := ok("get", addr, "--token", cliRootToken, "app/greeting").stdout; got != "hello" {
		t.Errorf("after the refused writes: %q, want hello", got)
	}

	// ls: a table with both tokens and the root; --json one object a line.
	ls := ok("acl", "token", "ls", addr, "--token", cliRootToken).stdout
	lines := strings.Split(strings.TrimSpace(ls), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "CREATE INDEX") {
		t.Fatalf("acl token ls:\n%s", ls)
	}
	var row string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); f[0] == strconv.FormatUint(id, 10) {
			row = l
		}
	}
	if !strings.Contains(row, "app reader") || !strings.Contains(row, `read "app/"`) || strings.Contains(ls, secret) {
		t.Errorf("acl token ls: row of token %d is %q in\n%s", id, row, ls)
	}
	var listed []kv.ACLToken
	for l := range strings.Lines(ok("acl", "token", "ls", addr, "--token", cliRootToken, "--json").stdout) {
		var tok kv.ACLToken
		if err := json.Unmarshal([]byte(l), &tok); err != nil {
			t.Fatalf("acl token ls --json line %q: %v", l, err)
		}
		listed = append(listed, tok)
	}
	if len(listed) != 3 || !slices.ContainsFunc(listed, func(tok kv.ACLToken) bool {
		return tok.ID == id && tok.Description == "app reader" && slices.Equal(tok.Rules.Read, []string{"app/"}) && tok.Secret == ""
	}) {
		t.Errorf("acl token ls --json: %+v", listed)
	}

	// Revoke (with the admin token made above); then the token fails on
	// every node, and a second revoke says it is gone.
	var rev struct{ ID, Index uint64 }
	if err := json.Unmarshal([]byte(ok("acl", "token", "revoke", addr, "--token", admin.Secret, strconv.FormatUint(id, 10)).stdout), &rev); err != nil || rev.ID != id || rev.Index == 0 {
		t.Fatalf("acl token revoke printed %+v, %v", rev, err)
	}
	for i := range c.Size() {
		if err := testkit.Eventually(5*time.Second, func() error {
			r := runCLI("get", "--addr", c.URL(i), "--token", secret, "app/greeting")
			if r.code != 1 || !errors.Is(r.err, kv.ErrUnauthenticated) {
				return fmt.Errorf("node %d: get with the revoked token: exit %d, %v", i, r.code, r.err)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	if r := runCLI("acl", "token", "revoke", addr, "--token", cliRootToken, strconv.FormatUint(id, 10)); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("second revoke: exit %d, stderr %q", r.code, r.stderr)
	}
}

// raftkv acl bootstrap-token makes a valid secret, new each time: printed,
// or written to a new file of mode 0600 that it never replaces.
func TestACLBootstrapToken(t *testing.T) {
	a, b := runCLI("acl", "bootstrap-token"), runCLI("acl", "bootstrap-token")
	for _, r := range []cliResult{a, b} {
		if r.err != nil || kv.ValidateSecret(strings.TrimSpace(r.stdout)) != nil || !strings.HasSuffix(r.stdout, "\n") {
			t.Fatalf("acl bootstrap-token: %q, %v", r.stdout, r.err)
		}
	}
	if a.stdout == b.stdout {
		t.Errorf("acl bootstrap-token printed %q twice", a.stdout)
	}

	file := filepath.Join(t.TempDir(), "root-token")
	if r := runCLI("acl", "bootstrap-token", "--out", file); r.err != nil || r.stdout != "" {
		t.Fatalf("acl bootstrap-token --out: stdout %q, %v", r.stdout, r.err)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the token file: %v, %v; want mode 0600", st, err)
	}
	first, err := os.ReadFile(file)
	if err != nil || kv.ValidateSecret(strings.TrimSpace(string(first))) != nil {
		t.Fatalf("the token file holds %q (%v)", first, err)
	}
	r := runCLI("acl", "bootstrap-token", "--out", file)
	if again, _ := os.ReadFile(file); r.code != 1 || !strings.Contains(r.stderr, "exists") || !bytes.Equal(again, first) {
		t.Errorf("a second --out to the same file: exit %d, %q; the file changed: %v", r.code, r.stderr, !bytes.Equal(again, first))
	}
}

// The ACL commands' usage errors, and the client flags before a command.
func TestACLCommandLine(t *testing.T) {
	for _, args := range [][]string{
		{"acl"},
		{"acl", "bogus"},
		{"acl", "token"},
		{"acl", "token", "bogus"},
		{"acl", "token", "revoke"},
		{"acl", "token", "revoke", "0"},
		{"acl", "token", "revoke", "abc"},
		{"acl", "token", "revoke", "1", "2"},
		{"acl", "token", "ls", "extra"},
		{"acl", "token", "create", "extra"},
		{"acl", "token", "create", "--read", "\xff"},
		{"acl", "token", "create", "--description", strings.Repeat("d", kv.MaxACLDescription+1)},
		{"acl", "bootstrap-token", "extra"},
		{"get", "--token", "has space", "k"},
		{"--token"},
		{"--token", "t"},
		{"--token", "t", "--addr"},
	} {
		r := runCLI(args...)
		var ue *usageError
		if !errors.As(r.err, &ue) || r.code != 2 {
			t.Errorf("raftkv %q: exit %d, %v; want a usage error", args, r.code, r.err)
		}
	}
	for _, tt := range []struct{ in, want []string }{
		{[]string{"get", "k"}, []string{"get", "k"}},
		{[]string{"--token", "t", "get", "k"}, []string{"get", "--token", "t", "k"}},
		{[]string{"--addr=a", "-token", "t", "lease", "ls"}, []string{"lease", "--addr=a", "-token", "t", "ls"}},
		{[]string{"--no-such", "get"}, []string{"--no-such", "get"}},
		{[]string{"-h"}, []string{"-h"}},
	} {
		got, err := liftClientFlags(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("liftClientFlags(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	// Lifted through the subcommand dispatchers too: the subcommand is
	// found (and refused), not taken for a flag.
	for _, args := range [][]string{
		{"--addr", "http://127.0.0.1:1", "lease", "bogus"},
		{"--token", "t", "snapshot", "bogus"},
		{"--token", "t", "acl", "--addr", "a", "token", "bogus"},
	} {
		if r := runCLI(args...); r.code != 2 || !strings.Contains(r.stderr, `unknown subcommand "bogus"`) {
			t.Errorf("raftkv %q: exit %d, %q; want the subcommand refused", args, r.code, r.stderr)
		}
	}
	// Help names the acl commands, and does not print $RAFTKV_TOKEN.
	t.Setenv("RAFTKV_TOKEN", "secret-in-the-environment")
	for _, args := range [][]string{{"acl", "help"}, {"get", "-h"}, {"acl", "token", "create", "-h"}} {
		r := runCLI(args...)
		out := r.stdout + r.stderr
		if r.err != nil || strings.Contains(out, "secret-in-the-environment") || !strings.Contains(out, "token") {
			t.Errorf("raftkv %q: %v; printed\n%s", args, r.err, out)
		}
	}
	var stdout bytes.Buffer
	_ = run(context.Background(), []string{"help"}, nil, &stdout, io.Discard)
	if !strings.Contains(stdout.String(), "raftkv acl") || !strings.Contains(stdout.String(), "--token") {
		t.Errorf("help lacks raftkv acl or --token:\n%s", stdout.String())
	}
}
