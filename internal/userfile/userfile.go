// Package userfile reads the files a user names — the inventory, rack CSVs,
// SSH keys, provision.yaml, CA certificates — so that a wrong path cannot
// hang or exhaust the process: only a regular file of bounded size is read.
// The type is checked before the file is opened (opening a device can have
// effects of its own), and again on the open descriptor, which is opened
// non-blocking, so a FIFO swapped in between cannot block the read.
package userfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Limits for the files provision reads. An inventory and its rack CSVs are
// a few KiB; keys, certificates and settings less.
const (
	MaxInventory = 4 << 20 // inventory files and rack CSVs
	MaxSmall     = 1 << 20 // SSH keys, CA certificates, provision.yaml, token files
)

// ErrNotRegular and ErrTooLarge are what an *Error wraps.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// Error says why a user file was refused. Reason is the explanation without
// the path, for callers that name the file themselves.
type Error struct {
	Path   string
	Reason string
	Err    error // ErrNotRegular or ErrTooLarge
}

func (e *Error) Error() string { return e.Path + ": " + e.Reason }
func (e *Error) Unwrap() error { return e.Err }

// Reason is err's explanation without the path it is about: the Reason of
// an *Error, the cause of an *fs.PathError, or the error's text.
func Reason(err error) string {
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Reason
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Check reports whether path (after symbolic links) is a regular file of at
// most limit bytes, without opening it. Errors from stat are returned as
// they are, so errors.Is(err, fs.ErrNotExist) works.
func Check(path string, limit int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return check(path, fi, limit)
}

// Read returns the contents of path, a regular file of at most limit bytes.
// /dev/null (or a link to it) reads as empty: `--config /dev/null` is the
// usual way to say "no file".
func Read(path string, limit int64) ([]byte, error) {
	if err := Check(path, limit); err != nil {
		if isDevNull(path) {
			return []byte{}, nil
		}
		return nil, err
	}
	return readOpen(path, limit)
}

// readOpen opens path without blocking and reads it if the descriptor is a
// regular file of at most limit bytes.
func readOpen(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := check(path, fi, limit); err != nil {
		return nil, err // replaced since the first check
	}
	// The size can grow while reading, and some files (in /proc) report 0.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(path, limit)
	}
	return data, nil
}

// isDevNull reports whether path is the null device (character device 1:3).
func isDevNull(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 1<<8|3 // makedev(1, 3)
}

func check(path string, fi fs.FileInfo, limit int64) error {
	m := fi.Mode()
	if !m.IsRegular() {
		return &Error{Path: path, Reason: kind(m) + ", not a regular file", Err: ErrNotRegular}
	}
	if fi.Size() > limit {
		return tooLarge(path, limit)
	}
	return nil
}

func tooLarge(path string, limit int64) error {
	return &Error{Path: path, Reason: fmt.Sprintf("larger than %s, the most this file may hold", size(limit)), Err: ErrTooLarge}
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
