package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/concurrency"
	"github.com/raftkv/raftkv/kv"
)

const leaseUsage = `Usage:
  raftkv lease grant [flags] TTL     grant a lease of TTL ("30s"); prints its id
  raftkv lease keepalive [flags] ID  keep lease ID alive until Ctrl-C, printing each TTL
  raftkv lease revoke [flags] ID     revoke lease ID, deleting the keys attached to it
  raftkv lease ls [flags]            list the leases: id, TTL, time remaining
  raftkv lease info [flags] ID       show lease ID: TTL, time remaining, attached keys

Attach a key to a lease with "raftkv put --lease ID KEY VALUE", or give a key
a lease of its own with "raftkv put --ttl 30s KEY VALUE".
`

func runLease(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	args, err := liftClientFlags(args) // raftkv lease --addr A SUBCOMMAND
	if err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, leaseUsage)
		return &usageError{err: errors.New("lease: no subcommand given"), shown: true}
	}
	switch sub, args := args[0], args[1:]; sub {
	case "grant":
		return runLeaseGrant(ctx, args, stdout, stderr)
	case "keepalive":
		return runLeaseKeepAlive(ctx, args, stdout, stderr)
	case "revoke":
		return runLeaseRevoke(ctx, args, stdout, stderr)
	case "ls":
		return runLeaseList(ctx, args, stdout, stderr)
	case "info":
		return runLeaseInfo(ctx, args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		_, err := fmt.Fprint(stdout, leaseUsage)
		return err
	default:
		return usagef("lease: unknown subcommand %q (run \"raftkv lease help\")", sub)
	}
}

// parseLeaseID parses the command's flags and its one argument, a lease id.
func (c *command) parseLeaseID(args []string) (kv.LeaseID, error) {
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return 0, err
	}
	id, err := kv.ParseLeaseID(pos[0])
	if err != nil {
		return 0, usagef("%v", err)
	}
	return id, nil
}

func runLeaseGrant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("lease grant", "TTL", "Grant a lease of TTL (a duration such as 30s; the cluster bounds it) and print its id.", stderr).clientFlags()
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	ttl, err := kv.ParseTTL(pos[0])
	if err != nil || ttl <= 0 {
		return usagef("lease grant: TTL %q is not a positive duration such as 30s", pos[0])
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		l, err := cl.Grant(ctx, ttl)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, l.ID)
		return err
	})
}

func runLeaseKeepAlive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("lease keepalive", "ID", "Keep lease ID alive, a keepalive every third of its TTL, until interrupted\n(Ctrl-C), printing the TTL each keepalive restarted. Exits 0 when interrupted,\n1 when the lease is lost (it does not exist, or no keepalive was acknowledged\nwithin its TTL).", stderr).clientFlagsTimeout(0)
	id, err := c.parseLeaseID(args)
	if err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		l, err := cl.KeepAliveOnce(ctx, id)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		}
		// The answer gave the TTL; the Keeper's first keepalive, at once,
		// prints it.
		k := concurrency.KeepAlive(ctx, cl, id, l.TTL)
		defer k.Stop()
		for l := range k.Acks() {
			fmt.Fprintf(stdout, "lease %s kept alive, ttl %s\n", id, l.TTL)
		}
		<-k.Done()
		if ctx.Err() != nil {
			return nil // interrupted
		}
		return fmt.Errorf("lease %s lost: %w", id, k.Err())
	})
}

func runLeaseRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("lease revoke", "ID", "Revoke lease ID, deleting every key attached to it. Prints the result as JSON.", stderr).clientFlags()
	id, err := c.parseLeaseID(args)
	if err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Revoke(ctx, id)
		if err != nil {
			return err
		}
		return writeJSON(stdout, struct {
			ID      kv.LeaseID `json:"id"`
			Deleted int64      `json:"deleted"`
			Index   uint64     `json:"index"`
		}{res.ID, res.Deleted, res.Index})
	})
}

func runLeaseList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("lease ls", "", "List the leases: id, TTL and the time each has left, as the leader sees it.", stderr).clientFlags()
	asJSON := c.fs.Bool("json", false, "print one JSON object per lease")
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		ls, err := cl.Leases(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			for _, l := range ls {
				if err := writeJSON(stdout, kv.EncodeLease(l, true)); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTTL\tREMAINING")
		for _, l := range ls {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", l.ID, l.TTL, l.Remaining)
		}
		return tw.Flush()
	})
}

func runLeaseInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("lease info", "ID", "Show lease ID: its TTL, the time it has left as the leader sees it, and its keys\n(one a line after the first).", stderr).clientFlags()
	asJSON := c.fs.Bool("json", false, "print the lease as JSON")
	id, err := c.parseLeaseID(args)
	if err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		l, err := cl.LeaseInfo(ctx, id)
		switch {
		case errors.Is(err, kv.ErrLeaseNotFound):
			return fmt.Errorf("lease %s not found (expired, revoked or never granted)", id)
		case err != nil:
			return err
		case *asJSON:
			return writeJSON(stdout, kv.EncodeLease(l, true))
		}
		fmt.Fprintf(stdout, "lease %s  ttl %s  remaining %s  keys %d\n", l.ID, l.TTL, l.Remaining, len(l.Keys))
		for _, k := range l.Keys {
			fmt.Fprintln(stdout, printable(k))
		}
		return nil
	})
}
