package cli

import (
	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/stages"
)

func (a *app) applyCommand() *cobra.Command {
	var only []string
	var yes, force, forceHosts, allowReboot bool
	var outDir string
	cmd := &cobra.Command{
		Use:   "apply -i FILE",
		Short: "Run the runbook: every stage in order, each changing only what differs",
		Long: `Run every stage of the runbook in order, stopping at the first that fails:

  ` + runbook() + `

Each stage reads what is there first and changes only what differs, so a
re-run after a failure or on a finished lab is safe. Stages that do not
apply to this inventory are skipped with the reason; stages that are not
built yet stop the run and say so. The state file is saved after every
stage.

Run 'provision plan' first to see what every stage would change. The vms
stage shows Terraform's plan per VM and asks before applying it (--yes
answers for you; without a terminal and without --yes it changes nothing);
the swarm stage leaves nodes of another swarm alone unless --force-swarm;
the hosts stage leaves a host in another swarm or with conflicting sysctls
alone unless --force-hosts, and reboots none unless --allow-reboot.`,
		Example: "  provision plan -i inventory/example.yaml\n" +
			"  provision apply -i inventory/example.yaml\n" +
			"  provision apply -i lab.yaml --only validate,render,vms --yes",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, d, err := a.session(outDir)
			if err != nil {
				return err
			}
			defer d.SSH.Close()
			d.Terraform = a.terraformSettings(yes)
			d.ForceSwarm = force
			d.ForceHosts, d.AllowReboot = forceHosts, allowReboot
			p, err := stages.Apply(d).Select(only)
			if err != nil {
				return exitError{2, err}
			}
			return p.Run(cmd.Context(), env)
		},
	}
	cmd.Flags().StringSliceVar(&only, "only", nil, "run only these stages (comma-separated), in runbook order")
	cmd.Flags().BoolVar(&yes, "yes", false, "apply the VM plan shown without asking")
	cmd.Flags().BoolVar(&force, "force-swarm", false, "make nodes that are in another swarm leave it and join this one")
	cmd.Flags().BoolVar(&forceHosts, "force-hosts", false, "hosts stage: prepare hosts in another swarm and overwrite sysctls set by hand")
	cmd.Flags().BoolVar(&allowReboot, "allow-reboot", false, "hosts stage: reboot a host whose kernel command line must change")
	cmd.Flags().StringVarP(&outDir, "output-dir", "o", "", "where seeds are rendered (default <state-dir>/cloud-init)")
	return cmd
}
