package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/stages"
)

func (a *app) applyCommand() *cobra.Command {
	var only []string
	var yes, force, forceHosts, allowReboot, allAtOnce bool
	var outDir, nbListen, nbDHCP, nbDHCPIf, nbImage, verifyImage, from string
	cmd := &cobra.Command{
		Use:   "apply -i FILE",
		Short: "Run the runbook: every stage in order, each changing only what differs",
		Long: `Run every stage of the runbook in order, stopping at the first that fails:

  ` + runbook() + `

Each stage reads what is there first and changes only what differs, so a
re-run after a failure or on a finished lab is safe. Stages that do not
apply to this inventory are skipped with the reason. The state file is
saved after every stage. The run ends with the Engine API calls that
changed something, counted by stage: "none" on a lab that already matched
(verify's own test network and services, removed again, are named apart).

pi-boot serves the netbooted racks (TFTP and DHCP for the Pi bootloader
from the golden image, an NBD root per Pi, as 'provision netboot serve')
while the later stages wait for the Pis and join them, and stops when the
run ends; where provision-netboot.service runs ('provision netboot
install'), it starts nothing. SD-booted racks need their cards written
with 'provision flash'; the stage says which.

Run 'provision plan' first to see what every stage would change. The vms
stage shows Terraform's plan per VM and asks before applying it (--yes
answers for you; without a terminal and without --yes it changes nothing).
When the plan restarts or replaces VMs that are swarm nodes (the provider
reboots every running VM whose memory or cores changed, all at once), they
go one failure domain at a time: the workers of one Proxmox host, then each
manager alone (never below quorum): drained, changed (terraform -target),
waited for until Ready, then active again; --all-at-once keeps terraform's
way. The swarm stage leaves nodes of another swarm alone unless
--force-swarm; the hosts stage leaves a host in another swarm or with
conflicting sysctls alone unless --force-hosts, and reboots none unless
--allow-reboot.

A failed run says how to go on from the stage that failed (--from); where
nodes failed one by one, it lists each with its cause first.`,
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
			d.ForceHosts, d.AllowReboot, d.AllAtOnce = forceHosts, allowReboot, allAtOnce
			mode, err := netboot.ParseDHCPMode(nbDHCP)
			if err != nil {
				return usage("apply: --netboot-dhcp %v", err)
			}
			d.VerifyImage = verifyImage
			d.Netboot = stages.PiBoot{Listen: nbListen, DHCP: mode, DHCPIf: nbDHCPIf, Image: nbImage}
			if from != "" && len(only) > 0 {
				return usage("apply: --from and --only do not go together: --from runs every stage from one on, --only the ones named")
			}
			p, err := stages.Apply(d).Select(only)
			if err != nil {
				return exitError{2, err}
			}
			if p, err = p.From(from); err != nil {
				return exitError{2, err}
			}
			err = p.Run(cmd.Context(), env)
			writeCalls(env.Out, env.Calls)
			var se *pipeline.StageError
			if errors.As(err, &se) && cmd.Context().Err() == nil {
				retry := fmt.Sprintf("provision apply -i %s --from %s", a.settings.Inventory, se.Stage)
				if failed := pipeline.Failed(err); len(failed) > 0 {
					writeFailed(env.Out, se.Stage, failed, retry)
				} else {
					fmt.Fprintf(a.status, "to go on from there once it is fixed: %s\n", retry)
				}
			}
			return err
		},
	}
	cmd.Flags().StringSliceVar(&only, "only", nil, "run only these stages (comma-separated), in runbook order")
	cmd.Flags().StringVar(&from, "from", "", "run the stages from this one on (resume after a failure)")
	cmd.Flags().BoolVar(&yes, "yes", false, "apply the VM plan shown without asking")
	cmd.Flags().BoolVar(&allAtOnce, "all-at-once", false, "vms: restart or replace VMs that are swarm nodes all at once, as terraform does (default: one failure domain at a time, drained first)")
	cmd.Flags().BoolVar(&force, "force-swarm", false, "make nodes that are in another swarm leave it and join this one")
	cmd.Flags().BoolVar(&forceHosts, "force-hosts", false, "hosts stage: prepare hosts in another swarm and overwrite sysctls set by hand")
	cmd.Flags().BoolVar(&allowReboot, "allow-reboot", false, "hosts stage: reboot a host whose kernel command line must change")
	cmd.Flags().StringVarP(&outDir, "output-dir", "o", "", "where seeds are rendered (default <state-dir>/cloud-init)")
	cmd.Flags().StringVar(&nbListen, "netboot-listen", "", "pi-boot: TFTP address IP[:PORT] (default: this host's address in network.cidr, port 69)")
	cmd.Flags().StringVar(&nbDHCP, "netboot-dhcp", "proxy", "pi-boot: DHCP for the Pi bootloader: proxy, full or off")
	cmd.Flags().StringVar(&verifyImage, "verify-image", lab.BusyboxImageTag, "verify: image for the test service (busybox sh and nc), present on the nodes (the emulated lab loads this one)")
	cmd.Flags().StringVar(&nbImage, "netboot-image", "", "pi-boot: the golden image to serve (default: the one provision image build made for the racks)")
	cmd.Flags().StringVar(&nbDHCPIf, "netboot-dhcp-interface", "", "pi-boot: interface DHCP answers on (default: the one holding the TFTP address)")
	return cmd
}

// writeFailed is a failed run's report: each node that failed in the
// stage, its cause, and the command that retries them (every stage changes
// only what differs, so the nodes that already match are left alone).
func writeFailed(w io.Writer, stage string, failed []*pipeline.NodeError, retry string) {
	fmt.Fprintf(w, "\n%s failed on %s:\n", stage, plural(len(failed), "node"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tCAUSE")
	for _, f := range failed {
		fmt.Fprintf(tw, "  %s\t%s\n", f.Node, strings.Join(strings.Fields(f.Error()), " "))
	}
	tw.Flush()
	fmt.Fprintf(w, "to retry just them once fixed: %s (the nodes that already match are left alone)\n", retry)
}
