package kv

import (
	"errors"
	"fmt"
)

// ProtocolVersion is the version of the protocol members of this build
// speak to each other: the requests between members (internal endpoints,
// joins, relays, forwarded batches) and the commands in the raft log. A
// member states it on every request to another (X-Raft-Protocol), and
// refuses a request that states a version it cannot work with
// (ErrIncompatibleVersion). See ProtocolCompatible for the rule.
//
// Version 1 is every build before the check existed: it states nothing.
// Version 2 added the cluster identity (the set_cluster command, and the
// X-Raft-Cluster-Id header).
const ProtocolVersion = 2

// ProtocolCompatible reports whether members speaking versions a and b work
// together: adjacent versions do (|a-b| <= 1), so a cluster can be upgraded
// one version at a time, one member at a time. A build of version N+1 must
// therefore still serve every request of version N and read every command
// N writes; a command it adds reaches the log only through the leader,
// which the rolling-upgrade procedure upgrades last (docs/operations.md).
func ProtocolCompatible(a, b int) bool {
	d := a - b
	return a > 0 && b > 0 && d >= -1 && d <= 1
}

// MaxClusterIDSize bounds a cluster identity.
const MaxClusterIDSize = 64

// ValidateClusterID checks a cluster identity: 1 to MaxClusterIDSize
// bytes, each a letter, a digit, '-' or '_' (it travels in a header and a
// file name).
func ValidateClusterID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: cluster id is empty", ErrBadRequest)
	}
	if len(id) > MaxClusterIDSize {
		return fmt.Errorf("%w: cluster id is %d bytes, the limit is %d", ErrBadRequest, len(id), MaxClusterIDSize)
	}
	for _, c := range []byte(id) {
		if !clusterIDByte(c) {
			return fmt.Errorf("%w: cluster id %q: only letters, digits, '-' and '_'", ErrBadRequest, id)
		}
	}
	return nil
}

func clusterIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// The errors of a request from a member that cannot be one of ours. Both
// are answered 409; the refusing member logs them.
var (
	// ErrWrongCluster: the request came from a member of another cluster
	// (its X-Raft-Cluster-Id is not this cluster's identity), such as a
	// member of the cluster a backup was taken from, talking to the
	// cluster restored from it.
	ErrWrongCluster = errors.New("wrong cluster")
	// ErrIncompatibleVersion: the request came from a member whose
	// protocol version this one cannot work with (ProtocolCompatible).
	ErrIncompatibleVersion = errors.New("incompatible protocol version")
)
