package state

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/fhlab/provision/internal/userfile"
)

// TestLoadRefusesAFIFO: a state file that is a FIFO is refused at once
// (reading it blocked forever).
func TestLoadRefusesAFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, FileName), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, "lab"); !errors.Is(err, userfile.ErrNotRegular) {
		t.Fatalf("Load = %v, want a not-a-regular-file error", err)
	}
}
