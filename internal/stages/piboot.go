package stages

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/rpi/netboot/units"
)

// PiBoot gets the Pis booting: the netbooted racks are served (TFTP, DHCP
// for the bootloader, each Pi's NBD root) for the rest of the run, unless
// provision-netboot.service already serves them; the SD-booted racks need
// their cards written by `provision flash`, which this stage says (it
// cannot put a card in a slot).
type PiBoot struct {
	Renderer *render.Renderer
	// Listen, DHCP and DHCPIf are `netboot serve`'s --listen, --dhcp and
	// --dhcp-interface (defaults: this host's address in network.cidr,
	// proxy, the interface holding it).
	Listen string
	DHCP   netboot.DHCPMode
	DHCPIf string
	// Image, when set, is the golden image to serve (apply's
	// --netboot-image: one built elsewhere, by CI say) instead of the one
	// provision image build made for the racks.
	Image string
	// NBDPort is the first Pi's root export port (default 10809).
	NBDPort int
	// UnitActive says whether a systemd unit is active (default: asks
	// systemctl).
	UnitActive func(ctx context.Context, unit string) bool
}

func (PiBoot) Name() string { return "pi-boot" }
func (PiBoot) Title() string {
	return "serve netboot to the netbooted Pis; say which SD cards to flash"
}
func (PiBoot) Skip(env *pipeline.Env) (bool, string) {
	return skipWithout(env, inventory.KindPi, "the inventory has no pis.racks")
}

// piBootRacks splits the Pis by how they boot.
func piBootRacks(inv *inventory.Inventory) (netbooted, sd []*inventory.Node) {
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		switch {
		case n.Kind != inventory.KindPi:
		case n.Boot == inventory.BootNetboot:
			netbooted = append(netbooted, n)
		default:
			sd = append(sd, n)
		}
	}
	return netbooted, sd
}

func (s PiBoot) unitActive(ctx context.Context, unit string) bool {
	if s.UnitActive != nil {
		return s.UnitActive(ctx, unit)
	}
	return exec.CommandContext(ctx, "systemctl", "is-active", "--quiet", unit).Run() == nil
}

// flashHint is the note for the SD-booted racks.
func flashHint(inv *inventory.Inventory, sd []*inventory.Node) string {
	var per []string
	for _, r := range RacksOf(sd) {
		per = append(per, fmt.Sprintf("provision flash -i %s --rack %s --watch", inv.File, r))
	}
	return fmt.Sprintf("%d Pis boot from SD cards (racks %s): this stage does not write cards; write them with %s",
		len(sd), strings.Join(RacksOf(sd), ", "), strings.Join(per, "; "))
}

func (s PiBoot) Plan(ctx context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	var p pipeline.Plan
	inv := env.Inventory
	netbooted, sd := piBootRacks(inv)
	if len(sd) > 0 {
		p.Notes = append(p.Notes, flashHint(inv, sd))
	}
	if len(netbooted) == 0 {
		return p, nil
	}
	if s.unitActive(ctx, units.Serve) {
		p.Notes = append(p.Notes, fmt.Sprintf("%d netbooted Pis: served by %s (provision netboot install); nothing to start", len(netbooted), units.Serve))
		return p, nil
	}
	racks := strings.Join(RacksOf(netbooted), ", ")
	listen, err := NetbootListen(inv, s.Listen)
	if err != nil {
		p.Notes = append(p.Notes, fmt.Sprintf("%d netbooted Pis (racks %s): CANNOT SERVE them: %v", len(netbooted), racks, err))
		return p, nil
	}
	p.Notes = append(p.Notes, fmt.Sprintf("%d netbooted Pis (racks %s): served from the golden image for the rest of this run (TFTP on %s, DHCP %s, an NBD root each); to keep serving them after it: provision netboot install",
		len(netbooted), racks, listen, s.dhcpMode()))
	return p, nil
}

func (s PiBoot) dhcpMode() netboot.DHCPMode {
	if s.DHCP == "" {
		return netboot.DHCPProxy
	}
	return s.DHCP
}

func (s PiBoot) Run(ctx context.Context, env *pipeline.Env) error {
	inv := env.Inventory
	netbooted, sd := piBootRacks(inv)
	if len(sd) > 0 {
		env.Status.Progress("%s", flashHint(inv, sd))
	}
	if len(netbooted) == 0 {
		return nil
	}
	if s.unitActive(ctx, units.Serve) {
		env.Status.Progress("%d netbooted Pis: served by %s", len(netbooted), units.Serve)
		return nil
	}
	img := s.Image
	if img == "" {
		built, err := BuiltImage("netboot", inv, env.StateDir, RacksOf(netbooted))
		if errors.Is(err, ErrChooseImage) {
			return fmt.Errorf("netboot: racks %s boot no single golden image: give them one (pis.image, or the racks' image:) in %s (see images/rpi), or pass --netboot-image IMG", strings.Join(RacksOf(netbooted), ", "), inv.File)
		}
		if err != nil {
			return err
		}
		img = built.Image
	}
	listen, err := NetbootListen(inv, s.Listen)
	if err != nil {
		return fmt.Errorf("netboot: %w", err)
	}
	return env.Background("netboot", func(ctx context.Context) (func() error, error) {
		nb, err := StartNetboot(ctx, inv, s.Renderer, NetbootConfig{
			Image: img, Listen: listen, DHCP: s.dhcpMode(), DHCPIf: s.DHCPIf, Prefix: netboot.BySerial,
			Roots: true, NBDPort: cmp.Or(s.NBDPort, 10809), StateDir: env.StateDir, Log: env.Log, Lines: env.Status, Now: env.Now,
		})
		if err != nil {
			return nil, err
		}
		env.Status.Progress("netboot: %s, until the run ends", nb.Summary)
		return nb.Wait, nil
	})
}
