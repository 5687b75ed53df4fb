package stages

import (
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
)

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
