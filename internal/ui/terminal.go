package ui

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// IsSmartTerminal reports whether w is a terminal that can redraw a line
// (for a spinner): a file whose descriptor is a TTY, with $TERM set and not
// "dumb".
func IsSmartTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	if t := os.Getenv("TERM"); t == "" || t == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Width is the column count of the terminal w, or 0 when w is not one.
func Width(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}
