package swarm

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/swarm"
)

// ErrNoSwarm is returned by Inspect when no manager is in a swarm.
var ErrNoSwarm = errors.New("no manager of the inventory is in a swarm")

// ErrNotManager is a manager's engine that answered but is no active
// manager of a swarm.
var ErrNotManager = errors.New("not an active manager")

// Inspect reaches the managers (all at once) and lists the swarm's nodes
// through the first one that can answer swarm queries; the others are not
// waited for (a manager that is down costs no time once another answered).
// It returns the rows (Inventory set for the nodes whose hostname is in
// names), the manager that answered, and ErrNoSwarm (joined with why each
// manager could not answer) when none could. Mutating calls made later
// through the managers' engines are counted in c (may be nil).
func Inspect(ctx context.Context, managers []*Member, names map[string]bool, c *Counter) ([]Row, *Member, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		m   *Member
		err error
	}
	answers := make(chan answer, len(managers))
	for _, m := range managers {
		go func() {
			a := answer{m: m}
			if err := m.Open(ctx, c); err != nil {
				a.err = fmt.Errorf("%s: %w", m.Name, err)
			} else if info, err := m.Engine.Info(ctx); err != nil {
				a.err = fmt.Errorf("%s: docker info: %w", m.Name, m.engineErr(err))
			} else if !info.Swarm.ControlAvailable {
				a.err = fmt.Errorf("%s: %w (swarm state %q)", m.Name, ErrNotManager, info.Swarm.LocalNodeState)
			}
			answers <- a
		}()
	}
	var errs []error
	var via *Member
	for range managers {
		a := <-answers
		if a.err == nil {
			via = a.m
			break
		}
		errs = append(errs, a.err)
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
