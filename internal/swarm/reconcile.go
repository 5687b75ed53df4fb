package swarm

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// reconcile finishes a run once every node's own pipeline is done: it
// removes stale Down entries left by re-created nodes, waits until every
// member is Ready, and reads the swarm's table. Labels, roles and
// availability were applied per node, right after each one joined.
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
	removed := false
	for _, n := range nodes {
		if wanted[n.ID] != nil || !names[n.Description.Hostname] || n.Status.State != swarm.NodeStateDown {
			continue
		}
		removed = true
		if err := f.removeStale(ctx, n); err != nil {
			f.addErr(fmt.Errorf("remove stale entry %s of %s: %w", short(n.ID), n.Description.Hostname, err))
		}
	}
	if !removed && allReady(nodes, wanted) {
		f.res.Rows = rows(nodes, wanted)
		return nil
	}
	f.opts.Progress("waiting until %d nodes are Ready", len(wanted))
	nodes, waitErr := f.waitReady(ctx, wanted)
	if nodes == nil {
		return waitErr
	}
	f.res.Rows = rows(nodes, wanted)
	return waitErr
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
		if allReady(nodes, wanted) {
			return nodes, nil
		}
		if time.Now().After(deadline) {
			var waiting []string
			for _, n := range nodes {
				if wanted[n.ID] != nil && !ready(n) {
					waiting = append(waiting, n.Description.Hostname)
				}
			}
			sort.Strings(waiting)
			return nodes, fmt.Errorf("not Ready after %s: %s", f.opts.ReadyTimeout, strings.Join(waiting, ", "))
		}
		if err := sleep(ctx, f.opts.PollInterval); err != nil {
			return nil, err
		}
	}
}

// allReady reports whether every wanted node in the list is Ready.
func allReady(nodes []swarm.Node, wanted map[string]*Member) bool {
	for _, n := range nodes {
		if wanted[n.ID] != nil && !ready(n) {
			return false
		}
	}
	return true
}

func ready(n swarm.Node) bool {
	if n.Status.State != swarm.NodeStateReady {
		return false
	}
	return n.ManagerStatus == nil || n.ManagerStatus.Reachability == swarm.ReachabilityReachable
}
