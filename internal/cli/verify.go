package cli

import (
	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/stages"
)

func (a *app) verifyCommand() *cobra.Command {
	var image string
	cmd := &cobra.Command{
		Use:   "verify -i FILE",
		Short: "Check the swarm: nodes Ready with labels, overlay pool, a service across nodes",
		Long: `Check the formed swarm through a manager:

  - every inventory node is a Ready node with its role and labels;
  - a new overlay network takes its subnet from the configured pool, with
    the configured mask length;
  - a replicated service (one replica per node) answers a probe running on
    another node over that overlay network.

The service uses DNS round robin and the probe dials task addresses, so the
check works on kernels without IPVS. The test network and services
(provision-verify-*) are removed afterwards. --image must name an image
with busybox sh and nc that is present on the nodes (the emulated lab loads
` + lab.BusyboxImageTag + `).`,
		Example: "  provision verify -i inventory/local.yaml\n  provision verify -i lab.yaml --image busybox:1.36",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, d, err := a.session("")
			if err != nil {
				return err
			}
			defer d.SSH.Close()
			return pipeline.Pipeline{Stages: []pipeline.Stage{stages.Verify{SSH: d.SSH, Image: image, Counter: d.Engines}}}.Run(cmd.Context(), env)
		},
	}
	cmd.Flags().StringVar(&image, "image", lab.BusyboxImageTag, "image for the test service (busybox sh and nc)")
	return cmd
}
