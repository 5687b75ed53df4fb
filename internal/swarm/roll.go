package swarm

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// RollOptions tune RollStep: the drain as Remove does it (DrainTimeout,
// Poll, Counter, Progress, Log; StepTimeout is not used), and how long a
// changed node may take to be back.
type RollOptions struct {
	RemoveOptions
	// ReadyTimeout bounds the wait for a changed node to be back: its own
	// engine in the swarm and Ready in the managers' list (default 5
	// minutes).
	ReadyTimeout time.Duration
}

func (o *RollOptions) setDefaults() {
	o.RemoveOptions.setDefaults()
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
}

// RollStep takes the nodes of one step of a rolling change out of service
// and back, through control (a manager that is not in the step): each is
// drained and its tasks waited for (bounded), then change runs (it
// restarts or replaces them), then each is waited for until its own engine
// is in the swarm again and control lists it Ready (a manager also
// reachable), and gets back the availability it had. A step that takes a
// manager refuses to start when the managers that stay up, reachable,
// would be no majority. The step's name (a Proxmox host, a manager) heads
// its progress lines.
func RollStep(ctx context.Context, name string, control *Member, step []*Member, change func(ctx context.Context) error, opts RollOptions) error {
	opts.setDefaults()
	ctl := control.Engine
	nodes, err := ctl.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return fmt.Errorf("roll %s: node ls on %s: %w", name, control.Name, control.engineErr(err))
	}
	names := make([]string, len(step))
	ids := make([]string, len(step))
	was := make([]swarm.NodeAvailability, len(step))
	for i, m := range step {
		names[i] = m.Name
		n, ok := current(nodes, m.Name)
		if !ok {
			return fmt.Errorf("roll %s: %s is not in the swarm (run provision swarm first)", name, m.Name)
		}
		ids[i], was[i] = n.ID, n.Spec.Availability
	}
	who := strings.Join(names, ", ")
	if err := rollQuorum(nodes, names); err != nil {
		return fmt.Errorf("roll %s: %w", name, err)
	}

	opts.Progress("roll %s: draining %s", name, who)
	for i := range step {
		if err := setAvailability(ctx, ctl, ids[i], swarm.NodeAvailabilityDrain); err != nil {
			return fmt.Errorf("roll %s: drain %s: %w", name, names[i], err)
		}
	}
	for i := range step {
		moved, err := tasksGone(ctx, ctl, ids[i], opts.RemoveOptions)
		if err != nil {
			return fmt.Errorf("roll %s: wait for %s's tasks to move: %w", name, names[i], err)
		}
		if !moved {
			opts.Log.Warn(fmt.Sprintf("roll %s: %s still has tasks after %s of draining; it is changed anyway", name, names[i], opts.DrainTimeout))
		}
	}

	opts.Progress("roll %s: changing %s", name, who)
	if err := change(ctx); err != nil {
		return fmt.Errorf("roll %s: %w (the nodes stay drained: provision apply again, or docker node update --availability active)", name, err)
	}

	be := "are"
	if len(step) == 1 {
		be = "is"
	}
	opts.Progress("roll %s: waiting until %s %s Ready", name, who, be)
	for i, m := range step {
		var why string
		back, err := waitFor(ctx, opts.RemoveOptions, opts.ReadyTimeout, func(ctx context.Context) (bool, error) {
			why = notBack(ctx, ctl, ids[i], m, opts.Counter)
			return why == "", nil
		})
		if err != nil {
			return fmt.Errorf("roll %s: wait for %s: %w", name, m.Name, err)
		}
		if !back {
			return fmt.Errorf("roll %s: %s not back in the swarm %s after its change (%s); it stays drained", name, m.Name, opts.ReadyTimeout, why)
		}
	}

	opts.Progress("roll %s: %s Ready; availability back to %s", name, who, availabilities(was))
	for i := range step {
		if err := setAvailability(ctx, ctl, ids[i], was[i]); err != nil {
			return fmt.Errorf("roll %s: set %s %s: %w", name, names[i], was[i], err)
		}
	}
	return nil
}

// notBack says why a changed node is not back yet, "" when it is: its own
// engine answers (a fresh connection: the old one ended with the node) and
// is in the swarm, and ctl lists it Ready (a manager also reachable).
func notBack(ctx context.Context, ctl *client.Client, id string, m *Member, c *Counter) string {
	m.Close()
	if err := m.Open(ctx, c); err != nil {
		return "its engine: " + err.Error()
	}
	info, err := m.Engine.Info(ctx)
	switch {
	case err != nil:
		return "its engine: " + m.engineErr(err).Error()
	case info.Swarm.LocalNodeState != swarm.LocalNodeStateActive:
		return "its engine's swarm state: " + string(info.Swarm.LocalNodeState)
	}
	n, _, err := ctl.NodeInspectWithRaw(ctx, id)
	switch {
	case err != nil:
		return "the managers' view: " + err.Error()
	case n.Status.State != swarm.NodeStateReady:
		return "the managers see it " + string(n.Status.State)
	case n.ManagerStatus != nil && n.ManagerStatus.Reachability != swarm.ReachabilityReachable:
		return "the managers see it " + string(n.ManagerStatus.Reachability)
	}
	return ""
}

// rollQuorum refuses a step that takes down managers when those that stay
// reachable are no majority of all managers: the count of a removal plan
// (PlanRemoval) of the step's nodes.
func rollQuorum(nodes []swarm.Node, step []string) error {
	p := PlanRemoval(RowsOf(nodes, nil), step)
	down, staying := p.LeavingManagers(), len(p.ReachableRemaining())
	if len(down) == 0 || staying >= Quorum(p.Managers) {
		return nil
	}
	return fmt.Errorf("changing manager %s leaves %d of %d managers up and reachable: quorum needs %d; nothing was changed (bring the other managers back first)",
		strings.Join(down, ", "), staying, p.Managers, Quorum(p.Managers))
}

// current is the swarm's entry for hostname: the one not down when a
// re-created node left a stale entry behind.
func current(nodes []swarm.Node, hostname string) (swarm.Node, bool) {
	var found *swarm.Node
	for i, n := range nodes {
		if n.Description.Hostname != hostname {
			continue
		}
		if found == nil || found.Status.State == swarm.NodeStateDown {
			found = &nodes[i]
		}
	}
	if found == nil {
		return swarm.Node{}, false
	}
	return *found, true
}

func availabilities(as []swarm.NodeAvailability) string {
	seen := map[swarm.NodeAvailability]bool{}
	var out []string
	for _, a := range as {
		if !seen[a] {
			seen[a] = true
			out = append(out, string(a))
		}
	}
	return strings.Join(out, ", ")
}
