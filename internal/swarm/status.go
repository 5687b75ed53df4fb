package swarm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/docker/docker/api/types/swarm"
)

// ErrNoSwarm is returned by Inspect when no manager is in a swarm.
var ErrNoSwarm = errors.New("no manager of the inventory is in a swarm")

// ErrNotManager is a manager's engine that answered but is no active
// manager of a swarm.
var ErrNotManager = errors.New("not an active manager")

// Inspect reaches the managers (all at once) and lists the swarm's nodes
// through one that can answer swarm queries, the leader when it answers.
// It returns the rows (Inventory set for the nodes whose hostname is in
// names), the manager that answered, and ErrNoSwarm (joined with why each
// manager could not answer) when none could. Mutating calls made later
// through the managers' engines are counted in c (may be nil).
func Inspect(ctx context.Context, managers []*Member, names map[string]bool, c *Counter) ([]Row, *Member, error) {
	type answer struct {
		m      *Member
		leader bool
		err    error
	}
	answers := make([]answer, len(managers))
	var wg sync.WaitGroup
	for i, m := range managers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := answer{m: m}
			if err := m.Open(ctx, c); err != nil {
				a.err = fmt.Errorf("%s: %w", m.Name, err)
			} else if info, err := m.Engine.Info(ctx); err != nil {
				a.err = fmt.Errorf("%s: docker info: %w", m.Name, m.engineErr(err))
			} else if !info.Swarm.ControlAvailable {
				a.err = fmt.Errorf("%s: %w (swarm state %q)", m.Name, ErrNotManager, info.Swarm.LocalNodeState)
			} else {
				n, _, err := m.Engine.NodeInspectWithRaw(ctx, info.Swarm.NodeID)
				a.leader = err == nil && n.ManagerStatus != nil && n.ManagerStatus.Leader
			}
			answers[i] = a
		}()
	}
	wg.Wait()
	var errs []error
	var via *Member
	for _, a := range answers {
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		if via == nil || a.leader {
			via = a.m
		}
	}
	if via == nil {
		return nil, nil, errors.Join(append([]error{ErrNoSwarm}, errs...)...)
	}
	nodes, err := via.Engine.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, via, fmt.Errorf("node ls on %s: %w", via.Name, via.engineErr(err))
	}
	return RowsOf(nodes, names), via, nil
}

// RowsOf are the swarm's nodes as rows, managers first; Inventory is set
// for the nodes whose hostname is in names.
func RowsOf(nodes []swarm.Node, names map[string]bool) []Row {
	wanted := map[string]*Member{}
	for _, n := range nodes {
		if names[n.Description.Hostname] {
			wanted[n.ID] = &Member{Name: n.Description.Hostname}
		}
	}
	return rows(nodes, wanted)
}
