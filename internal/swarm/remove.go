package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// RemovalPlan is what removing some nodes does to the swarm: which nodes
// leave, in which order (workers, then managers, the leader last), and the
// managers that stay.
type RemovalPlan struct {
	Leave     []Row    // the targets that are swarm nodes, in removal order
	Absent    []string // targets the swarm does not know
	Managers  int      // managers in the swarm now
	Remaining []Row    // managers that stay
	// Dissolve: every node of the swarm goes, so no quorum is needed
	// after; the last manager leaves with force.
	Dissolve bool
}

// Quorum is the number of managers a swarm of n managers needs to accept
// changes: a strict majority.
func Quorum(n int) int { return n/2 + 1 }

// PlanRemoval plans removing the nodes named in targets from a swarm whose
// nodes are rows (as the managers list them).
func PlanRemoval(rs []Row, targets []string) RemovalPlan {
	want := map[string]bool{}
	for _, t := range targets {
		want[t] = true
	}
	var p RemovalPlan
	found := map[string]bool{}
	var workers, managers []Row
	for _, r := range rs {
		if r.Role == Manager {
			p.Managers++
		}
		if !want[r.Name] {
			if r.Role == Manager {
				p.Remaining = append(p.Remaining, r)
			}
			continue
		}
		found[r.Name] = true
		if r.Role == Manager {
			managers = append(managers, r)
		} else {
			workers = append(workers, r)
		}
	}
	byName := func(s []Row) {
		sort.SliceStable(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	}
	byName(workers)
	byName(managers)
	// The leader goes last: every demotion before it is one leadership
	// change fewer.
	sort.SliceStable(managers, func(i, j int) bool { return managers[i].Manager != "leader" && managers[j].Manager == "leader" })
	p.Leave = append(workers, managers...)
	for _, t := range targets {
		if !found[t] {
			p.Absent = append(p.Absent, t)
		}
	}
	p.Dissolve = len(rs) > 0 && len(p.Leave) == len(rs)
	return p
}

// reachable reports whether a manager row can take part in Raft.
func reachable(r Row) bool {
	return r.Manager == "leader" || r.Manager == string(swarm.ReachabilityReachable)
}

// ReachableRemaining are the managers that stay and are reachable.
func (p RemovalPlan) ReachableRemaining() []string {
	var out []string
	for _, r := range p.Remaining {
		if reachable(r) {
			out = append(out, r.Name)
		}
	}
	return out
}

// LeavingManagers are the managers among the nodes that leave.
func (p RemovalPlan) LeavingManagers() []string {
	var out []string
	for _, r := range p.Leave {
		if r.Role == Manager {
			out = append(out, r.Name)
		}
	}
	return out
}

// QuorumError is nil when the swarm keeps its quorum of managers, that is
// when the reachable managers that stay are a majority of today's
// managers (or the whole swarm goes). Otherwise it says how many managers
// remain and which are reachable.
func (p RemovalPlan) QuorumError() error {
	leaving := p.LeavingManagers()
	if len(leaving) == 0 || p.Dissolve {
		return nil
	}
	reach := p.ReachableRemaining()
	if len(reach) >= Quorum(p.Managers) {
		return nil
	}
	which := "none reachable"
	if len(reach) > 0 {
		which = "reachable: " + strings.Join(reach, ", ")
	}
	return fmt.Errorf("destroying manager %s leaves %d of %d managers (%s): quorum lost, the swarm needs %d reachable managers to accept any change; add managers first, destroy fewer at a time, or pass --force",
		strings.Join(leaving, ", "), len(p.Remaining), p.Managers, which, Quorum(p.Managers))
}

// RemoveOptions tune Remove.
type RemoveOptions struct {
	// DrainTimeout bounds the wait for a drained node's tasks to move
	// (default 2 minutes); after it the node leaves anyway, with a warning.
	DrainTimeout time.Duration
	// StepTimeout bounds the waits for a demotion and for a node that left
	// to be seen down (default 1 minute).
	StepTimeout time.Duration
	Poll        time.Duration // default 500 ms
	Counter     *Counter
	Progress    func(format string, args ...any)
	Log         *slog.Logger
}

func (o *RemoveOptions) setDefaults() {
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 2 * time.Minute
	}
	if o.StepTimeout == 0 {
		o.StepTimeout = time.Minute
	}
	if o.Poll == 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Remove takes the plan's nodes out of the swarm, one at a time: drain
// (and wait, bounded, until its tasks moved), demote a manager, `swarm
// leave` on the node's own engine, then remove its entry through control,
// a manager that stays. When the plan dissolves the swarm, control is the
// last node of the plan and it leaves with force at the end. members are
// the nodes' own engines by name (a node that cannot be reached is removed
// from the swarm's list without leaving, with a warning). It goes on after
// a node fails and returns every failure.
func Remove(ctx context.Context, control *Member, p RemovalPlan, members map[string]*Member, opts RemoveOptions) error {
	opts.setDefaults()
	var errs []error
	for i, r := range p.Leave {
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
		if p.Dissolve && i == len(p.Leave)-1 {
			opts.Progress("%s leaves: the last node, the swarm is dissolved", r.Name)
			if err := leave(ctx, control, true); err != nil {
				errs = append(errs, fmt.Errorf("leave %s: %w", r.Name, err))
			}
			continue
		}
		if err := removeOne(ctx, control.Engine, r, members[r.Name], opts); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

func removeOne(ctx context.Context, ctl *client.Client, r Row, m *Member, opts RemoveOptions) error {
	opts.Progress("draining %s", r.Name)
	if err := setAvailability(ctx, ctl, r.ID, swarm.NodeAvailabilityDrain); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if n, err := tasksGone(ctx, ctl, r.ID, opts); err != nil {
		return fmt.Errorf("wait for its tasks to move: %w", err)
	} else if !n {
		opts.Log.Warn(fmt.Sprintf("%s still has tasks after %s of draining; it leaves anyway", r.Name, opts.DrainTimeout))
	}
	if r.Role == Manager {
		opts.Progress("demoting manager %s", r.Name)
		if err := setNode(ctx, ctl, r.ID, func(s *swarm.NodeSpec) bool {
			if s.Role == swarm.NodeRoleWorker {
				return false
			}
			s.Role = swarm.NodeRoleWorker
			return true
		}); err != nil {
			return fmt.Errorf("demote: %w", err)
		}
		ok, err := waitFor(ctx, opts, opts.StepTimeout, func(ctx context.Context) (bool, error) {
			n, _, err := ctl.NodeInspectWithRaw(ctx, r.ID)
			return n.ManagerStatus == nil, err
		})
		if err != nil {
			return fmt.Errorf("demote: %w", err)
		}
		if !ok {
			return fmt.Errorf("demote: still a manager after %s", opts.StepTimeout)
		}
	}
	left := false
	if m != nil {
		opts.Progress("%s leaves the swarm", r.Name)
		err := m.Open(ctx, opts.Counter)
		if err == nil {
			err = leave(ctx, m, false)
		}
		if err != nil {
			opts.Log.Warn(fmt.Sprintf("%s could not leave the swarm itself (%v); its entry is removed with force", r.Name, err))
		} else {
			left = true
		}
	}
	if left {
		// A node that left is seen down after its next missed heartbeat.
		if _, err := waitFor(ctx, opts, opts.StepTimeout, func(ctx context.Context) (bool, error) {
			n, _, err := ctl.NodeInspectWithRaw(ctx, r.ID)
			if errdefs.IsNotFound(err) {
				return true, nil
			}
			return n.Status.State == swarm.NodeStateDown, err
		}); err != nil {
			return fmt.Errorf("wait until it is down: %w", err)
		}
	}
	opts.Progress("removing %s from the swarm's nodes", r.Name)
	err := ctl.NodeRemove(ctx, r.ID, swarm.NodeRemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("node rm: %w", err)
	}
	return nil
}

// leave makes a node's engine leave its swarm; an engine in no swarm is
// left as it is.
func leave(ctx context.Context, m *Member, force bool) error {
	info, err := m.Engine.Info(ctx)
	if err != nil {
		return fmt.Errorf("docker info: %w", m.engineErr(err))
	}
	if info.Swarm.LocalNodeState == swarm.LocalNodeStateInactive {
		return nil
	}
	if err := m.Engine.SwarmLeave(ctx, force); err != nil {
		return fmt.Errorf("swarm leave: %w", m.engineErr(err))
	}
	return nil
}

// setNode changes a node's spec with change (which reports whether it
// changed anything), retrying when the node's version moved meanwhile.
func setNode(ctx context.Context, ctl *client.Client, id string, change func(*swarm.NodeSpec) bool) error {
	var err error
	for range 5 {
		var n swarm.Node
		n, _, err = ctl.NodeInspectWithRaw(ctx, id)
		if err != nil {
			return err
		}
		if !change(&n.Spec) {
			return nil
		}
		err = ctl.NodeUpdate(ctx, id, n.Version, n.Spec)
		if err == nil || !strings.Contains(err.Error(), "update out of sequence") {
			return err
		}
	}
	return err
}

// setAvailability sets a node's availability; no update when it has it.
func setAvailability(ctx context.Context, ctl *client.Client, id string, a swarm.NodeAvailability) error {
	return setNode(ctx, ctl, id, func(s *swarm.NodeSpec) bool {
		if s.Availability == a {
			return false
		}
		s.Availability = a
		return true
	})
}

// tasksGone waits, at most opts.DrainTimeout, until no task is meant to
// run on a drained node; false when some still are.
func tasksGone(ctx context.Context, ctl *client.Client, id string, opts RemoveOptions) (bool, error) {
	return waitFor(ctx, opts, opts.DrainTimeout, func(ctx context.Context) (bool, error) {
		ts, err := ctl.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("node", id), filters.Arg("desired-state", "running"))})
		return len(ts) == 0, err
	})
}

// waitFor polls cond until it holds (true), the timeout passes (false, no
// error) or cond or ctx fails.
func waitFor(ctx context.Context, opts RemoveOptions, timeout time.Duration, cond func(ctx context.Context) (bool, error)) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond(ctx)
		if err != nil || ok {
			return ok, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		t := time.NewTimer(opts.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
	}
}
