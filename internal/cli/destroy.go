package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/ui"
)

const destroyLong = `Take nodes out of the lab, or the whole lab with no --node. First the
plan: which nodes leave the swarm, which VMs terraform destroys, which
state entries go. Then, after confirmation (a question on a terminal,
--yes otherwise), for each node, workers first, managers after, the
leader last, one at a time:

  1. drain it in the swarm and wait until its tasks moved to other nodes
     (at most --drain-timeout; then it goes on with a warning);
  2. a manager is demoted first, and waited for until it is a worker;
  3. 'docker swarm leave' on the node itself, through its Engine API over
     SSH (a node that cannot be reached is removed without leaving, with a
     warning);
  4. its entry is removed from the swarm's node list on a manager that
     stays.

The managers' quorum is never lost unless --force: if the reachable
managers that stay are not a majority of today's managers (3 managers,
destroying 2 leaves 1 of 3), destroy refuses, says how many remain and
which are reachable, and changes nothing. Destroying every node of the
swarm dissolves it (the last manager leaves with force) and needs no quorum.

VMs: without --node, every VM terraform manages for the lab is destroyed
through the same path as 'provision vms destroy' (its plan is shown); with
--node, exactly those nodes' VMs (terraform -target). Nodes still in the
inventory are created again by the next apply: remove them from it to keep
them gone. The destroyed VMs' cloud-init snippets are then removed from
their Proxmox hosts. --keep-vms keeps the VMs in every case.

The destroyed nodes' entries leave the state file. A second destroy of the
same nodes finds nothing to do and says so.`

const destroyExample = `  provision destroy -i lab.yaml --node vm-6          # plan, then ask
  provision destroy -i lab.yaml --node vm-6 --yes    # without a terminal
  provision destroy -i lab.yaml --node mgr-3 --node mgr-2 --force --yes
  provision destroy -i lab.yaml --keep-vms --yes     # the whole swarm, VMs kept`

func (a *app) destroyCommand() *cobra.Command {
	var nodes []string
	var yes, force, keepVMs bool
	var drain time.Duration
	cmd := &cobra.Command{
		Use:     "destroy -i FILE [--node NAME ...] [--yes] [--force]",
		Short:   "Drain nodes, make them leave the swarm, destroy their VMs, forget them",
		Long:    destroyLong,
		Example: destroyExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, d, err := a.session("")
			if err != nil {
				return err
			}
			defer d.SSH.Close()
			s := stages.Destroy{
				SSH: d.SSH, Nodes: nodes, Force: force, KeepVMs: keepVMs,
				Prompt:  ui.Prompt{In: a.streams.In, Out: a.status, TTY: ui.IsTerminal(a.streams.In), Yes: yes},
				Options: swarm.RemoveOptions{DrainTimeout: drain, Counter: d.Engines},
			}
			if env.Inventory.Lab.Proxmox != nil {
				tf := a.terraformSettings(yes)
				s.VMs = &stages.VMs{Renderer: d.Renderer, TF: tf}
			}
			err = s.Run(cmd.Context(), env)
			if serr := env.State.Save(env.StateDir, env.Now()); serr != nil && err == nil {
				err = serr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&nodes, "node", nil, "a node to destroy (repeat for more); none: every node of the inventory")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask: destroy what the plan shows (needed without a terminal)")
	f.BoolVar(&force, "force", false, "go on even when the managers that stay are no majority (the swarm loses quorum)")
	f.BoolVar(&keepVMs, "keep-vms", false, "leave the VMs alone: only the swarm and the state file change")
	f.DurationVar(&drain, "drain-timeout", 2*time.Minute, "how long to wait for a drained node's tasks to move")
	return cmd
}
