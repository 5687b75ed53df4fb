package swarm

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
)

// converge brings one member's node object to what the inventory says
// (labels merged, role, manager availability) in one versioned update, or
// none when nothing differs. It runs in the member's own pipeline: right
// after the member joined, while others are still joining, or at once for
// a member the swarm already has, from the node object read when the
// swarm was chosen (a re-run reads no node on its own).
func (f *former) converge(ctx context.Context, m *Member) {
	n, ok := f.known[m.facts.nodeID]
	if !ok {
		var err error
		if n, err = f.inspectJoined(ctx, m); err != nil {
			f.fail(m, "update", err)
			return
		}
	}
	if err := f.updateRetrying(ctx, m, n); err != nil {
		f.fail(m, "update", err)
	}
}

// inspectJoined reads the node object of a member that has just joined,
// once it is Ready: the leader may learn of the node a moment after the
// member says it is active, and until it is Ready the node reports its
// status, each report a new version that an update made meanwhile would
// collide with. After JoinTimeout it returns the node as it is. The node
// lists it reads are shared with the other members that have just joined
// (recentNodes): one list a poll for all of them.
func (f *former) inspectJoined(ctx context.Context, m *Member) (swarm.Node, error) {
	poll := min(f.opts.PollInterval, 100*time.Millisecond)
	defer f.lists.wait(m.Name)()
	joined := time.Now()
	deadline := joined.Add(f.opts.JoinTimeout)
	for {
		// A list asked for after the join, and at most a poll old.
		nodes, err := f.recentNodes(ctx, later(joined, time.Now().Add(-poll)))
		if err != nil {
			return swarm.Node{}, fmt.Errorf("inspect the node of %s: %w", m.Name, err)
		}
		n, err := f.newNodeOf(nodes, m)
		if err == nil && (ready(n) || time.Now().After(deadline)) {
			m.facts.nodeID = n.ID
			return n, nil
		}
		if err != nil && time.Now().After(deadline) {
			return swarm.Node{}, fmt.Errorf("inspect the node of %s on %s: %w", m.Name, f.leader.Name, err)
		}
		if err := sleep(ctx, poll); err != nil {
			return swarm.Node{}, err
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// newNodeOf finds the node a member has just joined as in a node list: by
// its node ID when known, else by its hostname among the nodes the swarm
// did not have when it was chosen (the ping that said it joined does not
// say its node ID; /info would, at the cost of two programs run on the
// node).
func (f *former) newNodeOf(nodes []swarm.Node, m *Member) (swarm.Node, error) {
	var found []swarm.Node
	for _, n := range nodes {
		switch {
		case m.facts.nodeID != "":
			if n.ID == m.facts.nodeID {
				return n, nil
			}
		case n.Description.Hostname == m.Name:
			if _, old := f.known[n.ID]; !old {
				found = append(found, n)
			}
		}
	}
	if m.facts.nodeID != "" {
		return swarm.Node{}, cerrdefs.ErrNotFound.WithMessage("no node " + short(m.facts.nodeID))
	}
	if len(found) > 1 { // prefer the one at the member's address
		found = slices.DeleteFunc(found, func(n swarm.Node) bool { return n.Status.Addr != m.Addr })
	}
	if len(found) != 1 {
		return swarm.Node{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("%d new nodes named %s", len(found), m.Name))
	}
	return found[0], nil
}

// updateRetrying updates a node, reading it again when its version moved
// under us (a node that just joined reports its status several times).
func (f *former) updateRetrying(ctx context.Context, m *Member, n swarm.Node) error {
	for attempt := 1; ; attempt++ {
		err := f.update(ctx, m, n)
		if err == nil || !strings.Contains(err.Error(), "update out of sequence") || attempt == 10 {
			return err
		}
		if err := sleep(ctx, min(f.opts.PollInterval, 50*time.Millisecond)); err != nil {
			return err
		}
		if n, _, err = f.leader.Engine.NodeInspectWithRaw(ctx, n.ID); err != nil {
			return f.leader.engineErr(err)
		}
	}
}

// update applies labels (merged: labels set by hand are kept), the role and,
// when configured, drains managers, in one versioned update. A promotion
// waits for the managers' turn: the quorum changes one manager at a time.
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
	promote := false
	switch {
	case spec.Role == role:
	case role == swarm.NodeRoleManager:
		spec.Role = role
		promote = true
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
	if promote {
		f.managerTurn.Lock()
		defer f.managerTurn.Unlock()
	}
	if err := f.leader.Engine.NodeUpdate(ctx, n.ID, n.Version, spec); err != nil {
		return f.leader.engineErr(err)
	}
	f.mu.Lock()
	f.res.Updated = append(f.res.Updated, m.Name)
	f.mu.Unlock()
	return nil
}
