package stages

import (
	"context"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
)

// PiBoot flashes SD cards or serves netboot, per rack.
type PiBoot struct{}

func (PiBoot) Name() string  { return "pi-boot" }
func (PiBoot) Title() string { return "flash SD cards or serve netboot to the Pis" }
func (PiBoot) Skip(env *pipeline.Env) (bool, string) {
	return skipWithout(env, inventory.KindPi, "the inventory has no pis.racks")
}
func (PiBoot) Plan(ctx context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	return notBuilt{"SD flashing and Pi 4 netboot (TFTP, proxy-DHCP, NFS/NBD root)"}.Plan(ctx, env)
}
func (PiBoot) Run(ctx context.Context, env *pipeline.Env) error {
	return notBuilt{"SD flashing and netboot"}.Run(ctx, env)
}
