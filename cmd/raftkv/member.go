package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"text/tabwriter"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

const memberUsage = `Usage:
  raftkv member ls [flags]                      list the members: suffrage, state, addresses, a non-voter's lag
  raftkv member add [flags] ID RAFT_ADDR        add a member (a non-voter, promoted once caught up; --voter: a voter now)
  raftkv member remove [flags] ID               remove a member (the leader hands over first; --force past the quorum check)
  raftkv member promote [flags] ID              make non-voter ID a voter now

A node started with an empty data directory and --join adds itself: "member
add" is for a member whose node will start later. Removing a member that
would leave fewer live voters than a quorum of the voters left is refused
unless --force; one that leaves an even number of voters is done with a
warning. See docs/operations.md, "Membership".
`

func runMember(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, memberUsage)
		return &usageError{err: errors.New("member: no subcommand given"), shown: true}
	}
	switch sub, args := args[0], args[1:]; sub {
	case "ls":
		return runMemberList(ctx, args, stdout, stderr)
	case "add":
		return runMemberAdd(ctx, args, stdout, stderr)
	case "remove", "rm":
		return runMemberRemove(ctx, args, stdout, stderr)
	case "promote":
		return runMemberPromote(ctx, args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		_, err := fmt.Fprint(stdout, memberUsage)
		return err
	default:
		return usagef("member: unknown subcommand %q (run \"raftkv member help\")", sub)
	}
}

func runMemberList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("member ls", "", "List the cluster's members as the leader sees them (as the node that answers\nsees them when the leader does not answer). LAG is a non-voter's distance\nfrom the leader's log, in entries, at the leader's last check.", stderr).clientFlags()
	asJSON := c.fs.Bool("json", false, "print the members as JSON")
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		info, err := cl.Cluster(ctx)
		if err != nil {
			return err
		}
		info = c.fromLeader(ctx, info)
		if *asJSON {
			return writeJSON(stdout, info.Nodes)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSUFFRAGE\tSTATE\tRAFT ADDR\tAPI ADDR\tLAG")
		for _, n := range info.Nodes {
			lag := "-"
			if n.Lag != nil {
				lag = strconv.FormatUint(*n.Lag, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, orDash(n.Suffrage), orDash(n.State), orDash(n.RaftAddr), orDash(n.APIAddr), lag)
		}
		return tw.Flush()
	})
}

// fromLeader returns the leader's view of the cluster (it alone knows its
// non-voters' lag) when info came from another node and the leader
// answers; info otherwise.
func (c *command) fromLeader(ctx context.Context, info kv.ClusterInfo) kv.ClusterInfo {
	if info.LeaderAPI == "" || info.LeaderID == info.ID {
		return info
	}
	tlsConf, err := c.tls.config()
	if err != nil {
		return info
	}
	endpoints, err := splitAddr(c.addr, tlsConf != nil)
	if err != nil || len(endpoints) == 0 {
		return info
	}
	scheme := "http"
	if u, err := url.Parse(endpoints[0]); err == nil && u.Scheme != "" {
		scheme = u.Scheme
	}
	lc, err := client.New(client.Config{Endpoints: []string{scheme + "://" + info.LeaderAPI}, TLS: tlsConf, MaxAttempts: 1, RefreshInterval: -1})
	if err != nil {
		return info
	}
	defer lc.Close()
	if li, err := lc.Cluster(ctx); err == nil && li.ID == info.LeaderID {
		return li
	}
	return info
}

func runMemberAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("member add", "ID RAFT_ADDR", "Add member ID, whose raft transport peers dial at RAFT_ADDR (host:port).\nIt is added as a non-voter, which the leader promotes to voter once it has\ncaught up; --voter adds it as a voter at once (it then counts toward the\nquorum before it has any data). A member already there is re-addressed and\nkeeps its suffrage.", stderr).clientFlags()
	voter := c.fs.Bool("voter", false, "add it as a voter at once")
	apiAddr := c.fs.String("api-addr", "", "the member's HTTP API host:port (the node registers it itself when it starts)")
	pos, err := c.parse(args, 2, 2)
	if err != nil {
		return err
	}
	for _, a := range []string{pos[1], *apiAddr} {
		if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
			return usagef("member add: %q is not host:port", a)
		}
	}
	req := kv.JoinRequest{ID: pos[0], RaftAddr: pos[1], APIAddr: *apiAddr, Suffrage: kv.Nonvoter}
	if *voter {
		req.Suffrage = kv.Voter
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		if err := cl.AddMember(ctx, req); err != nil {
			return err
		}
		if *voter {
			_, err = fmt.Fprintf(stdout, "added %s as a voter\n", req.ID)
		} else {
			_, err = fmt.Fprintf(stdout, "added %s as a non-voter: the leader promotes it once it has caught up\n", req.ID)
		}
		return err
	})
}

func runMemberRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("member remove", "ID", "Remove member ID from the cluster. Removing the leader hands leadership over\nfirst. Refused when the voters left would be fewer live ones than a quorum of\nthem, unless --force; done with a warning when they are an even number.\nStop the removed node afterwards: it rejoins only with an empty data directory.", stderr).clientFlags()
	force := c.fs.Bool("force", false, "remove it even if the voters left would have no live quorum")
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.RemoveMember(ctx, pos[0], kv.RemoveOptions{Force: *force})
		if errors.Is(err, kv.ErrWouldLoseQuorum) {
			return fmt.Errorf("%w (--force removes it anyway)", err)
		}
		if err != nil {
			return err
		}
		warn(stderr, res)
		_, err = fmt.Fprintf(stdout, "removed %s: %d voters left\n", pos[0], res.Voters)
		return err
	})
}

func runMemberPromote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("member promote", "ID", "Make non-voter ID a voter now, without waiting for the leader to find it\ncaught up. A voter is left as it is.", stderr).clientFlags()
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.PromoteMember(ctx, pos[0])
		if err != nil {
			return err
		}
		warn(stderr, res)
		_, err = fmt.Fprintf(stdout, "%s is a voter: %d voters\n", pos[0], res.Voters)
		return err
	})
}

// warn prints a membership change's warning, if any, to stderr.
func warn(stderr io.Writer, res kv.MemberChange) {
	if res.Warning != "" {
		fmt.Fprintf(stderr, "warning: %s\n", res.Warning)
	}
}
