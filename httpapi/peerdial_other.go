//go:build !linux

package httpapi

import "syscall"

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not available:
// keep-alive probes and the requests' own deadlines bound a dead peer.
func setUserTimeout(_, _ string, _ syscall.RawConn) error { return nil }
