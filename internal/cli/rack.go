package cli

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/state"
)

func (a *app) rackCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rack add NAME --count N [--csv FILE]",
		Short: "Add a rack of Pis to the inventory (then apply touches only its nodes)",
	}
	cmd.AddCommand(a.rackAddCommand())
	return cmd
}

type rackAddFlags struct {
	count                     int
	csv, boot, ipStart, image string
	role, join, pattern       string
	labels                    map[string]string
	dryRun                    bool
}

func (a *app) rackAddCommand() *cobra.Command {
	var f rackAddFlags
	cmd := &cobra.Command{
		Use:   "add NAME --count N [--csv FILE] [--boot sd|netboot] [--ip-start IP]",
		Short: "Add a rack of Pis to the inventory file, checked, changing nothing else in it",
		Long: `Append one rack to the inventory's pis.racks, as one line after the last
rack; every other byte of the file (comments, order) stays as it was. The
inventory with the rack is checked in full first (names, addresses inside
network.cidr and not taken, the CSV's serials and MACs, the image): any
problem is printed with its file, line and field, and the file is not
changed.

The rack's CSV (slot,serial,mac; required for netboot racks) is referred to
relative to the inventory file. --ip-start defaults to the address after
the highest one any node has.

Then 'provision plan' shows the rack's nodes as the only ones to create, and
'provision apply' seeds, boots, joins and labels only them.`,
		Example: `  provision rack add r5 -i lab.yaml --count 36 --csv racks/r5.csv --boot netboot
  provision rack add r6 -i lab.yaml --count 12 --label storage=ssd --dry-run`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usage("rack add: want the rack's NAME, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runRackAdd(args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.count, "count", 0, "how many Pis the rack holds (required)")
	fl.StringVar(&f.csv, "csv", "", "the rack's slot,serial,mac CSV, a path from the current directory, written into the inventory relative to it (required with --boot netboot)")
	fl.StringVar(&f.boot, "boot", inventory.BootSD, "how its Pis boot: sd or netboot")
	fl.StringVar(&f.ipStart, "ip-start", "", "the first Pi's address (default: after the highest address of any node)")
	fl.StringVar(&f.image, "image", "", "the golden image its Pis boot (default: pis.image)")
	fl.StringVar(&f.role, "role", "", "manager or worker (default worker)")
	fl.StringVar(&f.join, "join", "", "push (default) or self")
	fl.StringVar(&f.pattern, "name-pattern", "", "node names (default pi-<rack>-%02d)")
	fl.StringToStringVar(&f.labels, "label", nil, "swarm label KEY=VALUE for its nodes (repeatable)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "check and show the line, change nothing")
	return cmd
}

func (a *app) runRackAdd(name string, f rackAddFlags) error {
	if f.count <= 0 {
		return usage("rack add %s: --count N is required (how many Pis)", name)
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	path := inv.File
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	r := inventory.Rack{Name: name, Count: f.count, Boot: f.boot, IPStart: f.ipStart, Image: f.image, Role: f.role, Join: f.join, Pattern: f.pattern, Labels: f.labels}
	if r.IPStart == "" {
		next, err := nextFreeAddr(inv)
		if err != nil {
			return err
		}
		r.IPStart = next.String()
	}
	if f.csv != "" {
		abs, err := filepath.Abs(f.csv)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return usage("rack add: --csv: %v (a path from the current directory)", err)
		}
		dir, err := filepath.Abs(inv.Dir)
		if err != nil {
			return err
		}
		if r.Nodes, err = filepath.Rel(dir, abs); err != nil {
			return err
		}
	}
	out, line, err := inventory.AddRack(path, data, r)
	if err != nil {
		return err
	}
	added, err := inventory.Parse(path, out, inventory.OSFS{})
	if err != nil {
		fmt.Fprintf(a.status, "rack %s: the inventory with it would be wrong (line %d is where the rack would go); %s is unchanged\n", name, line, path)
		return err
	}
	var nodes []*inventory.Node
	for i := range added.Nodes {
		if n := &added.Nodes[i]; n.Kind == inventory.KindPi && n.Rack == name {
			nodes = append(nodes, n)
		}
	}
	lines := strings.Split(string(out), "\n")
	fmt.Fprintf(a.streams.Out, "%s:%d: %s\n", path, line, strings.TrimSpace(lines[line-1]))
	fmt.Fprintf(a.streams.Out, "rack %s: %d Pis, %s (%s) to %s (%s), boot %s; %d nodes in the lab\n",
		name, len(nodes), nodes[0].Name, nodes[0].IP, nodes[len(nodes)-1].Name, nodes[len(nodes)-1].IP, nodes[0].Boot, len(added.Nodes))
	if f.dryRun {
		fmt.Fprintf(a.streams.Out, "dry run: %s is unchanged\n", path)
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := state.WriteFileAtomic(path, out, st.Mode().Perm()); err != nil {
		return fmt.Errorf("rack add %s: write %s: %w", name, path, err)
	}
	fmt.Fprintf(a.streams.Out, "next: provision plan -i %s   (only the rack's %d nodes change), then provision apply -i %s\n", path, len(nodes), path)
	return nil
}

// nextFreeAddr is the address after the highest one any node has.
func nextFreeAddr(inv *inventory.Inventory) (netip.Addr, error) {
	var top netip.Addr
	for _, n := range inv.Nodes {
		if ip, err := netip.ParseAddr(n.IP); err == nil && (!top.IsValid() || top.Less(ip)) {
			top = ip
		}
	}
	if !top.IsValid() {
		return netip.Addr{}, usage("rack add: no node has an address to start after: pass --ip-start IP")
	}
	return top.Next(), nil
}
