package userfile

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// returns runs f and fails the test if it has not returned within a minute:
// a read that blocks on a FIFO would otherwise hang the test run.
func returns[T any](t *testing.T, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(time.Minute):
		t.Fatal("blocked")
		panic("unreachable")
	}
}

func TestReadRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "rack.csv")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "zero-link")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 1025), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, reason string }{
		{"/dev/zero", "a character device, not a regular file"},
		{link, "a character device, not a regular file"},
		{fifo, "a named pipe (FIFO), not a regular file"},
		{dir, "a directory, not a regular file"},
		{sock, "a socket, not a regular file"},
		{big, "larger than 1 KiB, the most this file may hold"},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			err := returns(t, func() error { _, err := Read(tc.path, 1024); return err })
			var ue *Error
			if !errors.As(err, &ue) || ue.Reason != tc.reason || ue.Path != tc.path {
				t.Fatalf("error %v, want %s: %s", err, tc.path, tc.reason)
			}
			if !strings.HasPrefix(err.Error(), tc.path+": ") || Reason(err) != tc.reason {
				t.Errorf("error text %q, reason %q", err, Reason(err))
			}
		})
	}
}

// TestReadOpenRefusesAFIFO covers a FIFO swapped in after the check: the
// open must not block and the descriptor's type is checked again.
func TestReadOpenRefusesAFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	err := returns(t, func() error { _, err := readOpen(fifo, 1024); return err })
	if !errors.Is(err, ErrNotRegular) {
		t.Fatalf("error %v, want ErrNotRegular", err)
	}
}

// TestReadBoundsFilesThatLieAboutTheirSize reads a /proc file that reports
// size 0: the limit still holds.
func TestReadBoundsFilesThatLieAboutTheirSize(t *testing.T) {
	fi, err := os.Stat("/proc/self/maps")
	if err != nil || fi.Size() != 0 {
		t.Skipf("/proc/self/maps: %v, size %v", err, fi)
	}
	if _, err := Read("/proc/self/maps", 16); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error %v, want ErrTooLarge", err)
	}
}

func TestReadRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte("kind: Lab\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := Read(path, 10)
	if err != nil || string(data) != "kind: Lab\n" {
		t.Fatalf("Read = %q, %v", data, err)
	}
	if data, err := Read("/dev/null", 10); err != nil || len(data) != 0 {
		t.Fatalf("Read(/dev/null) = %q, %v; want it empty", data, err)
	}
	_, err = Read(filepath.Join(t.TempDir(), "missing"), 10)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
}
