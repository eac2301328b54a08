// Command raftkv runs a raftkv node (raftkv serve) and is the command-line
// client of the cluster's HTTP API (get, put, del, ls, cluster, txn, watch,
// lease, lock, elect, snapshot, health, acl); raftkv recover rewrites a
// stopped member's data directory after its cluster lost a quorum for good.
//
// Run "raftkv help" for the list of commands and "raftkv COMMAND -h" for the
// flags of one. It exits 1 on failure and 2 on a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err on stderr (unless the flag package already did) and
// returns the process exit status for it.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var es *exitStatus
	if errors.As(err, &es) {
		return es.code // a command's status, passed on (raftkv lock)
	}
	var ue *usageError
	isUsage := errors.As(err, &ue)
	if !isUsage || !ue.shown {
		fmt.Fprintf(stderr, "raftkv: %v\n", err)
	}
	if isUsage {
		return 2
	}
	return 1
}
