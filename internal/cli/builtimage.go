package cli

import (
	"errors"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/rpi/image"
	"github.com/fhlab/provision/internal/stages"
)

// builtImage is the golden image the given racks boot, as `provision image
// build` left it (stages.BuiltImage); racks that name no single image are a
// usage error.
func (a *app) builtImage(what string, inv *inventory.Inventory, racks []string) (*image.Result, error) {
	res, err := stages.BuiltImage(what, inv, a.stateDir(inv), racks)
	if errors.Is(err, stages.ErrChooseImage) {
		return nil, exitError{2, err}
	}
	return res, err
}

func racksOf(nodes []*inventory.Node) []string { return stages.RacksOf(nodes) }
