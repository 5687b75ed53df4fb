package stages

import (
	"context"
	"strconv"

	"github.com/fhlab/provision/internal/pipeline"
)

// Validate reports what the loaded inventory describes. The inventory was
// already validated when it was loaded (a pipeline never starts on an
// invalid one); this stage makes the result part of every plan.
type Validate struct{}

func (Validate) Name() string  { return "validate" }
func (Validate) Title() string { return "validate the inventory" }

func (Validate) Plan(_ context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	inv := env.Inventory
	p := pipeline.Plan{Notes: []string{inv.File + " is valid: " + strconv.Itoa(len(inv.Nodes)) + " nodes"}}
	for _, c := range inv.PoolCapacity() {
		p.Notes = append(p.Notes, "swarm address pool "+c.String())
	}
	return p, nil
}

func (Validate) Run(context.Context, *pipeline.Env) error { return nil }
