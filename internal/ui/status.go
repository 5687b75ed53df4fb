package ui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// StatusConfig says where a Status writes and how.
type StatusConfig struct {
	Out io.Writer        // stderr; nil discards
	Now func() time.Time // default time.Now
	// Spinner redraws one line for the running step, for a terminal
	// (IsSmartTerminal). Without it every line is plain text that reads the same
	// in a log, a pipe and CI.
	Spinner  bool
	Interval time.Duration // spinner frame interval; default 100ms
	Width    int           // spinner line width in columns; 0 means 80
	// Log gets every line as a debug record (the log file), so the file
	// tells the same story as the terminal; nil: none.
	Log *slog.Logger
}

// Status prints progress lines: "• title ..." when a step starts, indented
// sub-steps, and "✓ title (1.2s)" or "✗ title (1.2s)" when it ends. With a
// spinner, the running step is one redrawn line instead of the "•" line.
// It is safe for concurrent use; other output to the same stream should go
// through Write, so it is printed above the spinner line.
type Status struct {
	cfg StatusConfig

	mu    sync.Mutex
	steps []string // running steps, newest last (spinner mode)
	shown bool     // the spinner line is on screen
	held  bool     // a question without a newline is on screen: no redraw
	frame int
	stop  chan struct{} // closes the ticker; nil when none runs
	done  chan struct{}
}

var frames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// NewStatus returns a Status configured by cfg.
func NewStatus(cfg StatusConfig) *Status {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Width <= 0 {
		cfg.Width = 80
	}
	return &Status{cfg: cfg}
}

// Start prints the start of a step and returns the function that ends it
// with ✓ (nil) or ✗ (an error).
func (s *Status) Start(title string) func(error) {
	start := s.cfg.Now()
	s.record(" • " + title + " ...")
	var stop, done chan struct{}
	s.mu.Lock()
	if s.cfg.Spinner {
		s.steps = append(s.steps, title)
		if s.stop == nil {
			s.stop, s.done = make(chan struct{}), make(chan struct{})
			go s.tick(s.stop, s.done)
		}
		s.draw()
	} else {
		fmt.Fprintf(s.cfg.Out, " • %s ...\n", title)
	}
	s.mu.Unlock()
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			took := s.cfg.Now().Sub(start).Round(10 * time.Millisecond)
			mark := "✓"
			if err != nil {
				mark = "✗"
			}
			line := fmt.Sprintf(" %s %s (%s)", mark, title, took)
			s.record(line)
			s.mu.Lock()
			if s.cfg.Spinner {
				if i := slices.Index(s.steps, title); i >= 0 {
					s.steps = slices.Delete(s.steps, i, i+1)
				}
				if len(s.steps) == 0 && s.stop != nil {
					stop, done = s.stop, s.done
					s.stop, s.done = nil, nil
				}
			}
			s.above(line + "\n")
			s.mu.Unlock()
			if stop != nil {
				close(stop)
				<-done
			}
		})
	}
}

// Skip prints that a step does not apply.
func (s *Status) Skip(title, why string) {
	s.line(fmt.Sprintf(" - %s: skipped, %s", title, why))
}

// Progress prints an indented sub-step of the running step ("joined 40/144").
func (s *Status) Progress(format string, args ...any) {
	s.line("   " + fmt.Sprintf(format, args...))
}

// Write prints p above the spinner line (or plainly without a spinner). p
// should hold whole lines; text that does not end in a newline (a question
// waiting for an answer) stops the spinner from redrawing until the next
// output, so it stays readable.
func (s *Status) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.above(string(p))
	return len(p), nil
}

// Wrap returns a writer to w (stdout) that clears the spinner line before
// each write and redraws it after, so results printed while a step runs do
// not run into the spinner when both streams are one terminal. Without a
// spinner it returns w.
func (s *Status) Wrap(w io.Writer) io.Writer {
	if !s.cfg.Spinner {
		return w
	}
	return wrapped{s: s, w: w}
}

type wrapped struct {
	s *Status
	w io.Writer
}

func (o wrapped) Write(p []byte) (int, error) {
	s := o.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shown {
		io.WriteString(s.cfg.Out, "\r\033[K")
		s.shown = false
	}
	n, err := o.w.Write(p)
	if len(p) > 0 && p[len(p)-1] == '\n' && len(s.steps) > 0 && !s.held {
		s.draw()
	}
	return n, err
}

func (s *Status) line(l string) {
	s.record(l)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.above(l + "\n")
}

func (s *Status) record(l string) {
	if s.cfg.Log != nil {
		s.cfg.Log.Log(context.Background(), slog.LevelDebug, strings.TrimSpace(l))
	}
}

// above prints text, which ends in a newline, with the spinner line cleared
// first and redrawn after. The caller holds s.mu.
func (s *Status) above(text string) {
	if s.shown {
		io.WriteString(s.cfg.Out, "\r\033[K")
		s.shown = false
	}
	io.WriteString(s.cfg.Out, text)
	s.held = s.cfg.Spinner && !strings.HasSuffix(text, "\n")
	if s.cfg.Spinner && len(s.steps) > 0 && !s.held {
		s.draw()
	}
}

// draw (re)draws the spinner line for the newest running step, cut to the
// line width so that \r can clear it. The caller holds s.mu.
func (s *Status) draw() {
	line := fmt.Sprintf(" %s %s ...", frames[s.frame%len(frames)], s.steps[len(s.steps)-1])
	if utf8.RuneCountInString(line) > s.cfg.Width-1 {
		r := []rune(line)
		line = string(r[:s.cfg.Width-2]) + "…"
	}
	io.WriteString(s.cfg.Out, "\r\033[K"+line)
	s.shown = true
}

func (s *Status) tick(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.mu.Lock()
			if len(s.steps) > 0 && !s.held {
				s.frame++
				s.draw()
			}
			s.mu.Unlock()
		}
	}
}
