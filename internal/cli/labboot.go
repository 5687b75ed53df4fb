package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/rpi/netboot"
)

func (a *app) labBootCommand() *cobra.Command {
	var (
		image, prefix  string
		timeout, retry time.Duration
	)
	cmd := &cobra.Command{
		Use:   "boot -i FILE [--image IMG] [--timeout 10m]",
		Short: "Network-boot the emulated Pis as their bootloaders would, then start them",
		Long: `Each Pi that lab up --boot netboot left waiting does, from its own network
namespace, what a Raspberry Pi 4 bootloader does on power-on: a DHCP DISCOVER
with the Pi's vendor class, MAC and GUID, repeated until a netboot server
answers with option 43 "Raspberry Pi Boot" (and, with full DHCP, the Pi's own
address); then its boot files over TFTP from its directory, in the order its
config.txt makes the bootloader read them. Every file must be the golden
image's byte for byte, except cmdline.txt and config.txt, which must be the
Pi's (its address and name in ip=). Then the Pi's system starts with the
hostname its cmdline.txt gives: dockerd and sshd, as lab up starts the others.

Run it while the Pis are served: by provision apply (its pi-boot stage) or
provision netboot serve. A Pi whose answer or files are wrong fails at once;
one that gets no answer keeps asking until --timeout.`,
		Example: "  provision lab up -i inventory/local.yaml --boot netboot\n" +
			"  provision netboot serve -i inventory/local.yaml --image IMG --listen 198.51.100.1 --dhcp proxy &\n" +
			"  provision lab boot -i inventory/local.yaml --image IMG",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The Pis' sockets and host keys are in the state file since
			// lab up; this command writes nothing there (apply may be
			// running beside it).
			inv, l, _, err := a.labSession(cmd)
			if err != nil {
				return err
			}
			boards, err := netboot.NewBoards(inv, netboot.Naming(prefix))
			if err != nil {
				return usage("lab boot: %v", err)
			}
			pis, err := lab.PiBoots(inv, boards)
			if err != nil {
				return err
			}
			if len(pis) == 0 {
				return usage("lab boot: no rack of %s boots from the network (pis.racks[].boot: netboot)", inv.File)
			}
			imgPath, err := a.netbootImage("lab boot", inv, image, boards.Netbooted(inv))
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			golden, err := netboot.OpenBootImage(ctx, imgPath, os.TempDir())
			if err != nil {
				return fmt.Errorf("lab boot: %w", err)
			}
			defer golden.Close()
			var busybox bytes.Buffer
			if _, err := lab.WriteBusyboxImage(&busybox, lab.ImageOptions{}); err != nil {
				return err
			}
			start := a.now()
			bootErr := l.Boot(ctx, pis, lab.BootOptions{Golden: golden, Image: busybox.Bytes(), Retry: retry,
				Progress: func(node, step string) { a.status.Progress("%-12s %s", node, step) }})
			sts, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			booted := 0
			for _, st := range sts {
				if st.Netboot && st.Booted && st.Up() {
					booted++
				}
			}
			fmt.Fprintf(a.streams.Out, "%d of %d netbooted Pis run (%s)\n", booted, len(pis), a.now().Sub(start).Round(time.Millisecond))
			if bootErr != nil {
				return fmt.Errorf("lab boot: %w", bootErr)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&image, "image", "", "the golden image the Pis are served (default: the one their racks name, as provision image build made it)")
	fl.StringVar(&prefix, "tftp-prefix", "serial", "the Pis' TFTP directories: serial or mac, as the server serves them")
	fl.DurationVar(&timeout, "timeout", 10*time.Minute, "how long the Pis keep asking for DHCP and booting")
	fl.DurationVar(&retry, "retry", 2*time.Second, "how long a Pi waits for a DHCP answer before it asks again")
	return cmd
}
