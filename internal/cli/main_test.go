package cli

import (
	"fmt"
	"os"
	"testing"
)

// TestMain keeps what commands cache per user (flash's check stamps) in a
// directory of the test run, not in the user's ~/.cache.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "provision-cli-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
