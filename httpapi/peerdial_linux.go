package httpapi

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setUserTimeout bounds how long data this node sent to a peer may stay
// unacknowledged before the kernel gives up on the connection
// (TCP_USER_TIMEOUT). Keep-alive probes are not sent while data is
// outstanding, so without it a request written to a peer that vanished
// (a partition that drops packets) waits for TCP's retransmissions to run
// out: about fifteen minutes.
func setUserTimeout(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(peerUserTimeout.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}
