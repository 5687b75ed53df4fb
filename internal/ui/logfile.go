package ui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// LogFile name and rotation defaults.
const (
	LogFileName    = "provision.log"
	DefaultMaxSize = 10 << 20 // rotate when the file would grow past 10 MiB
	DefaultKeep    = 3        // provision.log.1 .. provision.log.3
	maxPending     = 1 << 20  // records kept before Open
)

// LogFile is the always-on debug log: an io.Writer for a slog handler that
// writes <dir>/provision.log, mode 0600, with every write passed through
// Redact first. Records written before Open are kept (up to 1 MiB) and
// written when it opens; a command that never opens it (no state
// directory) writes no file. When a write would take the file past MaxSize
// it is rotated: provision.log.1 .. .Keep, the oldest dropped. Safe for
// concurrent use; each Write should be one whole record, as slog's
// handlers write them, so that a secret is never split across writes.
type LogFile struct {
	// Redact hides secrets in every write; nil writes as is.
	Redact  func(string) string
	MaxSize int64 // 0 means DefaultMaxSize
	Keep    int   // 0 means DefaultKeep

	mu      sync.Mutex
	path    string
	f       *os.File
	size    int64
	pending []byte
	dropped int // bytes not kept before Open
	opened  bool
	closed  bool
	err     error
}

// Open opens (creating with mode 0700) dir/provision.log for appending,
// writes marker (one line saying which run follows) and the records
// written so far. A second Open is a no-op.
func (l *LogFile) Open(dir, marker string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opened || l.closed {
		return nil
	}
	abs, err := filepath.Abs(filepath.Join(dir, LogFileName))
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	l.path = abs
	if err := l.open(); err != nil {
		return err
	}
	l.opened = true
	if l.Redact != nil {
		marker = l.Redact(marker)
	}
	l.write([]byte(marker + "\n"))
	if l.dropped > 0 {
		l.write(fmt.Appendf(nil, "(%d bytes of earlier records were not kept)\n", l.dropped))
	}
	l.write(l.pending)
	l.pending, l.dropped = nil, 0
	return l.err
}

// open opens l.path for appending with mode 0600 (also when it existed
// with another mode) and rotates it first when it is full.
func (l *LogFile) open() error {
	if fi, err := os.Stat(l.path); err == nil && fi.Size() >= l.maxSize() {
		if err := l.rotateFiles(); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// rotateFiles shifts provision.log.N to .N+1 (dropping the oldest) and
// the current file to .1.
func (l *LogFile) rotateFiles() error {
	keep := l.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	os.Remove(fmt.Sprintf("%s.%d", l.path, keep))
	for i := keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", l.path, i), fmt.Sprintf("%s.%d", l.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("log file: rotate: %w", err)
		}
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("log file: rotate: %w", err)
	}
	return nil
}

func (l *LogFile) maxSize() int64 {
	if l.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return l.MaxSize
}

// Write writes one record, redacted. It never fails the caller: a log that
// cannot be written must not stop the run; Err reports the first failure.
func (l *LogFile) Write(p []byte) (int, error) {
	n := len(p)
	if l.Redact != nil {
		p = []byte(l.Redact(string(p)))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return n, nil
	}
	if !l.opened {
		if len(l.pending)+len(p) > maxPending {
			l.dropped += len(p)
		} else {
			l.pending = append(l.pending, p...)
		}
		return n, nil
	}
	l.write(p)
	return n, nil
}

// write appends p, rotating first when p would take the file past MaxSize.
// The caller holds l.mu.
func (l *LogFile) write(p []byte) {
	if len(p) == 0 || l.f == nil {
		return
	}
	if l.size > 0 && l.size+int64(len(p)) > l.maxSize() {
		l.f.Close()
		l.f = nil
		if err := l.rotateFiles(); err != nil {
			l.fail(err)
		}
		if err := l.open(); err != nil {
			l.fail(err)
			return
		}
	}
	m, err := l.f.Write(p)
	l.size += int64(m)
	if err != nil {
		l.fail(fmt.Errorf("log file: %w", err))
	}
}

func (l *LogFile) fail(err error) {
	if l.err == nil {
		l.err = err
	}
}

// Path is the log file's absolute path, or "" when it was never opened.
func (l *LogFile) Path() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.opened {
		return ""
	}
	return l.path
}

// Err is the first error writing the file, if any.
func (l *LogFile) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close closes the file; records written later are dropped.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed, l.pending = true, nil
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
