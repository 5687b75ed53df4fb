package swarm

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/docker/docker/api/types/swarm"
)

// Row is one node of the swarm as the managers see it.
type Row struct {
	Name         string
	ID           string
	Role         string
	State        string
	Availability string
	Manager      string // Leader, Reachable, Unreachable or empty
	Addr         string
	Labels       map[string]string
	Inventory    bool // the node is in the inventory
}

func rows(nodes []swarm.Node, wanted map[string]*Member) []Row {
	out := make([]Row, 0, len(nodes))
	for _, n := range nodes {
		r := Row{
			Name: n.Description.Hostname, ID: n.ID, Role: string(n.Spec.Role),
			State: string(n.Status.State), Availability: string(n.Spec.Availability),
			Addr: n.Status.Addr, Labels: n.Spec.Labels, Inventory: wanted[n.ID] != nil,
		}
		if ms := n.ManagerStatus; ms != nil {
			r.Manager = string(ms.Reachability)
			if ms.Leader {
				r.Manager = "leader"
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Role == "manager") != (out[j].Role == "manager") {
			return out[i].Role == "manager"
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// WriteTable prints the swarm's nodes, managers first.
func WriteTable(w io.Writer, rs []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSTATUS\tAVAILABILITY\tMANAGER\tADDRESS\tID\tLABELS")
	for _, r := range rs {
		name := r.Name
		if !r.Inventory {
			name += " (not in inventory)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, r.Role, r.State, r.Availability, dash(r.Manager), r.Addr, short(r.ID), FormatLabels(r.Labels))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// FormatLabels writes labels as k=v,k=v in key order.
func FormatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + labels[k]
	}
	return strings.Join(keys, ",")
}
