package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/ui"
	"github.com/fhlab/provision/internal/vms"
)

// terraformSettings are the vms stage's settings from the tool's settings;
// yes is --yes.
func (a *app) terraformSettings(yes bool) stages.Terraform {
	return stages.Terraform{
		Path:    a.settings.Terraform,
		Mirror:  a.settings.TFMirror,
		KeyPath: a.settings.SSHKey,
		Prompt: ui.Prompt{
			In: a.streams.In, Out: a.status, TTY: ui.IsTerminal(a.streams.In), Yes: yes,
		},
	}
}

const vmsLong = `Create, change or destroy the lab's Proxmox VMs with Terraform and the
telmate/proxmox provider (exactly 3.0.2-rc07).

provision writes the root module (the readable .tf files of terraform/ in the
source tree) into <state-dir>/terraform with a generated
vms.auto.tfvars.json: one proxmox_vm_qemu per VM of the inventory, a full
clone of proxmox.template with the template's hardware declared again (the
provider deletes undeclared disks), an explicit VMID, a static address and
cloud-init from snippets. Terraform's state and plans live there too.

  plan     show what would change, per VM; nothing is changed
  apply    check the SSH key for the Proxmox hosts (--ssh-key, else the
           inventory's), plan, show, ask, upload each VM's user-data,
           network-config and meta-data to the snippets directory of its
           Proxmox host over SFTP (as proxmox.sshUser, host keys trusted on
           first use into <state-dir>/known_hosts, a changed key refused;
           only changed files, atomically; a host that refuses or does not
           answer fails after two quick attempts), then apply exactly the
           plan shown and print what was applied ("15 created, 0 changed,
           0 destroyed"). Outputs (VMIDs, addresses) go into the state file.
  destroy  show the destroy plan, ask, destroy exactly that

Replacements are called out loudly with what forces them: a VM whose
cloud-init changed is recreated (force_recreate_on_change_of), its disk lost.
In-place changes the provider can only apply by rebooting the VM (memory,
cores, CPU type and other hardware Proxmox cannot hot-plug, cloud-init
settings; automatic_reboot is on) are marked REBOOTS, with a count.
Terraform's own output goes to the log at debug level.

The API token is read from $PM_API_TOKEN_ID and $PM_API_TOKEN_SECRET (names
set by proxmox.tokenIDEnv/tokenSecretEnv) and given to terraform only in its
environment. terraform is found with --terraform or on PATH; with
--install-terraform the latest release is downloaded (checksum and signature
verified) into <state-dir>/bin. Without internet, point --terraform-mirror
(PROVISION_TERRAFORM_MIRROR) at a provider mirror made with
'terraform providers mirror DIR' on a connected machine.

Without a terminal, apply and destroy need --yes. Ctrl-C interrupts
terraform gracefully (it finishes the calls in flight and releases its lock).`

const vmsExample = `  provision vms plan -i inventory/example.yaml
  provision vms apply -i inventory/example.yaml
  provision vms apply -i lab.yaml --yes --terraform-mirror /srv/tf-mirror
  provision vms destroy -i lab.yaml`

func (a *app) vmsCommand() *cobra.Command {
	var yes, install, noSnippets, allAtOnce bool
	var nodes []string
	var parallel int
	cmd := &cobra.Command{
		Use:     "vms plan|apply|destroy -i FILE",
		Short:   "Create the Proxmox VMs with Terraform (snippets over SFTP)",
		Long:    vmsLong,
		Example: vmsExample,
	}
	stage := func() (*stages.VMs, func(), error) {
		d, err := a.deps()
		if err != nil {
			return nil, nil, err
		}
		tf := a.terraformSettings(yes)
		tf.Install, tf.NoSnippets = install, noSnippets
		tf.Settings = vms.Settings{Parallel: parallel}
		return &stages.VMs{Renderer: d.Renderer, TF: tf, SSH: d.SSH, Counter: d.Engines, AllAtOnce: allAtOnce}, d.SSH.Close, nil
	}
	run := func(what string) func(cmd *cobra.Command, _ []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			if parallel < 1 {
				return exitError{2, fmt.Errorf("--parallel %d: the provider must work on at least 1 VM at a time (default %d)", parallel, vms.DefaultParallel)}
			}
			inv, err := a.loadInventory()
			if err != nil {
				return err
			}
			env, err := a.env(inv, "")
			if err != nil {
				return err
			}
			s, done, err := stage()
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			switch what {
			case "plan":
				return s.ShowPlan(ctx, env, false)
			default:
				var err error
				if what == "destroy" {
					if err := vmNodes(inv, nodes); err != nil {
						return exitError{2, err}
					}
					err = s.Destroy(ctx, env, nodes)
				} else {
					err = s.Apply(ctx, env)
				}
				if serr := env.State.Save(env.StateDir, env.Now()); serr != nil && err == nil {
					err = serr
				}
				return err
			}
		}
	}
	plan := &cobra.Command{
		Use: "plan -i FILE", Short: "Show what terraform would change, per VM",
		Long:    "Write the module and its variables, run terraform init and plan, and print one line per VM. Nothing is changed on Proxmox.",
		Example: "  provision vms plan -i inventory/example.yaml",
		Args:    cobra.NoArgs, RunE: run("plan"),
	}
	apply := &cobra.Command{
		Use: "apply -i FILE", Short: "Upload snippets and apply the plan shown, after confirmation",
		Long: `Plan, print the plan per VM, ask (or take --yes), upload the snippets over
SFTP, apply exactly that plan and record the outputs in the state file.

VMs that are swarm nodes and that the plan restarts (the provider reboots a
running VM whose memory or cores changed) or replaces go one failure domain
at a time: the workers of one Proxmox host, then each manager alone (never
below quorum): drained, changed (terraform -target), waited for until
Ready, then active again. --all-at-once applies the plan as terraform
would.`,
		Example: "  provision vms apply -i inventory/example.yaml\n  provision vms apply -i lab.yaml --yes",
		Args:    cobra.NoArgs, RunE: run("apply"),
	}
	destroy := &cobra.Command{
		Use: "destroy -i FILE", Short: "Destroy the lab's VMs, after showing the destroy plan",
		Long: `Plan the destruction of every VM terraform manages (with --node, of
those VMs only: terraform -target), print it, ask (or take --yes), apply
exactly that plan, then remove the VMs' snippets from the Proxmox hosts
over SFTP (--no-snippets leaves them).

This is the low-level path: the VMs' nodes are not taken out of the swarm
first. 'provision destroy --node NAME' drains them, keeps the managers'
quorum, then comes here.`,
		Example: "  provision vms destroy -i inventory/local.yaml --yes\n  provision vms destroy -i lab.yaml --node vm-6",
		Args:    cobra.NoArgs, RunE: run("destroy"),
	}
	for _, c := range []*cobra.Command{apply, destroy} {
		c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask: apply the plan shown (needed without a terminal)")
	}
	apply.Flags().BoolVar(&noSnippets, "no-snippets", false, "do not upload snippets (they are already on a shared snippets storage)")
	apply.Flags().BoolVar(&allAtOnce, "all-at-once", false, "restart or replace VMs that are swarm nodes all at once, as terraform does (default: one failure domain at a time, drained first)")
	destroy.Flags().StringArrayVar(&nodes, "node", nil, "destroy only this VM (repeat for more); none: every VM of the lab")
	destroy.Flags().BoolVar(&noSnippets, "no-snippets", false, "leave the snippets on the Proxmox hosts (a shared snippets storage others manage)")
	for _, c := range []*cobra.Command{plan, apply, destroy} {
		c.Flags().BoolVar(&install, "install-terraform", false, "download the latest terraform release when none is found")
		c.Flags().IntVar(&parallel, "parallel", vms.DefaultParallel, "VMs the provider works on at once (pm_parallel)")
	}
	cmd.AddCommand(plan, apply, destroy)
	return cmd
}

// vmNodes checks that every name is a VM of the inventory.
func vmNodes(inv *inventory.Inventory, names []string) error {
	for _, name := range names {
		n := inv.Node(name)
		switch {
		case n == nil:
			return fmt.Errorf("--node %s: not a node of the inventory %s (see provision inventory -i %s)", name, inv.File, inv.File)
		case n.Kind != inventory.KindVM:
			return fmt.Errorf("--node %s: a %s, not a VM: provision destroy --node %s takes it out of the swarm", name, n.Kind, name)
		}
	}
	return nil
}
