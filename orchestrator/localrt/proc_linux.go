package localrt

import "syscall"

// sysProcAttr puts the backend in its own process group (so a stop reaches
// its workers too) and has the kernel kill it if the switchboard dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
