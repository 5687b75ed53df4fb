package ui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// WarnHandler is the terminal's log handler at the default level: it drops
// every record below Warn and prints the others as one plain line,
// " ! message (key=value, ...)" — a line for a person, not a log record.
// Write them through a Status so they land above its spinner.
type WarnHandler struct {
	w      io.Writer
	mu     *sync.Mutex
	attrs  []slog.Attr
	groups string
}

// NewWarnHandler returns a WarnHandler writing to w.
func NewWarnHandler(w io.Writer) *WarnHandler {
	return &WarnHandler{w: w, mu: &sync.Mutex{}}
}

func (h *WarnHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *WarnHandler) Handle(_ context.Context, r slog.Record) error {
	var kv []string
	add := func(a slog.Attr) bool {
		if a.Equal(slog.Attr{}) {
			return true
		}
		kv = append(kv, fmt.Sprintf("%s%s=%v", h.groups, a.Key, a.Value.Resolve()))
		return true
	}
	for _, a := range h.attrs { // keys already carry their groups
		kv = append(kv, fmt.Sprintf("%s=%v", a.Key, a.Value.Resolve()))
	}
	r.Attrs(add)
	mark := "!"
	if r.Level >= slog.LevelError {
		mark = "✗"
	}
	line := fmt.Sprintf(" %s %s", mark, r.Message)
	if len(kv) > 0 {
		line += " (" + strings.Join(kv, ", ") + ")"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line+"\n")
	return err
}

func (h *WarnHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	for _, a := range attrs {
		a.Key = h.groups + a.Key
		c.attrs = append(c.attrs[:len(c.attrs):len(c.attrs)], a)
	}
	return &c
}

func (h *WarnHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups += name + "."
	return &c
}
