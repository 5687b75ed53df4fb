package stages

import (
	"context"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
)

// VMs creates the Proxmox VMs through Terraform.
type VMs struct{}

func (VMs) Name() string  { return "vms" }
func (VMs) Title() string { return "create Proxmox VMs with Terraform (snippets over SFTP)" }
func (VMs) Skip(env *pipeline.Env) (bool, string) {
	return skipWithout(env, inventory.KindVM, "the inventory has no proxmox.vms")
}
func (s VMs) Plan(ctx context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	return notBuilt{"Terraform/Telmate VM creation (planned: `provision vms plan|apply`)"}.Plan(ctx, env)
}
func (s VMs) Run(ctx context.Context, env *pipeline.Env) error {
	return notBuilt{"Terraform/Telmate VM creation"}.Run(ctx, env)
}
