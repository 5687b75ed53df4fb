package cli

import (
	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/pipeline"
)

func (a *app) vmsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "vms plan|apply|destroy -i FILE",
		Short: "Create the Proxmox VMs with Terraform (not built yet)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return pipeline.ErrNotBuilt
		},
	}
}
