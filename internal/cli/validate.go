package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
)

func (a *app) validateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate -i FILE",
		Short: "Check an inventory and report every problem at once",
		Long: `Check an inventory: its schema (unknown fields are errors), duplicate
hostnames, addresses, MACs, serials and VMIDs, addresses outside the network,
swarm address pools that overlap the LAN, each other or Docker's bridge pools,
the manager count and spread, and secrets written into the file.

Every problem is printed with its file, line and field. Nothing is changed.
On success it prints what the inventory describes and the capacity of the
swarm address pool (networks x addresses), so you can choose the mask length.`,
		Example:     "  provision validate -i inventory/example.yaml",
		Annotations: map[string]string{noLogFile: "yes"},
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := a.loadInventory()
			if err != nil {
				return err
			}
			w := a.streams.Out
			fmt.Fprintf(w, "%s: valid\n", inv.File)
			fmt.Fprintf(w, "  lab %s: %s\n", inv.Lab.Metadata.Name, describe(inv))
			for _, c := range inv.PoolCapacity() {
				fmt.Fprintf(w, "  swarm address pool %s\n", c)
			}
			return nil
		},
	}
}

// describe summarises the nodes of an inventory in one line.
func describe(inv *inventory.Inventory) string {
	var vms, pis, byo int
	hosts, racks := map[string]bool{}, map[string]bool{}
	var managers []string
	for _, n := range inv.Nodes {
		switch n.Kind {
		case inventory.KindVM:
			vms++
			hosts[n.Host] = true
		case inventory.KindPi:
			pis++
			racks[n.Rack] = true
		case inventory.KindHost:
			byo++
		}
		if n.Role == inventory.Manager {
			managers = append(managers, fmt.Sprintf("%s (%s)", n.Name, n.FailureDomain()))
		}
	}
	sort.Strings(managers)
	existing := ""
	if byo > 0 {
		existing = fmt.Sprintf(", %d existing hosts", byo)
	}
	return fmt.Sprintf("%d nodes: %d VMs on %d Proxmox hosts, %d Pis in %d racks%s; managers %s",
		len(inv.Nodes), vms, len(hosts), pis, len(racks), existing, strings.Join(managers, ", "))
}
