// Package rootfs builds a Debian arm64 root filesystem for the Raspberry Pi
// images. This is a placeholder with the agreed API so that its callers
// compile; h-img2's builder replaces it at merge.
package rootfs

import (
	"context"
	"errors"
	"log/slog"
)

// Options says what to build and where.
type Options struct {
	Dir, Suite, Mirror, Arch               string
	Components, Packages, InitramfsModules []string
	SourceDateEpoch                        int64
	Log                                    *slog.Logger
	Progress                               func(format string, args ...any)
}

// Build fills o.Dir with the root filesystem.
func Build(ctx context.Context, o Options) error { return errors.New("rootfs builder not merged yet") }
