//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package remote

import "os"

// lockFile is a no-op where flock(2) is missing: writes within one process
// are still serialized by KnownHosts' mutex.
func lockFile(*os.File) (unlock func(), err error) { return func() {}, nil }
