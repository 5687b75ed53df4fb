package remote_test

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel stop cmd when the test binary dies without
// running its cleanups (a panic in a parallel test, a kill).
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
