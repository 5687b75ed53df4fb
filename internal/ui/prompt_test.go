package ui_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/ui"
)

func TestConfirm(t *testing.T) {
	cases := []struct {
		name  string
		p     ui.Prompt
		input string
		want  error
	}{
		{"yes flag", ui.Prompt{Yes: true}, "", nil},
		{"no tty, no --yes", ui.Prompt{TTY: false}, "y\n", ui.ErrNeedYes},
		{"tty y", ui.Prompt{TTY: true}, "y\n", nil},
		{"tty YES", ui.Prompt{TTY: true}, " YES \n", nil},
		{"tty empty", ui.Prompt{TTY: true}, "\n", ui.ErrDeclined},
		{"tty no", ui.Prompt{TTY: true}, "no\n", ui.ErrDeclined},
		{"tty eof", ui.Prompt{TTY: true}, "", ui.ErrDeclined},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			c.p.In, c.p.Out = strings.NewReader(c.input), &out
			if err := c.p.Confirm(t.Context(), "Apply?"); !errors.Is(err, c.want) {
				t.Errorf("Confirm = %v, want %v", err, c.want)
			}
			if c.p.TTY && !c.p.Yes && out.String() != "Apply? [y/N]: " {
				t.Errorf("asked %q", out.String())
			}
		})
	}
}

// A cancelled context ends the wait for an answer that never comes.
func TestConfirmStopsWithTheContext(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := ui.Prompt{In: r, TTY: true}.Confirm(ctx, "Apply?")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Confirm with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestIsTerminal(t *testing.T) {
	if ui.IsTerminal(strings.NewReader("y\n")) {
		t.Error("a strings.Reader is not a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "answers")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ui.IsTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
}
