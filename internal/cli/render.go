package cli

import (
	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/stages"
)

func (a *app) renderCommand() *cobra.Command {
	var outDir string
	cmd := &cobra.Command{
		Use:   "render -i FILE [-o DIR]",
		Short: "Write every node's cloud-init seed: user-data, meta-data, network-config",
		Long: `Render each node's cloud-init seed from the templates in templates/cloud-init:
DIR/<node>/user-data      installs Docker and bakes in the host tuning (link
                          policy, sysctls, IPVS timer, daemon.json, limits)
DIR/<node>/meta-data      instance id and hostname
DIR/<node>/network-config netplan v2 with the node's static address

Files are written atomically and only when their content changed, so a
second run reports every node unchanged. All nodes are written or none: a
run that fails (or is interrupted) leaves DIR as it was.`,
		Example: "  provision render -i inventory/example.yaml -o out/seeds",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, d, err := a.session(outDir)
			if err != nil {
				return err
			}
			defer d.SSH.Close()
			return pipeline.Pipeline{Stages: []pipeline.Stage{stages.Render{Renderer: d.Renderer}}}.Run(cmd.Context(), env)
		},
	}
	cmd.Flags().StringVarP(&outDir, "output-dir", "o", "", "where to write the seeds (default <state-dir>/cloud-init)")
	return cmd
}
