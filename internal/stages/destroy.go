package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/rpi/netboot/nbdroot"
	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/ui"
)

// Destroy takes nodes out of the lab: drained, demoted (managers), leave
// the swarm and are removed from it, their VMs destroyed through
// Terraform, their state entries removed. It never loses the managers'
// quorum unless Force.
type Destroy struct {
	SSH     *Connector
	Nodes   []string // the nodes to destroy; none: every node of the inventory
	Force   bool     // go on even when the managers lose quorum
	KeepVMs bool     // leave the VMs alone
	Prompt  ui.Prompt
	// VMs destroys the lab's VMs with terraform (every VM it manages); nil
	// when there is no Proxmox section.
	VMs     *VMs
	Options swarm.RemoveOptions
}

// DestroyPlan is what a destroy would do.
type DestroyPlan struct {
	Targets  []string
	Swarm    swarm.RemovalPlan
	NoSwarm  bool     // no manager of the inventory is in a swarm
	VMs      []string // VMs terraform destroys
	VMsLeft  []string // VMs among the targets that this destroy leaves (see VMNote)
	VMNote   string
	State    []string // nodes whose state entries are removed
	Roots    []string // netbooted Pis whose NBD root (overlay) is removed
	QuorumOK error    // nil, or why the managers lose quorum
}

// Empty reports whether the plan changes nothing.
func (p DestroyPlan) Empty() bool {
	return len(p.Swarm.Leave) == 0 && len(p.VMs) == 0 && len(p.State) == 0 && len(p.Roots) == 0
}

// Write prints the plan.
func (p DestroyPlan) Write(w io.Writer, lab string) {
	fmt.Fprintf(w, "destroy plan for lab %s (%d nodes):\n", lab, len(p.Targets))
	switch {
	case p.NoSwarm:
		fmt.Fprintln(w, "  swarm:  no manager of the inventory is in a swarm: nothing to leave")
	case len(p.Swarm.Leave) == 0:
		fmt.Fprintln(w, "  swarm:  none of these nodes is in the swarm")
	default:
		for _, r := range p.Swarm.Leave {
			steps := "drained, leaves, removed"
			if r.Role == swarm.Manager {
				steps = "drained, demoted, leaves, removed"
			}
			fmt.Fprintf(w, "  swarm:  %s (%s) %s\n", r.Name, r.Role, steps)
		}
		if p.Swarm.Dissolve {
			fmt.Fprintln(w, "  swarm:  every node goes: the swarm is dissolved (the last manager leaves with force)")
		} else if len(p.Swarm.LeavingManagers()) > 0 {
			reach := p.Swarm.ReachableRemaining()
			fmt.Fprintf(w, "  swarm:  managers %d now, %d after (reachable: %s), quorum %d\n", p.Swarm.Managers, len(p.Swarm.Remaining), orDash(strings.Join(reach, ", ")), swarm.Quorum(p.Swarm.Managers))
		}
	}
	if len(p.Swarm.Absent) > 0 && !p.NoSwarm {
		fmt.Fprintf(w, "  swarm:  not in the swarm: %s\n", strings.Join(p.Swarm.Absent, ", "))
	}
	if len(p.VMs) > 0 {
		fmt.Fprintf(w, "  vms:    terraform destroys %s (its plan follows), and their snippets leave the Proxmox hosts\n", strings.Join(p.VMs, ", "))
	}
	if p.VMNote != "" {
		fmt.Fprintf(w, "  vms:    %s\n", p.VMNote)
	}
	if len(p.Roots) > 0 {
		fmt.Fprintf(w, "  roots:  the netboot roots (overlays) of %s removed\n", strings.Join(p.Roots, ", "))
	}
	if len(p.State) > 0 {
		fmt.Fprintf(w, "  state:  entries of %s removed\n", strings.Join(p.State, ", "))
	}
}

// targets are the nodes to destroy, checked against the inventory.
func (d Destroy) targets(inv *inventory.Inventory) ([]string, error) {
	if len(d.Nodes) == 0 {
		out := make([]string, len(inv.Nodes))
		for i, n := range inv.Nodes {
			out[i] = n.Name
		}
		return out, nil
	}
	var unknown []string
	for _, name := range d.Nodes {
		if inv.Node(name) == nil {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("--node %s: not a node of the inventory %s (see provision inventory -i %s)", strings.Join(unknown, ", "), inv.File, inv.File)
	}
	out := slices.Clone(d.Nodes)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Plan reads the swarm through the managers and the state file and says
// what Run would do.
func (d Destroy) Plan(ctx context.Context, env *pipeline.Env, ms []*swarm.Member) (DestroyPlan, *swarm.Member, error) {
	inv := env.Inventory
	targets, err := d.targets(inv)
	if err != nil {
		return DestroyPlan{}, nil, err
	}
	p := DestroyPlan{Targets: targets}
	var managers []*swarm.Member
	names := map[string]bool{}
	for _, m := range ms {
		names[m.Name] = true
		if m.Role == swarm.Manager {
			managers = append(managers, m)
		}
	}
	env.Status.Progress("reading the swarm through %d managers", len(managers))
	rows, via, err := swarm.Inspect(ctx, managers, names, d.Options.Counter)
	switch {
	case err == nil:
		p.Swarm = swarm.PlanRemoval(rows, targets)
	case ctx.Err() != nil:
		return p, nil, ctx.Err()
	case errors.Is(err, swarm.ErrNoSwarm) && !anyReachFailure(err):
		p.NoSwarm = true
		p.Swarm.Absent = targets
	default:
		return p, nil, fmt.Errorf("read the swarm (needed to keep its quorum): %w", err)
	}
	p.QuorumOK = p.Swarm.QuorumError()

	all := len(d.Nodes) == 0
	var vmTargets []string
	for _, name := range targets {
		if n := inv.Node(name); n != nil && n.Kind == inventory.KindVM && env.State.Terraform["vms."+name+".id"] != "" {
			vmTargets = append(vmTargets, name)
		}
	}
	switch {
	case len(vmTargets) == 0:
	case d.KeepVMs:
		p.VMsLeft, p.VMNote = vmTargets, "kept (--keep-vms): "+strings.Join(vmTargets, ", ")
	case d.VMs == nil:
		p.VMsLeft, p.VMNote = vmTargets, "kept: the inventory has no proxmox section to destroy them with"
	case all:
		p.VMs = vmTargets
	default:
		p.VMs = vmTargets
		p.VMNote = "they stay in the inventory: the next apply creates them again (remove them from " + inv.File + " to keep them gone)"
	}
	for _, name := range targets {
		if _, ok := env.State.Nodes[name]; ok {
			p.State = append(p.State, name)
		}
		if _, err := os.Stat(filepath.Join(NetbootRootsDir(env.StateDir), name+".qcow2")); err == nil {
			p.Roots = append(p.Roots, name)
		}
	}
	return p, via, nil
}

// anyReachFailure reports whether some manager could not be asked at all
// (as opposed to answering that it is in no swarm).
func anyReachFailure(err error) bool {
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) {
		return false
	}
	for _, e := range j.Unwrap() {
		if !errors.Is(e, swarm.ErrNoSwarm) && !errors.Is(e, swarm.ErrNotManager) {
			return true
		}
	}
	return false
}

// Run shows the plan, checks the quorum, asks, and destroys.
func (d Destroy) Run(ctx context.Context, env *pipeline.Env) error {
	ms := members(env, d.SSH)
	defer closeMembers(ms)
	p, via, err := d.Plan(ctx, env, ms)
	if err != nil {
		return err
	}
	lab := env.Inventory.Lab.Metadata.Name
	if p.Empty() {
		fmt.Fprintf(env.Out, "nothing to do: %s not in the swarm, without VMs or state entries\n", plural(len(p.Targets), "node is", "nodes are"))
		return nil
	}
	p.Write(env.Out, lab)
	if p.QuorumOK != nil {
		if !d.Force {
			return fmt.Errorf("%w; nothing was changed", p.QuorumOK)
		}
		env.Log.Warn("--force: " + p.QuorumOK.Error())
	}
	if err := d.Prompt.Confirm(ctx, fmt.Sprintf("DESTROY %s of lab %s?", plural(len(p.Targets), "node", "nodes"), lab)); err != nil {
		return err
	}
	byName := map[string]*swarm.Member{}
	for _, m := range ms {
		byName[m.Name] = m
	}
	var errs []error
	if len(p.Swarm.Leave) > 0 {
		control := via
		if p.Swarm.Dissolve {
			control = byName[p.Swarm.Leave[len(p.Swarm.Leave)-1].Name]
		} else if slices.ContainsFunc(p.Swarm.Leave, func(r swarm.Row) bool { return r.Name == via.Name }) {
			control = nil
			for _, name := range p.Swarm.ReachableRemaining() {
				if m := byName[name]; m != nil && m.Open(ctx, d.Options.Counter) == nil {
					control = m
					break
				}
			}
		}
		if control == nil {
			return errors.New("no manager that stays could be reached to remove the nodes through; nothing was changed")
		}
		if err := control.Open(ctx, d.Options.Counter); err != nil {
			return fmt.Errorf("reach %s: %w", control.Name, err)
		}
		opts := d.Options
		opts.Progress, opts.Log = env.Status.Progress, env.Log
		if err := swarm.Remove(ctx, control, p.Swarm, byName, opts); err != nil {
			errs = append(errs, err)
		}
	}
	if len(p.VMs) > 0 && len(errs) == 0 {
		env.Status.Progress("destroying the VMs with terraform")
		var names []string // every VM of the lab
		if len(d.Nodes) > 0 {
			names = p.VMs
		}
		if err := d.VMs.Destroy(ctx, env, names); err != nil {
			errs = append(errs, fmt.Errorf("destroy VMs: %w", err))
		}
	}
	if len(errs) == 0 {
		for _, name := range p.Roots {
			if _, err := nbdroot.Remove(ctx, NetbootRootsDir(env.StateDir), name, ""); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		d.forget(env, p)
		fmt.Fprintf(env.Out, "destroyed: %s left the swarm, %s destroyed, %s removed, %s removed from the state\n",
			plural(len(p.Swarm.Leave), "node", "nodes"), plural(len(p.VMs), "VM", "VMs"), plural(len(p.Roots), "netboot root", "netboot roots"), plural(len(p.State), "entry", "entries"))
	}
	return errors.Join(errs...)
}

// forget removes the destroyed nodes' entries from the state.
func (d Destroy) forget(env *pipeline.Env, p DestroyPlan) {
	st := env.State
	for _, name := range p.State {
		delete(st.Nodes, name)
	}
	if st.Swarm == nil {
		return
	}
	if p.Swarm.Dissolve || p.NoSwarm && len(d.Nodes) == 0 {
		st.Swarm = nil
		return
	}
	st.Swarm.Managers = slices.DeleteFunc(st.Swarm.Managers, func(name string) bool { return slices.Contains(p.Targets, name) })
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
