package terraform

import (
	"context"
	"os"
)

// Confirmer asks before a change; ui.Prompt is one. It returns nil only
// when the change may go ahead.
type Confirmer interface {
	Confirm(ctx context.Context, question string) error
}

// ApplyConfirmed shows nothing itself: the caller prints the plan first.
// It asks question (unless the plan is empty), then applies exactly p. A
// refusal removes the saved plan and changes nothing.
func ApplyConfirmed(ctx context.Context, r *Runner, p *Plan, ask Confirmer, question string) error {
	if p.Empty() {
		os.Remove(p.File)
		return nil
	}
	if err := ask.Confirm(ctx, question); err != nil {
		os.Remove(p.File)
		return err
	}
	return r.Apply(ctx, p)
}
