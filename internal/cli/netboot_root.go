package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/rpi/netboot/eeprom"
	"github.com/fhlab/provision/internal/rpi/netboot/nbdroot"
	"github.com/fhlab/provision/internal/rpi/netboot/units"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/state"
)

// netbootRootCommands are the netboot commands for the Pis' network
// roots, their systemd units and their bootloader configuration.
func (a *app) netbootRootCommands() []*cobra.Command {
	return []*cobra.Command{
		a.netbootRootsCommand(),
		a.netbootResetCommand(),
		a.netbootInstallCommand(),
		a.netbootEEPROMCommand(),
	}
}

const netbootRootsAbout = `Every netbooted Pi (a rack with boot: netboot) gets its own root disk: a
qcow2 overlay over the golden image, <state-dir>/netboot/roots/<node>.qcow2,
served over NBD by its own qemu-nbd on its own port (10809 for the first Pi,
then up; a Pi keeps its port). The golden image is only ever read: each Pi's
writes, /var/lib/docker included, stay in its overlay, on an ext4 block
device as Docker's overlay2 needs (it refuses NFS). Overlays survive
reboots; 'provision netboot reset NODE' throws one away.

The Pi's cmdline.txt points at its export:
  nbdroot=SERVER:PORT/NODE root=/dev/nbd0 rootfstype=ext4 rw rootwait
(/dev/nbd0p2 for a golden image with partitions), which needs nbd-client
in the golden image's initramfs (Debian package nbd-client).`

// nbdFlags are the flags that say where the roots are served.
type nbdFlags struct {
	image, bind, host string
	port              int
}

func (f *nbdFlags) add(cmd *cobra.Command, imageHelp string) {
	cmd.Flags().StringVar(&f.image, "image", "", imageHelp)
	cmd.Flags().StringVar(&f.bind, "nbd-bind", "0.0.0.0", "address the NBD exports listen on")
	cmd.Flags().StringVar(&f.host, "nbd-host", "", "address the Pis reach the NBD exports at (default: --nbd-bind, which must then be a specific address)")
	cmd.Flags().IntVar(&f.port, "nbd-port", 10809, "port of the first Pi's export; the next Pi gets the next free port")
}

// netbootRootsOf loads the inventory and its netbooted Pis (or the named
// ones), and sets f.image to the golden image the racks name, as built,
// when --image is not given.
func (a *app) netbootRootsOf(f *nbdFlags, names []string) (*inventory.Inventory, []nbdroot.Node, error) {
	inv, err := a.loadInventory()
	if err != nil {
		return nil, nil, err
	}
	nodes, err := netbootPis(inv, names)
	if err != nil {
		return nil, nil, err
	}
	if f.image == "" {
		var pis []*inventory.Node
		for i := range inv.Nodes {
			if slices.ContainsFunc(nodes, func(n nbdroot.Node) bool { return n.Name == inv.Nodes[i].Name }) {
				pis = append(pis, &inv.Nodes[i])
			}
		}
		built, err := a.builtImage("netboot", inv, racksOf(pis))
		if err != nil {
			return nil, nil, err
		}
		f.image = built.Image
	}
	return inv, nodes, nil
}

// netbootPis are the inventory's netbooted Pis, or the named ones; a name
// that is not a netbooted Pi is a usage error.
func netbootPis(inv *inventory.Inventory, names []string) ([]nbdroot.Node, error) {
	nodes, err := stages.NetbootPis(inv, names)
	if err != nil && len(names) > 0 {
		return nil, exitError{2, err}
	}
	return nodes, err
}

func (a *app) rootsDir(inv *inventory.Inventory) string {
	return stages.NetbootRootsDir(a.stateDir(inv))
}

func (a *app) netbootRootsCommand() *cobra.Command {
	var f nbdFlags
	var size string
	var verify bool
	cmd := &cobra.Command{
		Use:   "roots -i FILE [--image IMG] [NODE...]",
		Short: "Serve the netbooted Pis' root disks over NBD, in the foreground",
		Long: `Serve the root disk of every netbooted Pi (or of the NODEs named) until
stopped, one line per change: an export serving (with its qemu-nbd's pid),
restarted after its qemu-nbd died, refused, or served by another process
(a systemd unit) and left alone. Missing overlays are made first.

` + netbootRootsAbout + `

A Pi whose overlay was made from another golden image, or from this one
before it was rebuilt, is refused (its blocks would no longer match): reset
it. The others are served. 'provision netboot install' runs this as one
systemd unit per Pi (provision-netboot-root@NODE.service).`,
		Example: `  provision netboot roots -i lab.yaml --image golden.img --nbd-host 192.168.10.5
  provision netboot roots -i lab.yaml --image golden.img --nbd-bind 192.168.10.5 pi-r1-07`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			inv, nodes, err := a.netbootRootsOf(&f, args)
			if err != nil {
				return err
			}
			var bytes int64
			if size != "" {
				if bytes, err = parseSize(size); err != nil {
					return exitError{2, fmt.Errorf("--root-size %q: %w", size, err)}
				}
			}
			var mu sync.Mutex
			out := a.streams.Out
			var x *nbdroot.Exports
			x, err = nbdroot.New(ctx, nbdroot.Config{
				Golden: f.image, Dir: a.rootsDir(inv), Nodes: nodes, Bind: f.bind, Host: f.host, BasePort: f.port,
				Size: bytes, VerifyGolden: verify, Log: a.log,
				OnEvent: func(e nbdroot.Event) {
					mu.Lock()
					defer mu.Unlock()
					line := fmt.Sprintf("%-14s %-10s", e.Node, e.State)
					if x != nil {
						if ex, err := x.Export(e.Node); err == nil {
							line += " " + ex.URI()
						}
					}
					if e.PID > 0 {
						line += fmt.Sprintf(" (qemu-nbd pid %d)", e.PID)
					}
					if e.Err != nil {
						line += ": " + e.Err.Error()
					}
					fmt.Fprintln(out, line)
				},
			})
			if err != nil {
				return err
			}
			refused := 0
			for _, s := range x.Status() {
				if s.State == nbdroot.Refused {
					refused++
					fmt.Fprintf(out, "%-14s %-10s %s\n", s.Node, s.State, s.Err)
				}
			}
			serr := x.Start(ctx)
			defer x.Wait()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			serving := 0
			for _, s := range x.Status() {
				if s.State == nbdroot.Serving || s.State == nbdroot.External {
					serving++
				}
			}
			if serving == 0 {
				if serr != nil {
					return serr
				}
				return fmt.Errorf("no root is served (%s refused)", plural(refused, "Pi"))
			}
			if serr != nil {
				a.log.Warn("some roots are not served: " + serr.Error())
			}
			fmt.Fprintf(a.streams.Err, "serving %s of %s from %s; Ctrl-C stops them\n", plural(serving, "root"), plural(len(nodes), "netbooted Pi"), x.Golden().Path)
			<-ctx.Done()
			return nil
		},
	}
	f.add(cmd, "the golden image the overlays are backed by (default: the one the netbooted racks name, as provision image build left it)")
	cmd.Flags().StringVar(&size, "root-size", "", "virtual size of new overlays (e.g. 32G; default the golden image's); the Pi's cloud-init grows its root into it")
	cmd.Flags().BoolVar(&verify, "verify", false, "check the golden image against its .sha256 file first")
	return cmd
}

// parseSize reads 512M, 32G, 1T or a number of bytes.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	case strings.HasSuffix(s, "T"):
		mult = 1 << 40
	}
	num := strings.TrimRight(s, "KMGT")
	var n int64
	if _, err := fmt.Sscanf(num, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != num {
		return 0, errors.New("use a size such as 32G, 512M or a number of bytes")
	}
	return n * mult, nil
}

func (a *app) netbootResetCommand() *cobra.Command {
	var image string
	cmd := &cobra.Command{
		Use:   "reset NODE -i FILE",
		Short: "Throw a netbooted Pi's root overlay away: it boots from the golden image again",
		Long: `Throw away NODE's copy-on-write root (its overlay and everything the Pi
wrote: containers, images, logs, its identity) and make a fresh one over the
golden image, keeping its port. At its next boot the Pi starts as a new node
from the golden image and its seed.

Refused while the root is being served (the Pi may be running on it): stop
its export first, then start it again:
  systemctl stop provision-netboot-root@NODE     (installed units)
  provision netboot reset NODE -i lab.yaml
  systemctl start provision-netboot-root@NODE

The overlay is remade over the golden image it was made from, unless --image
names another (after a rebuild, or to move the Pi to a new image).

` + netbootRootsAbout,
		Example: `  provision netboot reset pi-r1-07 -i lab.yaml
  provision netboot reset pi-r1-07 -i lab.yaml --image .provision/fh-lab/images/debian-pi4/debian-pi4.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			inv, err := a.loadInventory()
			if err != nil {
				return err
			}
			nodes, err := netbootPis(inv, args)
			if err != nil {
				return err
			}
			dir := a.rootsDir(inv)
			if image == "" {
				if image, err = nbdroot.Backing(dir, args[0]); err != nil {
					return err
				}
				if image == "" {
					return exitError{2, fmt.Errorf("%s has no root overlay in %s yet: pass --image to make one", args[0], dir)}
				}
			}
			// The address is not used: reset serves nothing.
			x, err := nbdroot.New(ctx, nbdroot.Config{Golden: image, Dir: dir, Nodes: nodes, Bind: "127.0.0.1", Log: a.log})
			if err != nil {
				return err
			}
			if err := x.Reset(ctx, args[0]); err != nil {
				return err
			}
			ex, _ := x.Export(args[0])
			fmt.Fprintf(a.streams.Out, "%s: root reset: %s is a fresh overlay over %s (port %d); the Pi starts from the golden image at its next boot\n",
				args[0], ex.Overlay, x.Golden().Path, ex.Port)
			return nil
		},
	}
	cmd.Flags().StringVar(&image, "image", "", "the golden image for the new overlay (default: the one the old overlay was made from)")
	return cmd
}

func (a *app) netbootInstallCommand() *cobra.Command {
	var f nbdFlags
	var root, binary string
	cmd := &cobra.Command{
		Use:   "install -i FILE [--image IMG] --nbd-host ADDR [--root DIR]",
		Short: "Write the systemd units that run netboot on this server",
		Long: `Write the systemd units that run netboot at boot, under --root (default /):

  ` + units.Serve + `        provision netboot serve: TFTP, proxy-DHCP
  ` + units.RootTmpl + `  one instance per netbooted Pi: provision
                                     netboot roots NODE (its root over NBD)
  ` + units.RootTarget + `     wants every Pi's instance

with the links 'systemctl enable' would make (multi-user.target wants the
service and the target; the target wants each Pi's instance; links of Pis
no longer in the inventory are removed). The units name the inventory, the
image, the state directory and this binary by absolute path; nothing is
started. Then:

  systemctl daemon-reload
  systemctl start ` + units.RootTarget + ` ` + units.Serve + `

Run it again after the inventory changes. One Pi's root is stopped,
reset and started on its own (see provision netboot reset).

` + netbootRootsAbout,
		Example: `  provision netboot install -i /etc/provision/lab.yaml --image /srv/provision/golden.img \
      --state-dir /var/lib/provision/fh-lab --nbd-host 192.168.10.5
  provision netboot install -i lab.yaml --image golden.img --nbd-host 192.168.10.5 --root /tmp/units`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, nodes, err := a.netbootRootsOf(&f, nil)
			if err != nil {
				return err
			}
			if _, err := nbdroot.CheckGolden(cmd.Context(), f.image, false); err != nil {
				return err
			}
			bind, err := netip.ParseAddr(f.bind)
			if err != nil {
				return exitError{2, fmt.Errorf("--nbd-bind %q is not an IP address", f.bind)}
			}
			if f.host == "" && bind.IsUnspecified() {
				return exitError{2, fmt.Errorf("--nbd-host: the Pis need this server's address (it goes into their cmdline.txt); or give --nbd-bind a specific address")}
			}
			if binary == "" {
				if binary, err = os.Executable(); err != nil {
					return err
				}
			}
			c := units.Config{Host: f.host, BasePort: f.port}
			if f.bind != "0.0.0.0" {
				c.Bind = f.bind
			}
			for dst, src := range map[*string]string{&c.Binary: binary, &c.Inventory: inv.File, &c.Image: f.image, &c.StateDir: a.stateDir(inv)} {
				if *dst, err = filepath.Abs(src); err != nil {
					return err
				}
			}
			for _, n := range nodes {
				c.Nodes = append(c.Nodes, n.Name)
			}
			wrote, err := units.Write(root, c)
			if err != nil {
				return err
			}
			for _, p := range wrote {
				fmt.Fprintln(a.streams.Out, p)
			}
			fmt.Fprintf(a.streams.Out, "wrote the netboot units for %s; then: systemctl daemon-reload && systemctl start %s %s\n",
				plural(len(nodes), "netbooted Pi"), units.RootTarget, units.Serve)
			return nil
		},
	}
	f.add(cmd, "the golden image the Pis boot (absolute path in the units; default: the one the netbooted racks name, as built)")
	cmd.Flags().StringVar(&root, "root", "/", "root directory to write etc/systemd/system/ under")
	cmd.Flags().StringVar(&binary, "binary", "", "the provision binary the units run (default: this one)")
	return cmd
}

func (a *app) netbootEEPROMCommand() *cobra.Command {
	var order, prefix, tftpIP, out string
	cmd := &cobra.Command{
		Use:   "eeprom [-o FILE]",
		Short: "Write the Pi 4 bootloader configuration for network boot, and how to apply it",
		Long: `Write the Raspberry Pi 4 bootloader (EEPROM) configuration that makes a Pi
boot from the network, and print how to apply it. Each Pi is configured
once, booted from any SD card with Raspberry Pi OS.

  BOOT_ORDER   which boot modes the Pi tries, read right to left: 1 SD card,
               2 network, 4 USB, f start again. --boot-order takes a name:
                 sd-network      0xf21   SD card, then network (a card still wins)
                 network         0xf2    network only
                 sd-usb-network  0xf241  SD card, USB, network
                 network-sd      0xf12   network first, then the SD card
               or hex digits (0xf21); it must contain 2.
  TFTP_PREFIX  the directory the Pi asks the TFTP server for: 0 its serial
               number (--prefix serial, default: 9ffefdef/start4.elf), 2 its
               MAC address (--prefix mac: dc-a6-32-01-36-c2/start4.elf). The
               inventory's rack CSVs give both.
  TFTP_IP      with --tftp-ip: the TFTP server, whatever DHCP answers.

The file also keeps the bootloader's own default lines, because applying a
configuration replaces all of it.`,
		Example: `  provision netboot eeprom -o bootconf.txt
  provision netboot eeprom --boot-order network --prefix mac --tftp-ip 192.168.10.5 -o -`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{noLogFile: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var c eeprom.Config
			var err error
			if c.BootOrder, err = eeprom.ParseBootOrder(order); err != nil {
				return exitError{2, fmt.Errorf("--boot-order: %w", err)}
			}
			if c.Prefix, err = eeprom.ParsePrefix(prefix); err != nil {
				return exitError{2, fmt.Errorf("--prefix: %w", err)}
			}
			if tftpIP != "" {
				if c.TFTPIP, err = netip.ParseAddr(tftpIP); err != nil || !c.TFTPIP.Is4() {
					return exitError{2, fmt.Errorf("--tftp-ip %q: give the TFTP server's IPv4 address", tftpIP)}
				}
			}
			conf, err := eeprom.Render(c)
			if err != nil {
				return err
			}
			if out == "-" {
				_, err := a.streams.Out.Write(conf)
				return err
			}
			if err := state.WriteFileAtomic(out, conf, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			name := filepath.Base(out)
			fmt.Fprintf(a.streams.Out, `wrote %s (BOOT_ORDER=0x%x, TFTP_PREFIX=%d)

Apply it on each Pi 4, booted from an SD card with Raspberry Pi OS
(package rpi-eeprom), after copying %s to it:
  sudo rpi-eeprom-update                    # is the bootloader current? (-a updates it)
  sudo rpi-eeprom-config --apply %s   # the newest bootloader with this configuration, flashed at the next reboot
  sudo reboot
  rpi-eeprom-config                         # after the reboot: prints the configuration in use
Or make an image for several Pis and flash it on each:
  rpi-eeprom-config --config %s --out pieeprom-netboot.bin PIEEPROM.bin
      # PIEEPROM.bin: the newest /lib/firmware/raspberrypi/bootloader-2711/default/pieeprom-*.bin
  sudo rpi-eeprom-update -d -f pieeprom-netboot.bin
`, out, c.BootOrder, int(c.Prefix), name, name, name)
			return nil
		},
	}
	cmd.Flags().StringVar(&order, "boot-order", "sd-network", "boot modes to try: sd-network, network, sd-usb-network, network-sd, or hex (0xf21)")
	cmd.Flags().StringVar(&prefix, "prefix", "serial", "TFTP directory the Pi asks for: serial or mac")
	cmd.Flags().StringVar(&tftpIP, "tftp-ip", "", "the TFTP server's IPv4 address (TFTP_IP), when DHCP should not decide")
	cmd.Flags().StringVarP(&out, "output", "o", "bootconf.txt", "file to write, - for stdout")
	return cmd
}
