package stages

import (
	"context"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
)

// PiImage builds the golden Raspberry Pi image.
type PiImage struct{}

func (PiImage) Name() string  { return "pi-image" }
func (PiImage) Title() string { return "build the golden Raspberry Pi image" }
func (PiImage) Skip(env *pipeline.Env) (bool, string) {
	return skipWithout(env, inventory.KindPi, "the inventory has no pis.racks")
}
func (PiImage) Plan(ctx context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	return notBuilt{"rootless Pi image builds (MBR + FAT32 + ext4 with the seed baked in)"}.Plan(ctx, env)
}
func (PiImage) Run(ctx context.Context, env *pipeline.Env) error {
	return notBuilt{"Pi image builds"}.Run(ctx, env)
}
