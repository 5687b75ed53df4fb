package discover

import (
	"net/netip"

	"github.com/fhlab/provision/internal/inventory"
)

// NodeNames maps each inventory node's address to its name, for
// Options.Nodes. Nodes without a parsable address are left out.
func NodeNames(nodes []inventory.Node) map[netip.Addr]string {
	m := make(map[netip.Addr]string, len(nodes))
	for _, n := range nodes {
		if a, err := netip.ParseAddr(n.IP); err == nil {
			m[a.Unmap()] = n.Name
		}
	}
	return m
}
