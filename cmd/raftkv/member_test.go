package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/testkit"
)

// raftkv member on a real three-node cluster, as an operator types it:
// add members whose nodes never start (a non-voter, then a voter), promote
// one by hand, remove with the safety rules: an even count warns, a removal
// that leaves no live quorum is refused (exit 1) and names --force.
func TestCLIMember(t *testing.T) {
	c := testkit.NewCluster(t, 3, testkit.Options{})
	l := c.Leader()
	addr := "--addr=" + c.URL(c.Follower())
	type result struct {
		out, errOut string
		code        int
	}
	member := func(args ...string) result {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"member", args[0], addr}, args[1:]...), nil, &out, &errOut)
		code := exitCode(err, &errOut) // prints the error, as main does
		return result{out.String(), errOut.String(), code}
	}
	ok := func(args ...string) result {
		t.Helper()
		r := member(args...)
		if r.code != 0 {
			t.Fatalf("raftkv member %s: exit %d: %s", strings.Join(args, " "), r.code, r.errOut)
		}
		return r
	}
	nowhere := func() string { // a raft address no node listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	row := func(ls, id string) string {
		for line := range strings.Lines(ls) {
			if strings.HasPrefix(line, id+" ") {
				return line
			}
		}
		t.Fatalf("member ls has no row for %s:\n%s", id, ls)
		return ""
	}

	if ls := ok("ls").out; strings.Count(ls, " voter ") != 3 || !strings.Contains(ls, "SUFFRAGE") {
		t.Fatalf("member ls:\n%s", ls)
	}
	if r := ok("add", "n4", nowhere(), "--api-addr", nowhere()); !strings.Contains(r.out, "non-voter") {
		t.Fatalf("member add: %q", r.out)
	}
	if line := row(ok("ls").out, "n4"); !strings.Contains(line, "nonvoter") {
		t.Fatalf("n4 after add: %q", line)
	}
	// n4 never catches up (no node runs there): promoted by hand, 4 voters.
	if r := ok("promote", "n4"); !strings.Contains(r.out, "4 voters") || !strings.Contains(r.errOut, "warning: 4 voters") {
		t.Fatalf("member promote: %q, stderr %q", r.out, r.errOut)
	}
	if line := row(ok("ls").out, "n4"); !strings.Contains(line, " voter ") {
		t.Fatalf("n4 after promote: %q", line)
	}

	// Three voters left (two founders live, n4 dead): a quorum of two lives.
	var followers []string
	for i := range 3 {
		if i != l {
			followers = append(followers, c.ID(i))
		}
	}
	if r := ok("remove", followers[0]); !strings.Contains(r.out, "3 voters left") || r.errOut != "" {
		t.Fatalf("member remove %s: %q, stderr %q", followers[0], r.out, r.errOut)
	}
	c.Stop(map[string]int{"n1": 0, "n2": 1, "n3": 2}[followers[0]])
	addr = "--addr=" + c.URL(l)
	// Removing the other founder would leave the leader and dead n4.
	r := member("remove", followers[1])
	if r.code != 1 || !strings.Contains(r.errOut, "would lose quorum") || !strings.Contains(r.errOut, "--force") {
		t.Fatalf("member remove %s: exit %d, stderr %q; want a refusal naming --force", followers[1], r.code, r.errOut)
	}
	if r := ok("remove", "n4"); !strings.Contains(r.out, "2 voters left") || !strings.Contains(r.errOut, "warning: 2 voters") {
		t.Fatalf("member remove n4: %q, stderr %q", r.out, r.errOut)
	}
	// --voter: a voter at once.
	if r := ok("add", "--voter", "n5", nowhere()); !strings.Contains(r.out, "as a voter") {
		t.Fatalf("member add --voter: %q", r.out)
	}
	if line := row(ok("ls").out, "n5"); !strings.Contains(line, " voter ") {
		t.Fatalf("n5 after add --voter: %q", line)
	}
	ok("remove", "n5")
	if r := member("promote", "n9"); r.code != 1 || !strings.Contains(r.errOut, "not a member") {
		t.Fatalf("member promote n9: exit %d, %q", r.code, r.errOut)
	}
	if r := member("add", "n6"); r.code != 2 {
		t.Fatalf("member add without RAFT_ADDR: exit %d, want 2", r.code)
	}
}
