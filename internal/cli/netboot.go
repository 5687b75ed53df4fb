package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/templates"
)

const netbootLong = `Boot the inventory's netbooted Raspberry Pi 4 racks (boot: netboot) over
the network, straight from the golden image.

serve runs in the foreground (Ctrl-C stops it cleanly):
  - a TFTP server (read requests only; RFC 2347 options, blksize up to
    65464, tsize, timeout, windowsize) that serves each Pi's boot files from
    its serial-number directory (SERIAL/start4.elf, the EEPROM's default
    TFTP_PREFIX=0; or its MAC with --tftp-prefix mac) straight out of the
    golden image's FAT partition, without extracting or mounting it. Each
    Pi's cmdline.txt (NBD root, its address and hostname, the seed pointer)
    and config.txt are generated for it. A serial no node has, an SD-booted
    Pi, an absolute path or one with ".." are refused and logged.
  - DHCP for the Pi bootloader only (a PXE client with a Raspberry Pi MAC or
    a MAC of the inventory): --dhcp proxy (default) answers beside the lab's
    DHCP server with option 43 "Raspberry Pi Boot" and the TFTP address;
    --dhcp full also hands each Pi its inventory address (an isolated boot
    network); --dhcp off leaves DHCP to the lab's server.
  - each Pi's root disk: its qcow2 overlay over the golden image (made when
    missing, under <state-dir>/netboot/roots), served by its own qemu-nbd
    on --nbd-bind from --nbd-port up; cmdline.txt points at it
    (root=/dev/nbd0p2 nbdroot=HOST:PORT/NODE). --roots=false leaves the
    exports to the provision-netboot-root@ units 'netboot install' writes.
One line per Pi and step goes to stderr (DHCP answered, boot file served).
Every event (time, node, serial, MAC, IP) is kept in
<state-dir>/` + netboot.BootsFile + `, which status reads; apply's discover
stage quotes a Pi's last step when it does not answer over SSH.

status prints each Pi's last boot step and when, from those events.`

func (a *app) netbootCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "netboot serve|status",
		Short: "Boot netbooted Pi racks over the network: TFTP and DHCP from the golden image",
		Long:  netbootLong,
		Example: `  provision netboot serve -i lab.yaml
  provision netboot serve -i lab.yaml --image out/debian-pi4.img --listen 192.168.10.5 --dhcp full
  provision netboot status -i lab.yaml`,
	}
	cmd.AddCommand(a.netbootServeCommand(), a.netbootStatusCommand())
	cmd.AddCommand(a.netbootRootCommands()...)
	return cmd
}

type netbootServeFlags struct {
	image, listen, dhcp, dhcpIf, prefix string
	nbdBind, nbdHost                    string
	nbdPort                             int
	roots                               bool
}

func (a *app) netbootServeCommand() *cobra.Command {
	var f netbootServeFlags
	cmd := &cobra.Command{
		Use:   "serve -i FILE [--image IMG] [--listen ADDR] [--dhcp proxy|full|off]",
		Short: "Serve TFTP and DHCP for the netbooted Pis, in the foreground",
		Long:  netbootLong,
		Example: `  provision netboot serve -i lab.yaml
  provision netboot serve -i lab.yaml --listen 10.42.0.1 --dhcp full --dhcp-interface enp2s0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runNetbootServe(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "the golden image (raw) (default: the image the netbooted racks name, as built by `provision image build`)")
	fl.StringVar(&f.listen, "listen", "", "TFTP address IP[:PORT] on the boot network (default: this host's address in network.cidr, port 69)")
	fl.StringVar(&f.dhcp, "dhcp", "proxy", "proxy, full (static leases from the inventory, for an isolated boot network) or off")
	fl.StringVar(&f.dhcpIf, "dhcp-interface", "", "interface DHCP answers on (default: the one holding the --listen address)")
	fl.StringVar(&f.prefix, "tftp-prefix", "serial", "each Pi's TFTP directory: serial (EEPROM TFTP_PREFIX=0) or mac (TFTP_PREFIX=2)")
	fl.BoolVar(&f.roots, "roots", true, "serve each Pi's root (qcow2 overlay over the golden image, one qemu-nbd per Pi) from this process; false when provision-netboot-root@ units serve them")
	fl.StringVar(&f.nbdBind, "nbd-bind", "", "address the NBD exports listen on (default: the --listen address)")
	fl.StringVar(&f.nbdHost, "nbd-host", "", "address the Pis reach their NBD exports at, in their cmdline.txt (default: --nbd-bind)")
	fl.IntVar(&f.nbdPort, "nbd-port", 10809, "port of the first Pi's export; each Pi keeps the port it got first")
	return cmd
}

func (a *app) runNetbootServe(ctx context.Context, f netbootServeFlags) error {
	mode, err := netboot.ParseDHCPMode(f.dhcp)
	if err != nil {
		return usage("netboot serve: --dhcp %v", err)
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	boards, err := netboot.NewBoards(inv, netboot.Naming(f.prefix))
	if err != nil {
		return usage("%v", err)
	}
	pis := boards.Netbooted(inv)
	if len(pis) == 0 {
		return usage("netboot serve: no rack of %s boots from the network (pis.racks[].boot: netboot)", a.settings.Inventory)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		return err
	}
	r = stages.NodesMirror(r, inv, a.stateDir(inv))
	imgPath, err := a.netbootImage("netboot serve", inv, f.image, pis)
	if err != nil {
		return err
	}
	listen, err := stages.NetbootListen(inv, f.listen)
	if err != nil {
		return usage("netboot serve: %v", err)
	}
	nb, err := stages.StartNetboot(ctx, inv, r, stages.NetbootConfig{
		Image: imgPath, Listen: listen, DHCP: mode, DHCPIf: f.dhcpIf, Prefix: netboot.Naming(f.prefix),
		Roots: f.roots, NBDBind: f.nbdBind, NBDHost: f.nbdHost, NBDPort: f.nbdPort,
		StateDir: a.stateDir(inv), Log: a.log, Lines: a.status, Now: a.now,
	})
	if err != nil {
		return fmt.Errorf("netboot serve: %w", err)
	}
	fmt.Fprintf(a.status, "netboot: %s; Ctrl-C stops\n", nb.Summary)
	if err := nb.Wait(); err != nil {
		return fmt.Errorf("netboot serve: %w", err)
	}
	fmt.Fprintln(a.status, "netboot: stopped")
	return nil
}

// netbootImage is the golden image to serve: --image, or the one image the
// netbooted racks name, as built.
func (a *app) netbootImage(what string, inv *inventory.Inventory, flag string, pis []*inventory.Node) (string, error) {
	if flag != "" {
		return flag, nil
	}
	built, err := a.builtImage(what, inv, racksOf(pis))
	if err != nil {
		return "", err
	}
	return built.Image, nil
}

func (a *app) netbootStatusCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:         "status -i FILE [-o text|json]",
		Short:       "Each netbooted Pi's last boot step and when, from the boot events",
		Args:        cobra.NoArgs,
		Annotations: map[string]string{noLogFile: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := a.loadInventory()
			if err != nil {
				return err
			}
			boots, err := netboot.LoadBoots(a.stateDir(inv))
			if err != nil {
				return err
			}
			return a.printNetbootStatus(inv, boots, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

type netbootStatusRow struct {
	Node   string    `json:"node"`
	Serial string    `json:"serial,omitempty"`
	MAC    string    `json:"mac,omitempty"`
	IP     string    `json:"ip,omitempty"`
	Step   string    `json:"lastStep"`
	At     time.Time `json:"at,omitzero"`
}

func (a *app) printNetbootStatus(inv *inventory.Inventory, boots *netboot.Boots, output string) error {
	if output != "text" && output != "json" {
		return usage("netboot status: -o %q: use text or json", output)
	}
	var rows []netbootStatusRow
	for _, n := range inv.Nodes {
		if n.Kind != inventory.KindPi || n.Boot != inventory.BootNetboot {
			continue
		}
		row := netbootStatusRow{Node: n.Name, Serial: n.Serial, MAC: n.MAC, Step: "not seen"}
		if r := boots.Pis[n.Name]; r != nil {
			row.IP, row.Step, row.At = r.IP, r.LastStep, r.LastAt
		}
		rows = append(rows, row)
	}
	for _, key := range sortedKeys(boots.Unknown) {
		r := boots.Unknown[key]
		rows = append(rows, netbootStatusRow{Node: "(not in the inventory)", Serial: r.Serial, MAC: r.MAC, IP: r.IP, Step: r.LastStep, At: r.LastAt})
	}
	if output == "json" {
		enc := json.NewEncoder(a.streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	w := tabwriter.NewWriter(a.streams.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tSERIAL\tMAC\tIP\tLAST STEP\tWHEN")
	for _, r := range rows {
		when := "-"
		if !r.At.IsZero() {
			when = r.At.Local().Format("2006-01-02 15:04:05") + " (" + a.now().Sub(r.At).Round(time.Second).String() + " ago)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, dashIfEmpty(r.Serial), dashIfEmpty(r.MAC), dashIfEmpty(r.IP), r.Step, when)
	}
	return w.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
