package swarm

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/fhlab/provision/internal/par"
)

// reconcile brings every member's node object to what the inventory says
// (labels, role, manager availability), removes stale Down entries left by
// re-created nodes, and waits until every member is Ready. Each update is a
// versioned NodeUpdate made only when something differs.
func (f *former) reconcile(ctx context.Context, reached []*Member) error {
	nodes, err := f.leader.Engine.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes on %s: %w", f.leader.Name, f.leader.engineErr(err))
	}
	wanted := map[string]*Member{}
	names := map[string]bool{}
	for _, m := range f.members {
		names[m.Name] = true
	}
	for _, m := range reached {
		if m.facts.err == nil && m.facts.nodeID != "" {
			wanted[m.facts.nodeID] = m
		}
	}
	// Stale entries: same hostname as a member, not its current node, Down.
	for _, n := range nodes {
		if wanted[n.ID] != nil || !names[n.Description.Hostname] || n.Status.State != swarm.NodeStateDown {
			continue
		}
		if err := f.removeStale(ctx, n); err != nil {
			f.addErr(fmt.Errorf("remove stale entry %s of %s: %w", short(n.ID), n.Description.Hostname, err))
		}
	}
	// Wait for Ready before updating: a node that just joined reports its
	// status a few times, and each report moves its version.
	f.opts.Progress("waiting until %d nodes are Ready", len(wanted))
	nodes, waitErr := f.waitReady(ctx, wanted)
	if waitErr != nil && nodes == nil {
		return waitErr
	}
	f.opts.Progress("applying labels, roles and availability")
	var todo []swarm.Node
	for _, n := range nodes {
		if wanted[n.ID] != nil {
			todo = append(todo, n)
		}
	}
	par.Each(ctx, f.opts.Concurrency, len(todo), func(ctx context.Context, i int) error {
		m := wanted[todo[i].ID]
		if err := f.updateRetrying(ctx, m, todo[i]); err != nil {
			f.fail(m, "update", err)
		}
		return nil
	})
	if len(f.res.Updated) > 0 {
		if nodes, err = f.leader.Engine.NodeList(ctx, swarm.NodeListOptions{}); err != nil {
			return fmt.Errorf("list nodes on %s: %w", f.leader.Name, f.leader.engineErr(err))
		}
	}
	f.res.Rows = rows(nodes, wanted)
	return waitErr
}

// updateRetrying updates a node, reading it again when its version moved
// under us (a node that just joined reports its status several times).
func (f *former) updateRetrying(ctx context.Context, m *Member, n swarm.Node) error {
	for attempt := 1; ; attempt++ {
		err := f.update(ctx, m, n)
		if err == nil || !strings.Contains(err.Error(), "update out of sequence") || attempt == 10 {
			return err
		}
		if n, _, err = f.leader.Engine.NodeInspectWithRaw(ctx, n.ID); err != nil {
			return f.leader.engineErr(err)
		}
	}
}

// update applies labels (merged: labels set by hand are kept), the role and,
// when configured, drains managers.
func (f *former) update(ctx context.Context, m *Member, n swarm.Node) error {
	spec := n.Spec
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	var why []string
	for k, v := range m.Labels {
		if old, ok := labels[k]; !ok || old != v {
			labels[k] = v
			why = append(why, "label "+k)
		}
	}
	role := swarm.NodeRoleWorker
	if m.Role == Manager {
		role = swarm.NodeRoleManager
	}
	switch {
	case spec.Role == role:
	case role == swarm.NodeRoleManager:
		spec.Role = role
		why = append(why, "promote to manager")
	default:
		f.fail(m, "update", fmt.Errorf("it is a manager but the inventory says worker; demote it by hand (docker node demote %s) once quorum allows", m.Name))
	}
	if m.Role == Manager && f.opts.DrainManagers && spec.Availability != swarm.NodeAvailabilityDrain {
		spec.Availability = swarm.NodeAvailabilityDrain
		why = append(why, "drain")
	}
	if len(why) == 0 {
		return nil
	}
	spec.Labels = labels
	sort.Strings(why)
	f.opts.Log.Debug("updating node", "node", m.Name, "changes", strings.Join(why, ", "))
	if err := f.leader.Engine.NodeUpdate(ctx, n.ID, n.Version, spec); err != nil {
		return f.leader.engineErr(err)
	}
	f.mu.Lock()
	f.res.Updated = append(f.res.Updated, m.Name)
	f.mu.Unlock()
	return nil
}

// removeStale removes a Down node entry; a Down manager is demoted first so
// it no longer counts towards the quorum.
func (f *former) removeStale(ctx context.Context, n swarm.Node) error {
	if n.Spec.Role == swarm.NodeRoleManager {
		spec := n.Spec
		spec.Role = swarm.NodeRoleWorker
		f.opts.Log.Debug("demoting stale manager entry", "node", n.Description.Hostname, "id", short(n.ID))
		if err := f.leader.Engine.NodeUpdate(ctx, n.ID, n.Version, spec); err != nil {
			return fmt.Errorf("demote: %w", f.leader.engineErr(err))
		}
	}
	f.opts.Log.Debug("removing stale entry", "node", n.Description.Hostname, "id", short(n.ID))
	if err := f.leader.Engine.NodeRemove(ctx, n.ID, swarm.NodeRemoveOptions{}); err != nil {
		return f.leader.engineErr(err)
	}
	f.mu.Lock()
	f.res.Removed = append(f.res.Removed, n.Description.Hostname+" ("+short(n.ID)+")")
	f.mu.Unlock()
	return nil
}

// waitReady polls the node list until every wanted node is Ready (and every
// manager reachable), and returns the last list.
func (f *former) waitReady(ctx context.Context, wanted map[string]*Member) ([]swarm.Node, error) {
	deadline := time.Now().Add(f.opts.ReadyTimeout)
	for {
		nodes, err := f.leader.Engine.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list nodes on %s: %w", f.leader.Name, f.leader.engineErr(err))
		}
		var waiting []string
		for _, n := range nodes {
			if wanted[n.ID] != nil && !ready(n) {
				waiting = append(waiting, n.Description.Hostname)
			}
		}
		if len(waiting) == 0 {
			return nodes, nil
		}
		if time.Now().After(deadline) {
			sort.Strings(waiting)
			return nodes, fmt.Errorf("not Ready after %s: %s", f.opts.ReadyTimeout, strings.Join(waiting, ", "))
		}
		if err := sleep(ctx, f.opts.PollInterval); err != nil {
			return nil, err
		}
	}
}

func ready(n swarm.Node) bool {
	if n.Status.State != swarm.NodeStateReady {
		return false
	}
	return n.ManagerStatus == nil || n.ManagerStatus.Reachability == swarm.ReachabilityReachable
}
