package lab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/rpi/netboot"
)

// ConfigFromInventory fills the lab settings an inventory gives: the
// network, the gateway (the host's address on the bridge), the SSH user and
// keys. The prefix defaults to PrefixFor(metadata.name); logger,
// concurrency and timeouts are the caller's to set.
func ConfigFromInventory(inv *inventory.Inventory) (Config, error) {
	lab := inv.Lab
	cidr, err := netip.ParsePrefix(lab.Network.CIDR)
	if err != nil {
		return Config{}, fmt.Errorf("inventory network.cidr %q: %w", lab.Network.CIDR, err)
	}
	gw, err := netip.ParseAddr(lab.Network.Gateway)
	if err != nil {
		return Config{}, fmt.Errorf("inventory network.gateway %q: %w", lab.Network.Gateway, err)
	}
	return Config{
		Prefix:         PrefixFor(lab.Metadata.Name),
		Network:        cidr,
		Gateway:        gw,
		SSHUser:        lab.SSH.User,
		AuthorizedKeys: append([]string(nil), lab.SSH.AuthorizedKeys...),
	}, nil
}

// SpecsFromInventory turns the inventory's nodes (VMs and Pis alike) into
// lab nodes: each becomes a namespace with the node's name and address.
// With netboot, the Pis of netbooted racks are Netboot nodes, which start
// when Boot has netbooted them. Existing hosts (kind host) are machines of
// their own and are left out.
func SpecsFromInventory(nodes []inventory.Node, netboot bool) ([]NodeSpec, error) {
	specs := make([]NodeSpec, 0, len(nodes))
	for _, n := range nodes {
		if n.Kind == inventory.KindHost {
			continue // an existing machine, not emulated here
		}
		ip, err := netip.ParseAddr(n.IP)
		if err != nil {
			return nil, fmt.Errorf("node %s: address %q: %w", n.Name, n.IP, err)
		}
		specs = append(specs, NodeSpec{Name: n.Name, IP: ip, Manager: n.Role == inventory.Manager,
			Netboot: netboot && n.Kind == inventory.KindPi && n.Boot == inventory.BootNetboot})
	}
	return specs, nil
}

// PiBoots are the netbooted Pis of inv as their bootloaders know
// themselves: MAC and TFTP directory (boards' naming).
func PiBoots(inv *inventory.Inventory, boards *netboot.Boards) ([]PiBoot, error) {
	var out []PiBoot
	for _, n := range boards.Netbooted(inv) {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return nil, fmt.Errorf("node %s: mac %q: %w", n.Name, n.MAC, err)
		}
		out = append(out, PiBoot{Name: n.Name, MAC: mac, Dir: boards.Dir(n)})
	}
	return out, nil
}
