//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package remote

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive flock(2) on f, so that several processes
// sharing one known_hosts file append one at a time.
func lockFile(f *os.File) (unlock func(), err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }, nil
}
