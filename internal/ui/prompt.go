package ui

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrDeclined is returned when the admin answers anything but yes.
var ErrDeclined = errors.New("not confirmed: nothing was changed")

// ErrNeedYes is returned when there is nobody to ask and --yes was not given.
var ErrNeedYes = errors.New("standard input is not a terminal, so nobody can confirm: pass --yes to apply without asking; nothing was changed")

// Prompt asks the admin before a change. With Yes it never asks; without a
// terminal (TTY false) and without Yes it refuses.
type Prompt struct {
	In  io.Reader
	Out io.Writer
	TTY bool // In is an interactive terminal
	Yes bool // --yes: confirmed in advance
}

// IsTerminal reports whether r is a character device (an interactive
// terminal), the condition for asking on it.
func IsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Confirm asks question and returns nil only for "y" or "yes". It stops
// waiting when ctx ends.
func (p Prompt) Confirm(ctx context.Context, question string) error {
	if p.Yes {
		return nil
	}
	if !p.TTY || p.In == nil {
		return ErrNeedYes
	}
	out := p.Out
	if out == nil {
		out = io.Discard
	}
	fmt.Fprintf(out, "%s [y/N]: ", question)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(p.In).ReadString('\n')
		answer <- line
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(out)
		return ctx.Err()
	case a := <-answer:
		switch strings.ToLower(strings.TrimSpace(a)) {
		case "y", "yes":
			return nil
		}
		return ErrDeclined
	}
}
