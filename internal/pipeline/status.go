package pipeline

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Status prints progress lines to a writer (stderr): "• title ..." when a
// step starts and "✓ title (1.2s)" or "✗ title" when it ends. It is plain
// text so it reads the same in a terminal, a log file and CI.
type Status struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// NewStatus returns a Status writing to w; a nil w discards.
func NewStatus(w io.Writer, now func() time.Time) *Status {
	if w == nil {
		w = io.Discard
	}
	return &Status{w: w, now: now}
}

func (s *Status) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, format, args...)
}

// Start prints the start of a step and returns the function that ends it.
func (s *Status) Start(title string) func(error) {
	start := s.now()
	s.printf(" • %s ...\n", title)
	return func(err error) {
		took := s.now().Sub(start).Round(10 * time.Millisecond)
		if err != nil {
			s.printf(" ✗ %s (%s)\n", title, took)
			return
		}
		s.printf(" ✓ %s (%s)\n", title, took)
	}
}

// Skip prints that a step does not apply.
func (s *Status) Skip(title, why string) {
	s.printf(" - %s: skipped, %s\n", title, why)
}

// Progress prints an intermediate line of a long step ("joined 40/144").
func (s *Status) Progress(format string, args ...any) {
	s.printf("   "+format+"\n", args...)
}
