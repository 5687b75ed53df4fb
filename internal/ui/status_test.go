package ui

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock advances by step at every call.
func clock(step time.Duration) func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(step)
		return t
	}
}

func TestStatusPlainLines(t *testing.T) {
	var out, logb bytes.Buffer
	s := NewStatus(StatusConfig{Out: &out, Now: clock(600 * time.Millisecond), Log: slog.New(slog.NewTextHandler(&logb, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	done := s.Start("form the swarm")
	s.Progress("joined %d/%d", 3, 15)
	done(nil)
	done(errors.New("second end is ignored"))
	s.Skip("create VMs", "no proxmox section")
	s.Start("verify")(errors.New("boom"))
	want := " • form the swarm ...\n" +
		"   joined 3/15\n" +
		" ✓ form the swarm (600ms)\n" +
		" - create VMs: skipped, no proxmox section\n" +
		" • verify ...\n" +
		" ✗ verify (600ms)\n"
	if out.String() != want {
		t.Errorf("plain status:\n%s\nwant:\n%s", out.String(), want)
	}
	// The log file tells the same story, one debug record per line.
	for _, line := range []string{`msg="• form the swarm ..."`, `msg="joined 3/15"`, `msg="✓ form the swarm (600ms)"`, `msg="✗ verify (600ms)"`} {
		if !strings.Contains(logb.String(), "level=DEBUG "+line) {
			t.Errorf("log lacks %s:\n%s", line, logb.String())
		}
	}
	if strings.Contains(out.String(), "\r") || strings.Contains(out.String(), "\033") {
		t.Errorf("plain status holds terminal control characters: %q", out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the spinner's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestStatusSpinnerRedrawsOneLine(t *testing.T) {
	var out syncBuffer
	s := NewStatus(StatusConfig{Out: &out, Now: clock(time.Second), Spinner: true, Interval: time.Millisecond, Width: 30})
	done := s.Start("a step whose title is longer than the line")
	// Wait for the ticker to redraw at least twice.
	for strings.Count(out.String(), "\r\033[K") < 3 {
		time.Sleep(time.Millisecond)
	}
	s.Progress("sub-step")
	s.Write([]byte("a record\n"))
	done(nil)
	got := out.String()
	// After the last ✓ line nothing is redrawn: the spinner stopped.
	if !strings.HasSuffix(got, "\r\033[K ✓ a step whose title is longer than the line (1s)\n") {
		t.Errorf("spinner output does not end with the cleared line and ✓:\n%q", got)
	}
	if strings.Contains(got, " • ") {
		t.Errorf("spinner mode printed a • line: %q", got)
	}
	for _, want := range []string{"\r\033[K   sub-step\n", "\r\033[K" + "a record\n", " ⠋ a step whose title is lon…"} {
		if !strings.Contains(got, want) {
			t.Errorf("spinner output lacks %q:\n%q", want, got)
		}
	}
	// Every spinner line fits the width, so \r clears it.
	for _, l := range strings.Split(got, "\r\033[K") {
		if !strings.HasSuffix(l, "\n") && len([]rune(l)) > 29 {
			t.Errorf("spinner line %q is wider than 29 columns", l)
		}
	}
	end := len(got)
	time.Sleep(20 * time.Millisecond)
	if len(out.String()) != end {
		t.Errorf("the spinner kept drawing after the step ended")
	}
}

func TestStatusSpinnerHoldsForAQuestionAndClearsForStdout(t *testing.T) {
	var errs, out syncBuffer
	s := NewStatus(StatusConfig{Out: &errs, Now: clock(time.Second), Spinner: true, Interval: time.Millisecond})
	done := s.Start("create VMs")
	stdout := s.Wrap(&out)
	io.WriteString(stdout, "plan: 3 to create\n")
	if !regexp.MustCompile(`\r\033\[K \S create VMs \.\.\.$`).MatchString(errs.String()) || out.String() != "plan: 3 to create\n" {
		t.Fatalf("stdout write: stderr %q, stdout %q", errs.String(), out.String())
	}
	io.WriteString(s, "Apply this plan? [y/N]: ")
	held := errs.String()
	time.Sleep(20 * time.Millisecond) // many ticks
	if errs.String() != held || !strings.HasSuffix(held, "\r\033[KApply this plan? [y/N]: ") {
		t.Fatalf("the spinner drew over the question: %q", errs.String())
	}
	s.Progress("snippets: 3 written") // after the answer: the spinner is back
	done(nil)
	if !strings.Contains(errs.String(), "[y/N]:    snippets: 3 written\n\r\033[K ") {
		t.Errorf("after the question: %q", errs.String())
	}
	if plain := NewStatus(StatusConfig{Out: &errs}); plain.Wrap(&out) != io.Writer(&out) {
		t.Errorf("Wrap without a spinner is not the writer itself")
	}
}
