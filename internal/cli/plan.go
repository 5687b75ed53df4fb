package cli

import (
	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/stages"
)

func (a *app) planCommand() *cobra.Command {
	var only []string
	var detail bool
	var outDir string
	cmd := &cobra.Command{
		Use:   "plan -i FILE",
		Short: "Show what each stage of apply would change, per node, without changing anything",
		Long: `Ask every stage of the runbook what it would change and print it:

  ` + runbook() + `

Each stage lists the nodes it would create, update, replace or destroy, and
which are already right. Stages that do not apply to this inventory say why.
Nothing is changed.`,
		Example: "  provision plan -i inventory/example.yaml\n  provision plan -i inventory/example.yaml --only render --detail",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, d, err := a.session(outDir)
			if err != nil {
				return err
			}
			defer d.SSH.Close()
			p, err := stages.Apply(d).Select(only)
			if err != nil {
				return exitError{2, err}
			}
			plans, err := p.Plan(cmd.Context(), env)
			if err != nil {
				return err
			}
			pipeline.WritePlan(a.streams.Out, plans, detail)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&only, "only", nil, "plan only these stages (comma-separated)")
	cmd.Flags().BoolVar(&detail, "detail", false, "one line per node instead of a summary per action")
	cmd.Flags().StringVarP(&outDir, "output-dir", "o", "", "where seeds are rendered (default <state-dir>/cloud-init)")
	return cmd
}
