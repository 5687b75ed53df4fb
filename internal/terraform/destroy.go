package terraform

import "context"

// PlanDestroy makes a destroy plan, to be shown and then passed to Apply:
// what is destroyed is exactly what was shown.
func (r *Runner) PlanDestroy(ctx context.Context) (*Plan, error) {
	return r.Plan(ctx, true)
}
