//go:build unix && !linux

package chaos

import "syscall"

// sysProcAttr puts a node in its own process group, so signals reach it
// and nothing else.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
