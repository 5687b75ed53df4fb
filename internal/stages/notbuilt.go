package stages

import (
	"context"
	"fmt"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
)

// notBuilt is embedded by stages whose implementation does not exist yet:
// their plan says so plainly and running them is an error, never a silent
// success.
type notBuilt struct{ what string }

func (n notBuilt) Plan(context.Context, *pipeline.Env) (pipeline.Plan, error) {
	return pipeline.Plan{NotBuilt: n.what}, nil
}

func (n notBuilt) Run(context.Context, *pipeline.Env) error {
	return fmt.Errorf("%w: %s", pipeline.ErrNotBuilt, n.what)
}

func count(inv *inventory.Inventory, kind string) int {
	n := 0
	for _, node := range inv.Nodes {
		if node.Kind == kind {
			n++
		}
	}
	return n
}

func skipWithout(env *pipeline.Env, kind, why string) (bool, string) {
	if count(env.Inventory, kind) == 0 {
		return true, why
	}
	return false, ""
}
