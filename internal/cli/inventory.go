package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
)

func (a *app) inventoryCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "inventory -i FILE",
		Short: "Print the nodes an inventory expands to",
		Long: `Print every node the inventory describes after VM groups and Pi racks are
expanded: name, kind, role, address, Proxmox host or rack, and the swarm
labels it will carry. Use --output json for scripts.`,
		Example:     "  provision inventory -i inventory/example.yaml\n  provision inventory -i inventory/example.yaml -o json | jq '.[] | select(.role==\"manager\")'",
		Args:        cobra.NoArgs,
		Annotations: map[string]string{noLogFile: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := a.loadInventory()
			if err != nil {
				return err
			}
			switch output {
			case "table":
				return writeNodeTable(a, inv.Nodes)
			case "json":
				enc := json.NewEncoder(a.streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(inv.Nodes)
			default:
				return exitError{2, fmt.Errorf("--output %q: use table or json", output)}
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func writeNodeTable(a *app, nodes []inventory.Node) error {
	tw := tabwriter.NewWriter(a.streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tROLE\tIP\tHOST/RACK\tLABELS")
	for _, n := range nodes {
		place := n.Host
		if n.Kind == inventory.KindPi {
			place = fmt.Sprintf("%s/%d (%s)", n.Rack, n.Slot, n.Boot)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Kind, n.Role, n.IP, place, formatLabels(n.Labels))
	}
	return tw.Flush()
}

func formatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}
