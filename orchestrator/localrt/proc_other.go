//go:build !linux

package localrt

import "syscall"

// sysProcAttr puts the backend in its own process group, so a stop
// reaches its workers too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// groupAlive reports whether process group pgid still has a member.
func groupAlive(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }
