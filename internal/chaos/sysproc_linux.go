//go:build linux

package chaos

import "syscall"

// sysProcAttr puts a node in its own process group (so signals reach it and
// nothing else) and has the kernel kill it if the test process dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
