package raftkv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// raftAddrFile, in the data directory, remembers the raft port a node
// picked when Config.RaftAddr asked for any free one (port 0). The cluster
// configuration names a member by the raft address it had when it joined;
// a node that came back on another random port would never be reached,
// and a whole cluster restarted that way would never elect a leader.
const raftAddrFile = "raft-addr"

// raftBindAddr returns the address the raft transport binds: addr itself,
// unless its port is 0 and the data directory remembers the port this
// node had, which it then takes again on addr's host. remembered is the
// address read from the file ("" when none).
func raftBindAddr(dir, addr string) (bind, remembered string, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("raftkv: raft address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, "", nil
	}
	b, err := os.ReadFile(filepath.Join(dir, raftAddrFile))
	if errors.Is(err, os.ErrNotExist) {
		return addr, "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("raftkv: read %s: %w", raftAddrFile, err)
	}
	remembered = strings.TrimSpace(string(b))
	_, rport, err := net.SplitHostPort(remembered)
	if n, perr := strconv.Atoi(rport); err != nil || perr != nil || n <= 0 || n > 65535 {
		return "", "", fmt.Errorf("raftkv: %s holds %q, not a host:port: fix or remove it", filepath.Join(dir, raftAddrFile), remembered)
	}
	return net.JoinHostPort(host, rport), remembered, nil
}

// rememberRaftAddr records the address the raft transport bound, when
// Config.RaftAddr left the port to the system, so that the next Open
// binds the same port.
func rememberRaftAddr(dir, configured, bound string) error {
	if _, port, err := net.SplitHostPort(configured); err != nil || port != "0" {
		return nil
	}
	path := filepath.Join(dir, raftAddrFile)
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == bound {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(bound+"\n"), 0o600); err != nil {
		return fmt.Errorf("raftkv: remember raft address: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("raftkv: remember raft address: %w", err)
	}
	return nil
}
