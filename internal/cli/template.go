package cli

import (
	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/pipeline"
)

func (a *app) templateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "template -i FILE",
		Short: "Make sure the cloud-init template exists on every Proxmox host (not built yet)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return pipeline.ErrNotBuilt
		},
	}
}
