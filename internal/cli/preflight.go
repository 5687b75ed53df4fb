package cli

import (
	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/pipeline"
)

func (a *app) preflightCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "preflight -i FILE",
		Short: "Check Proxmox before anything changes (not built yet)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return pipeline.ErrNotBuilt
		},
	}
}
