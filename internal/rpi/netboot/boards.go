package netboot

import (
	"fmt"
	"net"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
)

// Naming is how a Pi's TFTP directory is named (the EEPROM's TFTP_PREFIX).
type Naming string

// The namings the bootloader knows: 0 serial (default), 2 MAC.
const (
	BySerial Naming = "serial" // 9ffefdef/
	ByMAC    Naming = "mac"    // dc-a6-32-01-36-c2/
)

// Boards maps the Pis of the inventory by TFTP directory and by MAC.
type Boards struct {
	Naming Naming
	byDir  map[string]*inventory.Node
	byMAC  map[string]*inventory.Node
}

// NewBoards indexes the Pis of inv. Every Pi is known (so an SD-booted Pi
// asking is recognised and refused by name); a netbooted Pi without the
// serial or MAC its directory needs is an error naming it.
func NewBoards(inv *inventory.Inventory, naming Naming) (*Boards, error) {
	if naming != BySerial && naming != ByMAC {
		return nil, fmt.Errorf("netboot: TFTP directories by %q: use serial or mac", naming)
	}
	b := &Boards{Naming: naming, byDir: map[string]*inventory.Node{}, byMAC: map[string]*inventory.Node{}}
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		if n.Kind != inventory.KindPi {
			continue
		}
		if n.MAC != "" {
			hw, err := net.ParseMAC(n.MAC)
			if err != nil {
				return nil, fmt.Errorf("netboot: %s: MAC %q: %w", n.Name, n.MAC, err)
			}
			b.byMAC[hw.String()] = n
		}
		dir := b.dirOf(n)
		if dir == "" {
			if n.Boot == inventory.BootNetboot {
				return nil, fmt.Errorf("netboot: %s (rack %s, slot %d) has no %s in its rack's CSV: its TFTP directory needs it", n.Name, n.Rack, n.Slot, naming)
			}
			continue
		}
		if other, dup := b.byDir[dir]; dup {
			return nil, fmt.Errorf("netboot: %s and %s both have TFTP directory %s/", other.Name, n.Name, dir)
		}
		b.byDir[dir] = n
	}
	return b, nil
}

// dirOf is node n's TFTP directory name, or "".
func (b *Boards) dirOf(n *inventory.Node) string {
	if b.Naming == ByMAC {
		hw, err := net.ParseMAC(n.MAC)
		if err != nil {
			return ""
		}
		return strings.ReplaceAll(hw.String(), ":", "-")
	}
	return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(n.Serial), "10000000"))
}

// Dir is node n's TFTP directory name ("" when it has none).
func (b *Boards) Dir(n *inventory.Node) string { return b.dirOf(n) }

// ByDir finds the Pi whose directory is dir (any case).
func (b *Boards) ByDir(dir string) (*inventory.Node, bool) {
	n, ok := b.byDir[strings.ToLower(dir)]
	return n, ok
}

// ByMAC finds the Pi with MAC hw.
func (b *Boards) ByMAC(hw net.HardwareAddr) (*inventory.Node, bool) {
	n, ok := b.byMAC[hw.String()]
	return n, ok
}

// Netbooted lists the Pis that boot over the network, in inventory order.
func (b *Boards) Netbooted(inv *inventory.Inventory) []*inventory.Node {
	var out []*inventory.Node
	for i := range inv.Nodes {
		if n := &inv.Nodes[i]; n.Kind == inventory.KindPi && n.Boot == inventory.BootNetboot {
			out = append(out, n)
		}
	}
	return out
}
