package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

const aclUsage = `Usage:
  raftkv acl token create [flags]   create a token: --read PREFIX, --write PREFIX (each
                                    repeatable), --admin, --description D; prints its secret
  raftkv acl token ls [flags]       list the tokens: id, description, rules, create index
  raftkv acl token revoke [flags] ID
                                    revoke token ID: every node refuses it once it applied that
  raftkv acl bootstrap-token [--out FILE]
                                    print a new random root token secret, or write it to FILE
                                    (mode 0600) for serve --acl-bootstrap-token-file

The token commands need a token with admin (--token, or $RAFTKV_TOKEN): at
first, the root token, whose secret is the bootstrap token file's. See
docs/security.md.
`

func runACL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	args, err := liftClientFlags(args)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, aclUsage)
		return &usageError{err: errors.New("acl: no subcommand given"), shown: true}
	}
	switch sub, args := args[0], args[1:]; sub {
	case "token":
		return runACLToken(ctx, args, stdout, stderr)
	case "bootstrap-token":
		return runACLBootstrapToken(args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		_, err := fmt.Fprint(stdout, aclUsage)
		return err
	default:
		return usagef("acl: unknown subcommand %q (run \"raftkv acl help\")", sub)
	}
}

func runACLToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	args, err := liftClientFlags(args)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, aclUsage)
		return &usageError{err: errors.New("acl token: no subcommand given (create, ls, revoke)"), shown: true}
	}
	switch sub, args := args[0], args[1:]; sub {
	case "create":
		return runACLTokenCreate(ctx, args, stdout, stderr)
	case "ls":
		return runACLTokenList(ctx, args, stdout, stderr)
	case "revoke":
		return runACLTokenRevoke(ctx, args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		_, err := fmt.Fprint(stdout, aclUsage)
		return err
	default:
		return usagef("acl token: unknown subcommand %q (run \"raftkv acl help\")", sub)
	}
}

// prefixList is a repeatable flag: each use adds one prefix (which may be
// empty: every key).
type prefixList []string

func (p *prefixList) String() string { return strings.Join(*p, ",") }

func (p *prefixList) Set(s string) error {
	*p = append(*p, s)
	return nil
}

const aclCreateSummary = `Create a token with the rights given, and print its secret on stdout (its id
and rules on stderr). The cluster keeps only the secret's hash: this is the
only time the secret is shown. Hand it to whoever is to use the token
(raftkv --token, $RAFTKV_TOKEN, or Authorization: Bearer).

  --read PREFIX    read the keys that start with PREFIX (get, ls, watch)
  --write PREFIX   write (and read) them: put, del, transactions, locks
  --admin          membership, tokens, snapshots, debugging; grants no key
PREFIX "" is every key. A list, watch or prefix delete needs one rule that
covers its whole prefix.`

func runACLTokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("acl token create", "", aclCreateSummary, stderr).clientFlags()
	var req kv.ACLTokenRequest
	c.fs.Var((*prefixList)(&req.Rules.Read), "read", "grant read on the keys that start with `PREFIX` (repeatable)")
	c.fs.Var((*prefixList)(&req.Rules.Write), "write", "grant write and read on the keys that start with `PREFIX` (repeatable)")
	c.fs.BoolVar(&req.Rules.Admin, "admin", false, "grant admin: membership, tokens, snapshots, debugging (no key)")
	c.fs.StringVar(&req.Description, "description", "", "what the token is for, shown by raftkv acl token ls")
	asJSON := c.fs.Bool("json", false, "print the token, secret included, as JSON on stdout")
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return usagef("acl token create: %s", strings.TrimPrefix(err.Error(), kv.ErrBadRequest.Error()+": "))
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		tok, err := cl.CreateToken(ctx, req)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, tok)
		}
		if _, err := fmt.Fprintln(stdout, tok.Secret); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "token %d created (%s); its secret, above, is shown only this once\n", tok.ID, formatRules(tok.Rules))
		return nil
	})
}

func runACLTokenList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("acl token ls", "", "List the tokens, as the node that answers has applied them: id, description,\nrules and the index of the entry that created each. Secrets are never shown.", stderr).clientFlags()
	asJSON := c.fs.Bool("json", false, "print one JSON object per token")
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		toks, err := cl.Tokens(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			for _, t := range toks {
				if err := writeJSON(stdout, t); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tDESCRIPTION\tRULES\tCREATE INDEX")
		for _, t := range toks {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", t.ID, orDash(printable([]byte(t.Description))), formatRules(t.Rules), t.CreateIndex)
		}
		return tw.Flush()
	})
}

func runACLTokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("acl token revoke", "ID", "Revoke token ID (see raftkv acl token ls). The node that answers refuses it at\nonce, every other node as soon as it has applied the revoke. Prints the result\nas JSON.", stderr).clientFlags()
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	id, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || id == 0 {
		return usagef("acl token revoke: a token id is a whole number from 1, not %q", pos[0])
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		index, err := cl.RevokeToken(ctx, id)
		if errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("token %d not found (revoked already, or never created)", id)
		}
		if err != nil {
			return err
		}
		return writeJSON(stdout, struct {
			ID    uint64 `json:"id"`
			Index uint64 `json:"index"`
		}{id, index})
	})
}

// formatRules shows rules on one line: read "app/", "x/"; write ""; admin.
func formatRules(r kv.ACLRules) string {
	var parts []string
	for _, right := range []struct {
		name     string
		prefixes []string
	}{{"read", r.Read}, {"write", r.Write}} {
		if len(right.prefixes) == 0 {
			continue
		}
		quoted := make([]string, len(right.prefixes))
		for i, p := range right.prefixes {
			quoted[i] = strconv.Quote(p)
		}
		parts = append(parts, right.name+" "+strings.Join(quoted, ", "))
	}
	if r.Admin {
		parts = append(parts, "admin")
	}
	if len(parts) == 0 {
		return "no rights"
	}
	return strings.Join(parts, "; ")
}

func runACLBootstrapToken(args []string, stdout, stderr io.Writer) error {
	c := newCommand("acl bootstrap-token", "", "Make a new random token secret (32 random bytes, base64url) for serve\n--acl-bootstrap-token-file: print it, or with --out write it to a new file\nreadable by its owner only (mode 0600). An existing file is left alone.", stderr)
	out := c.fs.String("out", "", "write the secret to `FILE` (created with mode 0600; an existing one is an error)")
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	secret := kv.NewSecret()
	if *out == "" {
		_, err := fmt.Fprintln(stdout, secret)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("acl bootstrap-token: %s exists; not replacing a token file (remove it first, if that is what you want)", *out)
	}
	if err != nil {
		return fmt.Errorf("acl bootstrap-token: %w", err)
	}
	if _, err := fmt.Fprintln(f, secret); err != nil {
		_ = f.Close()
		return fmt.Errorf("acl bootstrap-token: writing %s: %w", *out, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("acl bootstrap-token: writing %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("acl bootstrap-token: writing %s: %w", *out, err)
	}
	fmt.Fprintf(stderr, "wrote a new token secret to %s\n", *out)
	return nil
}
