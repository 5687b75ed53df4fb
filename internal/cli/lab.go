package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/remote"
)

func (a *app) labCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Rehearse an inventory on this machine: one emulated node per inventory node",
		Long: `An emulated lab runs every node of an inventory on this machine: a network
namespace on a bridge with the node's address and no default route, its own
hostname, its own dockerd and its own sshd that accepts the inventory's SSH
key. provision swarm and provision verify then work on it exactly as on the
real lab. A node costs about 26 MB.

Needs root and Debian's docker.io, openssh-server, iproute2 and util-linux
(scripts/install-deps.sh installs them).`,
	}
	cmd.AddCommand(a.labUpCommand(), a.labBootCommand(), a.labDownCommand(), a.labStatusCommand())
	return cmd
}

// labFor builds the Lab of an inventory; with createKey, the key is made
// first so the nodes trust it.
func (a *app) labFor(cmd *cobra.Command) (*inventory.Inventory, *lab.Lab, error) {
	inv, err := a.loadInventory()
	if err != nil {
		return nil, nil, err
	}
	if inv.Lab.SSH.CreateKey {
		if _, created, err := remote.EnsureKey(inv.PrivateKeyPath()); err != nil {
			return nil, nil, fmt.Errorf("ssh key: %w", err)
		} else if created {
			a.status.Progress("created SSH key %s (ssh.createKey)", inv.PrivateKeyPath())
			if inv, err = a.loadInventory(); err != nil { // now with its public half
				return nil, nil, err
			}
		}
	}
	cfg, err := lab.ConfigFromInventory(inv)
	if err != nil {
		return nil, nil, err
	}
	cfg.Logger = a.log
	cfg.Concurrency = a.settings.Concurrency
	l, err := lab.New(cfg)
	return inv, l, err
}

// labSession is labFor for commands that change the machine: it checks
// root and tools first and loads the lab's state.
func (a *app) labSession(cmd *cobra.Command) (*inventory.Inventory, *lab.Lab, *pipeline.Env, error) {
	if err := lab.Preflight(); err != nil {
		return nil, nil, nil, err
	}
	inv, l, err := a.labFor(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	env, err := a.env(inv, "")
	return inv, l, env, err
}

func (a *app) labUpCommand() *cobra.Command {
	var limit []string
	var boot string
	cmd := &cobra.Command{
		Use:   "up -i FILE [--limit NODE,...] [--boot sd|netboot]",
		Short: "Start the emulated nodes (idempotent)",
		Long: `Start one emulated node per inventory node (or only those named by --limit).
Nodes already up are checked and kept; a second run changes nothing. Each
node's Docker socket is recorded in the state file, so provision swarm
reaches every node's own engine over SSH.

With --boot netboot, the Pis of netbooted racks are powered on but do not
start: each waits for its network boot, which provision lab boot does for
it (DHCP and TFTP against the netboot server, as its bootloader would).`,
		Example: "  provision lab up -i inventory/local.yaml\n  provision lab up -i inventory/local.yaml --limit mgr-1,mgr-2,mgr-3\n  provision lab up -i inventory/local.yaml --boot netboot",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, l, env, err := a.labSession(cmd)
			if err != nil {
				return err
			}
			nodes, err := selectNodes(inv.Nodes, limit)
			if err != nil {
				return exitError{2, err}
			}
			if boot != "sd" && boot != "netboot" {
				return usage("lab up: --boot %q: use sd or netboot", boot)
			}
			specs, err := lab.SpecsFromInventory(nodes, boot == "netboot")
			if err != nil {
				return err
			}
			done := env.Status.Start(fmt.Sprintf("lab up: %d nodes of %s", len(specs), inv.Lab.Metadata.Name))
			up, err := l.Up(cmd.Context(), specs)
			done(err)
			waiting := 0
			for _, n := range up {
				if n.WaitingForBoot() {
					waiting++
				}
				f := env.State.Node(n.Name)
				f.IP, f.DockerSocket, f.SSHHostKey = n.IP.String(), n.DockerSocket, n.HostKeyFingerprint
			}
			if serr := env.State.Save(env.StateDir, a.now()); serr != nil && err == nil {
				err = serr
			}
			if err != nil {
				return err
			}
			// Nothing can be pulled here: the smoke-test image is built from
			// this machine's busybox and loaded into every node.
			done = env.Status.Start("load " + lab.BusyboxImageTag + " into every node")
			var img bytes.Buffer
			if _, err = lab.WriteBusyboxImage(&img, lab.ImageOptions{}); err == nil {
				err = l.LoadImage(cmd.Context(), img.Bytes())
			}
			done(err)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "lab %s is up: %d nodes on bridge %s (state in %s)\n", l.Prefix(), len(up), l.Bridge(), l.StateDir())
			if waiting > 0 {
				fmt.Fprintf(a.streams.Out, "%d Pis wait for their network boot: serve them (provision apply, or provision netboot serve) and run provision lab boot -i %s\n", waiting, inv.File)
			}
			fmt.Fprintf(a.streams.Out, "next: provision swarm -i %s   (tear down: provision lab down -i %s)\n", inv.File, inv.File)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&limit, "limit", nil, "bring up only these nodes (comma-separated names)")
	cmd.Flags().StringVar(&boot, "boot", "sd", "sd: every node starts now; netboot: the netbooted racks' Pis wait for provision lab boot")
	return cmd
}

func selectNodes(nodes []inventory.Node, limit []string) ([]inventory.Node, error) {
	if len(limit) == 0 {
		return nodes, nil
	}
	byName := map[string]inventory.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	var out []inventory.Node
	for _, name := range limit {
		n, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("--limit %s: no such node in the inventory", name)
		}
		out = append(out, n)
	}
	return out, nil
}

func (a *app) labDownCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "down -i FILE",
		Short: "Remove every namespace, process, mount and file the emulated lab made",
		Long: `Stop and remove the emulated lab: its daemons and containers, mounts,
namespaces, veths, bridge, cgroups, the SSH user if the lab created it, and
its state directory. Works after a crash or a partial up; a lab that is not
up is no error. The swarm facts of the lab are dropped from the state file.`,
		Example: "  provision lab down -i inventory/local.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, l, env, err := a.labSession(cmd)
			if err != nil {
				return err
			}
			done := env.Status.Start("lab down: " + l.Prefix())
			err = l.Down(cmd.Context())
			done(err)
			if err != nil {
				return err
			}
			// The emulated nodes and their swarm are gone; so are their host
			// keys, which a new lab will replace.
			env.State.Swarm = nil
			env.State.Nodes = nil
			os.Remove(filepath.Join(env.StateDir, "known_hosts"))
			if err := env.State.Save(env.StateDir, a.now()); err != nil {
				return err
			}
			fmt.Fprintf(a.streams.Out, "lab %s is down\n", l.Prefix())
			return nil
		},
	}
}

func (a *app) labStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "status -i FILE",
		Short:   "Show each emulated node: namespace, dockerd, sshd, swarm state",
		Example: "  provision lab status -i inventory/local.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, l, err := a.labFor(cmd)
			if err != nil {
				return err
			}
			start := time.Now()
			sts, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			if len(sts) == 0 {
				fmt.Fprintf(a.streams.Out, "lab %s is not up\n", l.Prefix())
				return nil
			}
			tw := tabwriter.NewWriter(a.streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tIP\tNETNS\tDOCKERD\tSSHD\tSWARM\tHOSTNAME")
			up := 0
			for _, s := range sts {
				if s.Up() {
					up++
				}
				if s.Netboot && !s.Booted {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.IP, yes(s.Netns), "-", "-", "-", "(waiting for its network boot)")
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.IP, yes(s.Netns), yes(s.Docker), yes(s.SSH), dashIfEmpty(s.Swarm), dashIfEmpty(s.Hostname))
			}
			tw.Flush()
			fmt.Fprintf(a.streams.Out, "%d of %d nodes up (checked in %s)\n", up, len(sts), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
}

func yes(b bool) string {
	if b {
		return "ok"
	}
	return "DOWN"
}

func dashIfEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
