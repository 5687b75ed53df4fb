package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/swarm"
)

// NodeStatus is one line of `provision status`: what the inventory says
// about a node, how far provision got with it (from the state file) and
// what the swarm says, with the differences.
type NodeStatus struct {
	Name         string            `json:"name"`
	Kind         string            `json:"kind"` // vm, pi, or "" for a swarm node not in the inventory
	Role         string            `json:"role"`
	IP           string            `json:"ip"`
	Boot         string            `json:"boot"`  // vm, sd or netboot
	Stage        string            `json:"stage"` // the last stage recorded in the state file
	Swarm        string            `json:"swarm"` // ready, down, unknown, ... or absent
	Availability string            `json:"availability,omitempty"`
	Manager      string            `json:"manager,omitempty"` // leader, reachable, unreachable
	Labels       map[string]string `json:"labels"`            // the swarm's labels (the inventory's when absent)
	Drift        []string          `json:"drift"`
}

// Swarm states of a node beyond the Engine API's.
const (
	SwarmAbsent  = "absent"  // the swarm does not know the node
	SwarmUnknown = "unknown" // no manager answered
)

// Stages a node reached, as the state file records them.
const (
	StageNone      = "-"
	StageVM        = "vm created" // terraform made its VM
	StageReachable = "reachable"  // its address and SSH host key are known
	StageJoined    = "swarm"      // it joined the swarm
)

// StageReached is the last stage the state file records for a node.
func StageReached(st *state.State, n inventory.Node) string {
	f := st.Nodes[n.Name]
	switch {
	case f != nil && f.SwarmNodeID != "":
		return StageJoined
	case f != nil && f.SSHHostKey != "":
		return StageReachable
	case st.Terraform["vms."+n.Name+".id"] != "":
		return StageVM
	}
	return StageNone
}

// BootMode is how a node boots: vm, or a Pi's sd or netboot.
func BootMode(n inventory.Node) string {
	if n.Kind == inventory.KindVM {
		return "vm"
	}
	return n.Boot
}

// BuildStatus joins the inventory, the state and the swarm's rows (nil
// with swarmKnown false when no manager answered) into one line per node:
// the inventory's nodes in its order, then swarm nodes it does not list.
func BuildStatus(inv *inventory.Inventory, st *state.State, rows []swarm.Row, swarmKnown bool) []NodeStatus {
	byName := map[string]swarm.Row{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	out := make([]NodeStatus, 0, len(inv.Nodes))
	listed := map[string]bool{}
	for _, n := range inv.Nodes {
		listed[n.Name] = true
		s := NodeStatus{Name: n.Name, Kind: n.Kind, Role: n.Role, IP: n.IP, Boot: BootMode(n), Stage: StageReached(st, n), Labels: n.Labels, Drift: []string{}}
		r, ok := byName[n.Name]
		switch {
		case !swarmKnown:
			s.Swarm = SwarmUnknown
		case !ok:
			s.Swarm = SwarmAbsent
			if s.Stage == StageJoined {
				s.Drift = append(s.Drift, "recorded as joined, not in the swarm")
			}
		default:
			s.Swarm, s.Availability, s.Manager, s.Labels = r.State, r.Availability, r.Manager, r.Labels
			s.Drift = append(s.Drift, drift(n, r)...)
		}
		out = append(out, s)
	}
	var extra []NodeStatus
	for _, r := range rows {
		if listed[r.Name] {
			continue
		}
		extra = append(extra, NodeStatus{Name: r.Name, Role: r.Role, IP: r.Addr, Boot: "", Stage: StageNone,
			Swarm: r.State, Availability: r.Availability, Manager: r.Manager, Labels: r.Labels,
			Drift: []string{"not in the inventory"}})
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i].Name < extra[j].Name })
	return append(out, extra...)
}

// drift lists how a swarm node differs from its inventory entry: its role
// and the inventory's labels (labels set by hand besides them are not
// drift: provision keeps them).
func drift(n inventory.Node, r swarm.Row) []string {
	var d []string
	if r.Role != n.Role {
		d = append(d, fmt.Sprintf("role %s, inventory says %s", r.Role, n.Role))
	}
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		got, ok := r.Labels[k]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("label %s missing (inventory: %s)", k, n.Labels[k]))
		case got != n.Labels[k]:
			d = append(d, fmt.Sprintf("label %s=%s, inventory says %s", k, got, n.Labels[k]))
		}
	}
	return d
}

// WriteStatusTable prints the status lines as a table.
func WriteStatusTable(w io.Writer, ss []NodeStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tROLE\tIP\tBOOT\tSTAGE\tSWARM\tAVAILABILITY\tMANAGER\tLABELS\tDRIFT")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, orDash(s.Kind), orDash(s.Role), orDash(s.IP), orDash(s.Boot), s.Stage,
			s.Swarm, orDash(s.Availability), orDash(s.Manager), orDash(swarm.FormatLabels(s.Labels)), orDash(strings.Join(s.Drift, "; ")))
	}
	return tw.Flush()
}

// WriteStatusJSON prints the status lines as one JSON document.
func WriteStatusJSON(w io.Writer, ss []NodeStatus) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Nodes []NodeStatus `json:"nodes"`
	}{ss})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Status reads the swarm through the inventory's managers (over SSH) and
// returns every node's status. A swarm that no manager can answer for is
// not an error: the nodes' swarm state is unknown and the cause is
// returned as a warning.
func Status(ctx context.Context, env *pipeline.Env, ssh *Connector) ([]NodeStatus, error) {
	var managers []*swarm.Member
	names := map[string]bool{}
	for _, m := range members(env, ssh) {
		names[m.Name] = true
		if m.Role == inventory.Manager {
			managers = append(managers, m)
		}
	}
	defer closeMembers(managers)
	rows, _, err := swarm.Inspect(ctx, managers, names, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, swarm.ErrNoSwarm) {
			// Nobody formed a swarm (or every manager is gone): every
			// node is absent, and the managers' answers say why.
			if errors.Is(err, swarm.ErrNotManager) {
				return BuildStatus(env.Inventory, env.State, nil, true), err
			}
		}
		return BuildStatus(env.Inventory, env.State, nil, false), err
	}
	return BuildStatus(env.Inventory, env.State, rows, true), nil
}
