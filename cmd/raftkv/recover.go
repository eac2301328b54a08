package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/kv"
)

const recoverSummary = `Recover a cluster that lost a quorum for good: rewrite the raft
configuration of one surviving member, stopped, so that it starts as a
cluster of one voter (itself) with every entry it holds. Then start it as
before (same --id, same --data-dir): it elects itself; and add new members
(new ids, empty data dirs) with --join pointing at it. The data dir's raft
log store (raft.db or wal/) is found, not given; start the node with the
same --raft-log-store as before.

Entries the member held but did not know to be committed are kept (no
quorum is left to tell). Recover the survivor with the highest last index:
--dry-run prints it, and the configuration, without changing anything. The
lost members must never start again with their old data dirs.

--id, --data-dir and --watch-history are also read from RAFTKV_ID,
RAFTKV_DATA_DIR and RAFTKV_WATCH_HISTORY, as raftkv serve reads them.`

func runRecover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("recover", "", recoverSummary, stderr)
	fs := c.fs
	id := fs.String("id", "", "the member's id, as given to raftkv serve (required)")
	dataDir := fs.String("data-dir", "", "the member's data directory; no node may be running on it (required)")
	raftAddr := fs.String("raft-addr", "", "raft address of the member after recovery, if it moves (an address on all interfaces, such as 0.0.0.0:9001, is ignored; default: the one its configuration holds)")
	raftAdv := fs.String("raft-advertise", "", "as --raft-addr, and wins over it, as with raftkv serve")
	watchHistory := fs.Int("watch-history", raftkv.DefaultWatchHistory, "raft indexes of change history kept for watches: give raftkv serve's value")
	dryRun := fs.Bool("dry-run", false, "print the configuration and the last index, change nothing")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	fromEnv := map[string]bool{"RAFTKV_ID": true, "RAFTKV_DATA_DIR": true, "RAFTKV_WATCH_HISTORY": true}
	if err := flagsFromLookup(fs, func(name string) (string, bool) {
		if !fromEnv[name] {
			return "", false
		}
		return os.LookupEnv(name)
	}); err != nil {
		return err
	}
	if *id == "" || *dataDir == "" {
		return usagef("recover: --id and --data-dir are required")
	}
	if *watchHistory < 0 {
		return usagef("recover: --watch-history must be 0 or more")
	}
	if *watchHistory == 0 {
		*watchHistory = -1 // Config: negative keeps none
	}
	addr := *raftAdv
	if addr == "" {
		addr = *raftAddr
	}
	if addr != "" {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "" || port == "0" {
			return usagef("recover: raft address %q is not host:port", addr)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			if *raftAdv != "" {
				return usagef("recover: --raft-advertise %s is not an address peers can dial", addr)
			}
			addr = "" // a listen address on every interface: keep the configuration's
		}
	}
	logger, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	res, err := raftkv.Recover(ctx, raftkv.RecoverConfig{
		ID:           *id,
		DataDir:      *dataDir,
		RaftAddr:     addr,
		WatchHistory: *watchHistory,
		DryRun:       *dryRun,
		Logger:       logger,
		RaftLogLevel: *logLevel,
	})
	if err != nil {
		return err
	}
	return printRecover(stdout, *id, *dataDir, *dryRun, res)
}

// printRecover prints what recover found and did.
func printRecover(w io.Writer, id, dir string, dryRun bool, res raftkv.RecoverResult) error {
	var b strings.Builder
	if dryRun {
		fmt.Fprintf(&b, "dry run: %s in %s, nothing changed\n", id, dir)
	} else {
		fmt.Fprintf(&b, "recovered %s in %s: a cluster of one voter\n", id, dir)
	}
	fmt.Fprintf(&b, "raft log store:    %s\n", res.LogStore)
	fmt.Fprintf(&b, "configuration:     %s (index %d)\n", members(res.Before), res.ConfigIndex)
	fmt.Fprintf(&b, "last index:        %d (term %d; newest snapshot %d)\n", res.LastIndex, res.LastTerm, res.SnapshotIndex)
	if dryRun {
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "new configuration: %s\n", members(res.After))
	fmt.Fprintf(&b, "state:             index %d  keys %d  sha256 %s\n", res.State.AppliedIndex, res.State.Keys, res.State.SHA256)
	fmt.Fprintf(&b, "next: start %s as before (same --id and --data-dir; it elects itself), then add new members\n"+
		"(new ids, empty data dirs) with --join at its HTTP address.\n", id)
	_, err := io.WriteString(w, b.String())
	return err
}

func members(nodes []kv.NodeInfo) string {
	var parts []string
	for _, n := range nodes {
		p := n.ID + " " + n.RaftAddr + " " + n.Suffrage
		if n.APIAddr != "" {
			p += " (api " + n.APIAddr + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "(empty)"
	}
	return strings.Join(parts, ", ")
}
