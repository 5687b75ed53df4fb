package pipeline

import (
	"io"
	"time"

	"github.com/fhlab/provision/internal/ui"
)

// Status prints progress lines (stderr): see ui.Status.
type Status = ui.Status

// NewStatus returns a Status writing plain lines to w (no spinner); a nil w
// discards. The CLI builds its own ui.Status with the spinner and log file.
func NewStatus(w io.Writer, now func() time.Time) *Status {
	return ui.NewStatus(ui.StatusConfig{Out: w, Now: now})
}
