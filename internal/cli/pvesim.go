package cli

import (
	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/pipeline"
)

func (a *app) pveSimCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pve-sim -i FILE",
		Short: "Run the Proxmox VE API simulator for local rehearsal (not built yet)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return pipeline.ErrNotBuilt
		},
	}
}
