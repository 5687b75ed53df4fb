package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/hosts"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/stages"
)

func (a *app) hostsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hosts plan|apply|bootstrap",
		Short: "Prepare existing machines (hosts:) over SSH: Docker, the host tuning, services",
		Long: `Bring your own node: the inventory's hosts: are machines provision did not
make. Over SSH (host keys trusted on first use into <state-dir>/known_hosts;
a changed key is refused) it reads each host's facts: OS release, arch,
kernel, cgroup version and the memory cgroup, Docker and its version, the
clock offset, sysctls set elsewhere, an existing swarm membership. Then it
plans per host and applies only what differs:

  - the tuning files every VM and Pi gets (the same bytes as user-data's
    write_files), and the lab mirror's apt source and key (mirror:);
  - the Docker package and the rest user-data installs, from that source;
  - systemd and udev reloaded, sysctls set, docker restarted when its
    configuration changed, docker, chrony and the tuning timer enabled;
  - a reboot only when the kernel command line must change, and only with
    --allow-reboot.

Refused, with the reason: systems other than Debian and Ubuntu, no
systemd, cgroup v1 without the memory controller, an arch other than the
inventory's; a host in another swarm and sysctls set by hand that conflict
with the tuning, unless --force. Managers are applied one at a time. A
re-run changes nothing and says so.`,
	}
	cmd.AddCommand(a.hostsRunCommand("plan"), a.hostsRunCommand("apply"), a.hostsBootstrapCommand())
	return cmd
}

func (a *app) hostsRunCommand(verb string) *cobra.Command {
	var force, allowReboot bool
	cmd := &cobra.Command{
		Use:     verb + " -i FILE",
		Short:   map[string]string{"plan": "Read every host's facts and print what apply would change", "apply": "Make every host's changes (managers one at a time)"}[verb],
		Example: "  provision hosts " + verb + " -i lab.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, d, err := a.session("")
			if err != nil {
				return err
			}
			defer d.SSH.Close()
			s := stages.Hosts{Renderer: d.Renderer, SSH: d.SSH, Force: force, AllowReboot: allowReboot}
			if skip, why := s.Skip(env); skip {
				fmt.Fprintln(env.Out, why)
				return nil
			}
			if verb == "apply" {
				return pipeline.Pipeline{Stages: []pipeline.Stage{s}}.Run(cmd.Context(), env)
			}
			return hostsPlan(cmd, env, s)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "prepare hosts that are in another swarm, and overwrite sysctls set by hand")
	cmd.Flags().BoolVar(&allowReboot, "allow-reboot", false, "reboot a host whose kernel command line must change")
	return cmd
}

func hostsPlan(cmd *cobra.Command, env *pipeline.Env, s stages.Hosts) error {
	r, nodes, err := s.Runner(env)
	if err != nil {
		return err
	}
	out := r.Plan(cmd.Context(), nodes)
	for _, o := range out {
		if o.Plan != nil {
			fmt.Fprint(env.Out, o.Plan.String())
		}
	}
	line, err := hosts.Summary(out, false)
	fmt.Fprintln(env.Out, line)
	return err
}

func (a *app) hostsBootstrapCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "bootstrap NAME -i FILE",
		Short: "Print a short script that lets provision reach a host over SSH",
		Long: `For a machine provision cannot log in to yet: print a shell script to run
there as root. It creates the host's sshUser if missing, adds the
inventory's public keys to its authorized_keys and lets it use sudo without
a password; then 'provision hosts apply' does the rest. The script holds no
secret (public keys only).`,
		Example: "  provision hosts bootstrap gpu-1 -i lab.yaml > bootstrap.sh",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := a.loadInventory()
			if err != nil {
				return err
			}
			for _, n := range inv.Nodes {
				if n.Name == args[0] && n.Kind == inventory.KindHost {
					_, err := fmt.Fprint(a.streams.Out, hosts.Bootstrap(n, inv.Lab.SSH.AuthorizedKeys))
					return err
				}
			}
			return exitError{2, fmt.Errorf("%s is not one of the inventory's hosts", args[0])}
		},
	}
}
