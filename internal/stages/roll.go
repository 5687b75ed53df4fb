package stages

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/terraform"
	"github.com/fhlab/provision/internal/vms"
)

// rollStep is one failure domain of a rolling change: the worker VMs of
// one Proxmox host together, or one manager.
type rollStep struct {
	Name string // "pve2", or the manager's name
	VMs  []string
}

// rollSteps are the VMs of changes that the apply restarts or replaces
// (the provider reboots a running VM whose memory or cores changed, all at
// once) and that are swarm nodes: workers one Proxmox host at a time, then
// the managers one at a time. Empty when no swarm node would go down.
func rollSteps(env *pipeline.Env, changes []vms.Change) []rollStep {
	byHost := map[string][]string{}
	var managers []string
	for _, c := range changes {
		down := c.Action == string(terraform.Replace) || c.Action == string(terraform.Update) && c.Reboot.Needed() && c.Reboot.Automatic
		f := env.State.Nodes[c.VM]
		n := env.Inventory.Node(c.VM)
		if !down || f == nil || f.SwarmNodeID == "" || n == nil {
			continue
		}
		if n.Role == inventory.Manager {
			managers = append(managers, c.VM)
		} else {
			byHost[c.Host] = append(byHost[c.Host], c.VM)
		}
	}
	var steps []rollStep
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		steps = append(steps, rollStep{Name: h, VMs: byHost[h]})
	}
	for _, m := range managers {
		steps = append(steps, rollStep{Name: m, VMs: []string{m}})
	}
	return steps
}

// describeRoll says how the apply will go, for the plan shown before the
// question.
func describeRoll(steps []rollStep) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		if len(s.VMs) == 1 && s.VMs[0] == s.Name {
			parts[i] = "manager " + s.Name
		} else {
			parts[i] = s.Name + " (" + strings.Join(s.VMs, ", ") + ")"
		}
	}
	return "rolling: the swarm nodes the provider restarts or replaces go one failure domain at a time, each drained, changed (terraform -target), waited for until Ready, then active again: " +
		strings.Join(parts, "; then ") + " (--all-at-once: as terraform would, all at once)"
}

// applyRolling applies the shown plan p in parts: every change but the
// rolling ones first, then each step of steps through swarm.RollStep.
// Each part is planned again with -target and must be the shown plan's
// changes for those VMs, or nothing more is applied.
func (s VMs) applyRolling(ctx context.Context, env *pipeline.Env, sess *vms.Session, p *terraform.Plan, steps []rollStep) error {
	if err := soleManager(env.Inventory, steps); err != nil {
		return err
	}
	rolling := map[string]bool{}
	for _, st := range steps {
		for _, vm := range st.VMs {
			rolling[vms.Address(vm)] = true
		}
	}
	var rest []string
	for _, c := range p.Changes {
		if !rolling[c.Address] {
			rest = append(rest, c.Address)
		}
	}
	if len(rest) > 0 {
		env.Status.Progress("applying the changes that restart no swarm node (%d)", len(rest))
		if err := s.applyPart(ctx, sess, p, rest); err != nil {
			return err
		}
	}
	ms := members(env, s.SSH)
	defer closeMembers(ms)
	byName := map[string]*swarm.Member{}
	for _, m := range ms {
		byName[m.Name] = m
	}
	for _, st := range steps {
		step := make([]*swarm.Member, len(st.VMs))
		addrs := make([]string, len(st.VMs))
		for i, vm := range st.VMs {
			step[i], addrs[i] = byName[vm], vms.Address(vm)
		}
		control, err := s.control(ctx, ms, st.VMs)
		if err != nil {
			return fmt.Errorf("roll %s: %w", st.Name, err)
		}
		err = swarm.RollStep(ctx, st.Name, control, step, func(ctx context.Context) error {
			return s.applyPart(ctx, sess, p, addrs)
		}, swarm.RollOptions{RemoveOptions: swarm.RemoveOptions{Counter: s.Counter, Progress: env.Status.Progress, Log: env.Log}})
		if err != nil {
			return err
		}
	}
	return nil
}

// soleManager refuses, before anything is changed, a roll that would take
// down the lab's only manager: no other could drain and watch it.
func soleManager(inv *inventory.Inventory, steps []rollStep) error {
	var managers []string
	for _, n := range inv.Nodes {
		if n.Role == inventory.Manager {
			managers = append(managers, n.Name)
		}
	}
	if len(managers) != 1 {
		return nil
	}
	for _, st := range steps {
		if slices.Contains(st.VMs, managers[0]) {
			return fmt.Errorf("the plan restarts %s, the swarm's only manager: no other manager can drain and watch it, so it cannot be rolled; nothing was applied (pass --all-at-once to apply the plan as terraform would, the swarm's control down while it restarts)", managers[0])
		}
	}
	return nil
}

// control is a manager outside the step that controls the swarm: the
// first to answer of swarm.Inspect.
func (s VMs) control(ctx context.Context, ms []*swarm.Member, step []string) (*swarm.Member, error) {
	var others []*swarm.Member
	for _, m := range ms {
		if m.Role == swarm.Manager && !slices.Contains(step, m.Name) {
			others = append(others, m)
		}
	}
	_, control, err := swarm.Inspect(ctx, others, nil, s.Counter)
	return control, err
}

// applyPart plans the VMs at addrs again (-target) and applies that plan
// when it is exactly the shown plan's changes for them.
func (s VMs) applyPart(ctx context.Context, sess *vms.Session, shown *terraform.Plan, addrs []string) error {
	part, err := sess.Runner.Plan(ctx, false, addrs...)
	if err != nil {
		return err
	}
	want := map[string]terraform.Action{}
	for _, c := range shown.Changes {
		if slices.Contains(addrs, c.Address) {
			want[c.Address] = c.Action
		}
	}
	got := map[string]terraform.Action{}
	for _, c := range part.Changes {
		got[c.Address] = c.Action
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("the plan for %s is no longer the one shown (now %v, shown %v): nothing more applied; run provision apply again to see the new plan", strings.Join(addrs, ", "), got, want)
	}
	return sess.Runner.Apply(ctx, part)
}
