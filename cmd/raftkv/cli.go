package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

const usage = `raftkv is a replicated key-value store built on raft.

Usage:
  raftkv serve [flags]              run a node
  raftkv get [flags] KEY            print the value of KEY
  raftkv put [flags] KEY [VALUE|-]  write KEY (the value from stdin without VALUE or with -)
  raftkv del [flags] KEY            delete KEY, or with --prefix every key under it
  raftkv ls [flags] [PREFIX]        list keys and values
  raftkv cluster [flags]            show the members and the leader
  raftkv member SUBCOMMAND          ls, add, remove, promote: the members (raftkv member help)
  raftkv txn [flags] [FILE]         apply a transaction read as JSON from FILE or stdin
  raftkv watch [flags] KEY          print the changes to KEY (--prefix: under KEY) until Ctrl-C
  raftkv lease SUBCOMMAND           grant, keepalive, revoke, ls, info: leases (raftkv lease help)
  raftkv lock [flags] NAME [--] COMMAND [ARG...]
                                    run COMMAND while holding lock NAME ($RAFTKV_LOCK_TOKEN)
  raftkv elect [flags] NAME VALUE   campaign in election NAME, lead until Ctrl-C, then resign
  raftkv elect --observe NAME       print the leader of election NAME and each change
  raftkv snapshot save FILE         save a consistent copy of the store to FILE (raftkv snapshot help)
  raftkv snapshot inspect FILE      verify a saved snapshot; print its index, keys, bytes, digest
  raftkv recover --id ID --data-dir DIR
                                    after a quorum is lost for good: make a stopped survivor a
                                    one-member cluster with all its data (--dry-run: only look)
  raftkv health [flags]             exit 0 if one node's /readyz (--live: /livez) answers 200
  raftkv acl SUBCOMMAND             token create, token ls, token revoke, bootstrap-token:
                                    access control (raftkv acl help)
  raftkv bench [flags]              measure throughput and latency under load
  raftkv cert --dir DIR [flags]     write a development CA and node and client certificates
  raftkv version                    print the version
  raftkv help [COMMAND]             show this help, or the flags of COMMAND

The client commands take --addr (comma-separated endpoints; default
$RAFTKV_ADDR, else http://127.0.0.1:8001) and --timeout (default 10s; none
for watch, lease keepalive, lock and elect; 30m for snapshot save; 2s for
health, which takes one endpoint). For a cluster with TLS
(https:// endpoints) they take --cacert FILE (the CA that signed the nodes'
certificates), and --cert FILE --key FILE (a client certificate, when the
cluster requires one); default $RAFTKV_CACERT, $RAFTKV_CERT, $RAFTKV_KEY.
With any of them the default address is https://127.0.0.1:8001.
For a cluster with ACLs they take --token SECRET (default $RAFTKV_TOKEN;
prefer the variable: a command line is visible to other users).
Flags may follow the arguments; put -- before a key that starts with "-".
These client flags may also come before the command: raftkv --token T get KEY.
`

const defaultAddr = "http://127.0.0.1:8001"

// run executes the command line args (without the program name).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{err: errors.New("no command given"), shown: true}
	}
	args, err := liftClientFlags(args)
	if err != nil {
		return err
	}
	switch cmd, args := args[0], args[1:]; cmd {
	case "serve":
		err = runServe(ctx, args, stdout, stderr)
	case "get":
		err = runGet(ctx, args, stdout, stderr)
	case "put":
		err = runPut(ctx, args, stdin, stdout, stderr)
	case "del":
		err = runDel(ctx, args, stdout, stderr)
	case "ls":
		err = runList(ctx, args, stdout, stderr)
	case "cluster":
		err = runCluster(ctx, args, stdout, stderr)
	case "member":
		err = runMember(ctx, args, stdout, stderr)
	case "txn":
		err = runTxn(ctx, args, stdin, stdout, stderr)
	case "watch":
		err = runWatch(ctx, args, stdout, stderr)
	case "lease":
		err = runLease(ctx, args, stdout, stderr)
	case "lock":
		err = runLock(ctx, args, stdin, stdout, stderr)
	case "elect":
		err = runElect(ctx, args, stdout, stderr)
	case "snapshot":
		err = runSnapshot(ctx, args, stdout, stderr)
	case "recover":
		err = runRecover(ctx, args, stdout, stderr)
	case "health":
		err = runHealth(ctx, args, stdout, stderr)
	case "acl":
		err = runACL(ctx, args, stdout, stderr)
	case "bench":
		err = runBench(ctx, args, stdout, stderr)
	case "cert":
		err = runCert(args, stdout, stderr)
	case "version":
		err = runVersion(args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 0 && args[0] != "help" {
			return run(ctx, []string{args[0], "-h"}, stdin, stdout, stderr)
		}
		_, err = fmt.Fprint(stdout, usage)
	default:
		err = usagef("unknown command %q (run \"raftkv help\")", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h: the usage was printed
	}
	return err
}

// liftClientFlags moves the client flags that precede a command's name
// (raftkv --token T get KEY, raftkv lease --addr A ls) after it, where the
// command's flag set parses them. Other leading words are left alone: an
// unknown flag is then reported as an unknown command.
func liftClientFlags(args []string) ([]string, error) {
	n := 0
	for n < len(args) {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[n], "-"), "=")
		if !strings.HasPrefix(args[n], "-") || !isClientFlag(name) {
			break
		}
		if !hasValue {
			n++ // the flag's value is the next word
		}
		n++
	}
	switch {
	case n == 0:
		return args, nil
	case n > len(args):
		return nil, usagef("flag %s needs a value", args[len(args)-1])
	case n == len(args):
		return nil, usagef("no command after the flags %s (run \"raftkv help\")", strings.Join(args, " "))
	}
	out := make([]string, 0, len(args))
	out = append(out, args[n])
	out = append(out, args[:n]...)
	return append(out, args[n+1:]...), nil
}

// isClientFlag reports whether name is a flag every client command takes
// (clientFlagsTimeout), all of which take a value.
func isClientFlag(name string) bool {
	switch name {
	case "addr", "timeout", "token", "cacert", "cert", "key":
		return true
	}
	return false
}

// usageError is a command line the user must fix; main exits 2 for it.
type usageError struct {
	err   error
	shown bool // already printed, with the usage, by the flag package
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// command is one subcommand's flag set, with the client flags most share.
type command struct {
	fs       *flag.FlagSet
	synopsis string
	addr     string
	timeout  time.Duration
	tls      tlsFlags
	token    string
}

func newCommand(name, synopsis, summary string, stderr io.Writer) *command {
	c := &command{fs: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: "raftkv " + name + " [flags] " + synopsis}
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\n%s\n\nFlags:\n", c.synopsis, summary)
		c.fs.PrintDefaults()
	}
	return c
}

// clientFlags adds --addr, --timeout (default 10s) and the TLS flags.
func (c *command) clientFlags() *command { return c.clientFlagsTimeout(10 * time.Second) }

// clientFlagsTimeout adds --addr, --timeout, whose default is timeout, the
// TLS flags (--cacert, --cert, --key) and --token.
func (c *command) clientFlagsTimeout(timeout time.Duration) *command {
	addr := os.Getenv("RAFTKV_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	c.fs.StringVar(&c.addr, "addr", addr, "comma-separated API endpoints of cluster nodes ($RAFTKV_ADDR)")
	c.fs.DurationVar(&c.timeout, "timeout", timeout, "deadline for the whole command (0: none)")
	c.tls.add(c.fs)
	// The default stays empty so that -h does not print the secret; with
	// names $RAFTKV_TOKEN in its place.
	c.fs.StringVar(&c.token, "token", "", "the secret of an ACL `TOKEN`, for a cluster with ACLs (default $RAFTKV_TOKEN)")
	return c
}

// parse parses args, where flags and positional arguments may be mixed, and
// returns between min and max positional arguments. After "--" everything
// is positional.
func (c *command) parse(args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return nil, err
		} else if err != nil {
			return nil, &usageError{err: err, shown: true}
		}
		rest := c.fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) < min || len(pos) > max {
		return nil, usagef("%s: wrong number of arguments; usage: %s", c.fs.Name(), strings.TrimSpace(c.synopsis))
	}
	return pos, nil
}

// with calls fn with a client for --addr, the TLS flags and --token, and
// ctx bounded by --timeout. A refusal for want of a token says how to
// give one.
func (c *command) with(ctx context.Context, fn func(context.Context, *client.Client) error) error {
	tlsConf, err := c.tls.config()
	if err != nil {
		return err
	}
	endpoints, err := splitAddr(c.addr, tlsConf != nil)
	if err != nil {
		return err
	}
	token, err := tokenFlag(c.token)
	if err != nil {
		return err
	}
	cl, err := client.New(client.Config{Endpoints: endpoints, TLS: tlsConf, Token: token})
	if err != nil {
		return &usageError{err: fmt.Errorf("--addr: %w", err)}
	}
	defer cl.Close()
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	err = fn(ctx, cl)
	if token == "" && errors.Is(err, kv.ErrUnauthenticated) {
		err = fmt.Errorf("%w; the cluster runs with ACLs: give a token with --token or $RAFTKV_TOKEN", err)
	}
	return err
}

// tokenFlag is the ACL token of the client commands: --token, else
// $RAFTKV_TOKEN, trimmed of surrounding whitespace (a secret read from a
// file keeps its newline). One with a space or a control character in it
// could not travel in the Authorization header: a usage error.
func tokenFlag(flagValue string) (string, error) {
	from, token := "--token", flagValue
	if token == "" {
		from, token = "$RAFTKV_TOKEN", os.Getenv("RAFTKV_TOKEN")
	}
	token = strings.TrimSpace(token)
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", usagef("%s: a token has no spaces or control characters", from)
	}
	return token, nil
}

// fence holds the --lock and --fence-token flags of a fenced write.
type fence struct {
	lock  *string
	token *uint64
}

// fenceFlags adds --lock and --fence-token (--token is the ACL token).
func (c *command) fenceFlags() fence {
	return fence{
		lock:  c.fs.String("lock", "", "write only while lock `NAME` is held with --fence-token (412 otherwise)"),
		token: c.fs.Uint64("fence-token", 0, "the fencing token `T` of --lock ($RAFTKV_LOCK_TOKEN under raftkv lock)"),
	}
}

// append adds the fence to opts, if one was given.
func (f fence) append(opts []kv.WriteOption) ([]kv.WriteOption, error) {
	if (*f.lock == "") != (*f.token == 0) {
		return nil, usagef("--lock and --fence-token go together (--fence-token is the lock's fencing token, $RAFTKV_LOCK_TOKEN under raftkv lock; --token is the ACL token)")
	}
	if *f.lock == "" {
		return opts, nil
	}
	if err := (kv.Fence{Lock: *f.lock, Token: *f.token}).Validate(); err != nil {
		return nil, usagef("--lock: %v", err)
	}
	return append(opts, kv.WithFence(*f.lock, *f.token)), nil
}

func parseConsistency(s string) (kv.Consistency, error) {
	cons, err := kv.ParseConsistency(s)
	if err != nil {
		return "", usagef("--consistency must be %s or %s, not %q", kv.Linearizable, kv.Stale, s)
	}
	return cons, nil
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("get", "KEY", "Print the value of KEY as it is, without an added newline.", stderr).clientFlags()
	consistency := c.fs.String("consistency", string(kv.Linearizable), "read consistency: linearizable or stale")
	asJSON := c.fs.Bool("json", false, "print the whole record as JSON")
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	cons, err := parseConsistency(*consistency)
	if err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		rec, err := cl.Get(ctx, []byte(pos[0]), kv.ReadOptions{Consistency: cons})
		switch {
		case errors.Is(err, kv.ErrNotFound):
			return errors.New("key not found")
		case err != nil:
			return err
		case *asJSON:
			return writeJSON(stdout, kv.EncodeRecord(rec, false))
		}
		_, err = stdout.Write(rec.Value)
		return err
	})
}

func runPut(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newCommand("put", "KEY [VALUE|-]", "Write VALUE under KEY; without VALUE, or with -, the value is read from stdin.\nPrints the result as JSON.", stderr).clientFlags()
	ifMatch := c.fs.Uint64("if-match", 0, "write only if KEY exists with mod_index `N` (compare-and-swap)")
	ifAbsent := c.fs.Bool("if-absent", false, "write only if KEY does not exist")
	leaseID := c.fs.String("lease", "", "attach KEY to lease `ID` (deleted when the lease ends)")
	ttl := c.fs.Duration("ttl", 0, "give KEY a new lease of its own of this TTL (printed as \"lease\")")
	fence := c.fenceFlags()
	pos, err := c.parse(args, 1, 2)
	if err != nil {
		return err
	}
	if *ifMatch != 0 && *ifAbsent {
		return usagef("--if-match and --if-absent exclude each other")
	}
	opts := []kv.WriteOption{kv.WithCondition(kv.Condition{IfModIndex: *ifMatch, IfAbsent: *ifAbsent})}
	if opts, err = fence.append(opts); err != nil {
		return err
	}
	switch {
	case *leaseID != "" && *ttl != 0:
		return usagef("--lease and --ttl exclude each other")
	case *ttl < 0:
		return usagef("--ttl must be positive")
	case *ttl > 0:
		opts = append(opts, kv.WithTTL(*ttl))
	case *leaseID != "":
		id, err := kv.ParseLeaseID(*leaseID)
		if err != nil {
			return usagef("--lease: %v", err)
		}
		opts = append(opts, kv.WithLease(id))
	}
	var value []byte
	if len(pos) == 2 && pos[1] != "-" {
		value = []byte(pos[1])
	} else if value, err = io.ReadAll(stdin); err != nil {
		return fmt.Errorf("reading the value from stdin: %w", err)
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Put(ctx, []byte(pos[0]), value, opts...)
		if err != nil {
			return err
		}
		out := kv.PutResponse{CreateIndex: res.CreateIndex, ModIndex: res.ModIndex, Version: res.Version, Lease: res.Lease}
		out.Key, out.KeyBase64 = kv.EncodeBytes(res.Key)
		return writeJSON(stdout, out)
	})
}

func runDel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("del", "KEY", "Delete KEY, or with --prefix every key that starts with KEY.\nPrints the result as JSON.", stderr).clientFlags()
	prefix := c.fs.Bool("prefix", false, "delete every key that starts with KEY")
	ifMatch := c.fs.Uint64("if-match", 0, "delete only if KEY exists with mod_index `N`")
	fence := c.fenceFlags()
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	opts, err := fence.append([]kv.WriteOption{kv.IfModIndex(*ifMatch)})
	if err != nil {
		return err
	}
	switch {
	case *prefix && *ifMatch != 0:
		return usagef("--if-match does not apply to --prefix")
	case *prefix && pos[0] == "":
		return usagef("refusing to delete every key: the prefix is empty")
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		var (
			res kv.DeleteResult
			err error
		)
		if *prefix {
			res, err = cl.DeletePrefix(ctx, []byte(pos[0]), opts[1:]...)
		} else {
			res, err = cl.Delete(ctx, []byte(pos[0]), opts...)
		}
		if err != nil {
			return err
		}
		return writeJSON(stdout, kv.DeleteResponse(res))
	})
}

func runList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("ls", "[PREFIX]", "List the keys that start with PREFIX (every key without it), one a line:\nkey<TAB>value. Keys and values that are not printable text are quoted.", stderr).clientFlags()
	keysOnly := c.fs.Bool("keys-only", false, "print the keys only")
	limit := c.fs.Int("limit", 0, "print at most `N` keys (0: all)")
	consistency := c.fs.String("consistency", string(kv.Linearizable), "read consistency of each page: linearizable or stale")
	pos, err := c.parse(args, 0, 1)
	if err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit must not be negative")
	}
	opts := kv.ListOptions{KeysOnly: *keysOnly}
	if opts.Consistency, err = parseConsistency(*consistency); err != nil {
		return err
	}
	if len(pos) == 1 {
		opts.Prefix = []byte(pos[0])
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		w := bufio.NewWriter(stdout)
		for printed := 0; ; {
			if *limit > 0 {
				opts.Limit = min(*limit-printed, kv.MaxListLimit)
			}
			page, err := cl.List(ctx, opts)
			if err != nil {
				return err
			}
			for _, r := range page.Items {
				if *keysOnly {
					fmt.Fprintln(w, printable(r.Key))
				} else {
					fmt.Fprintf(w, "%s\t%s\n", printable(r.Key), printable(r.Value))
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			printed += len(page.Items)
			if !page.More || (*limit > 0 && printed >= *limit) {
				return nil
			}
			if bytes.Compare(page.Next, opts.After) <= 0 {
				return fmt.Errorf("listing stopped: the server's next key %q does not advance", page.Next)
			}
			opts.After = page.Next
		}
	})
}

func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("cluster", "", "Show the cluster's members and leader, as the node that answers sees them.", stderr).clientFlags()
	asJSON := c.fs.Bool("json", false, "print the cluster info as JSON")
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		info, err := cl.Cluster(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, info)
		}
		leader := orDash(info.LeaderID)
		if info.LeaderAPI != "" {
			leader += " (" + info.LeaderAPI + ")"
		}
		fmt.Fprintf(stdout, "cluster %s  protocol %d\nleader %s  term %d  commit index %d  applied index %d  (answered by %s, %s)\n\n",
			orDash(info.ClusterID), info.ProtocolVersion, leader, info.Term, info.CommitIndex, info.AppliedIndex, orDash(info.ID), orDash(info.State))
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tRAFT ADDR\tAPI ADDR\tSUFFRAGE\tSTATE")
		for _, n := range info.Nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ID, orDash(n.RaftAddr), orDash(n.APIAddr), orDash(n.Suffrage), orDash(n.State))
		}
		return tw.Flush()
	})
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	c := newCommand("version", "", "Print the version of raftkv and of the Go toolchain that built it.", stderr)
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	version := "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value[:min(len(s.Value), 12)]
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			version += " " + rev + dirty
		}
	}
	_, err := fmt.Fprintf(stdout, "raftkv %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printable returns b as it is when it is UTF-8 text without control
// characters, and quoted (as %q does) otherwise, so that every key or value
// stays on its line.
func printable(b []byte) string {
	s := string(b)
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	return strconv.Quote(s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
