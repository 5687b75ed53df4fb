package stages

import (
	"context"
	"fmt"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/swarm/selfjoin"
)

// splitSelfJoin separates the members provision joins (push) from the
// nodes that join by themselves (join: self), which it only labels.
func splitSelfJoin(inv *inventory.Inventory, ms []*swarm.Member) (push []*swarm.Member, self []selfjoin.Wanted) {
	for i, m := range ms {
		if inv.Nodes[i].Join == inventory.JoinSelf {
			self = append(self, selfjoin.Wanted{Name: m.Name, Labels: m.Labels})
			continue
		}
		push = append(push, m)
	}
	return push, self
}

// awaitSelfJoin waits for the self-joining nodes to be in the swarm and
// Ready, serving the join endpoint while some are missing, and labels
// each as it comes. A re-run where all are there and labelled makes no
// mutating call and starts no endpoint.
func (s Swarm) awaitSelfJoin(ctx context.Context, env *pipeline.Env, push []*swarm.Member, res *swarm.Result, self []selfjoin.Wanted) error {
	if len(self) == 0 {
		return nil
	}
	var leader *swarm.Member
	for _, m := range push {
		if m.Name == res.Leader && m.Engine != nil {
			leader = m
		}
	}
	if leader == nil {
		return fmt.Errorf("self-join: no manager to watch %d self-joining nodes from", len(self))
	}
	ep, err := selfjoin.FromInventory(env.Inventory, env.StateDir)
	if err != nil {
		return fmt.Errorf("self-join: %w", err)
	}
	r, err := selfjoin.Await(ctx, leader.Engine, self, selfjoin.AwaitOptions{
		Timeout: s.SelfJoinWait,
		Serve: func(ctx context.Context) error {
			return ep.Serve(ctx, selfjoin.EngineGrant(leader.Engine), env.Log)
		},
		Progress: env.Status.Progress,
		Log:      env.Log,
	})
	for name, id := range r.IDs {
		f := env.State.Node(name)
		f.SwarmNodeID = id
		for _, n := range env.Inventory.Nodes {
			if n.Name == name {
				f.IP = n.IP
			}
		}
	}
	switch {
	case err != nil:
		env.Status.Progress("self-join: %d of %d nodes in the swarm, %d labelled", len(r.Present)+len(r.Joined), len(self), len(r.Updated))
		return fmt.Errorf("self-join: %w", err)
	case len(r.Joined)+len(r.Updated) == 0:
		env.Status.Progress("self-join: all %d nodes in the swarm and labelled: nothing changed", len(self))
	default:
		env.Status.Progress("self-join: %d joined by themselves, %d labelled (%s)", len(r.Joined), len(r.Updated), strings.Join(append(r.Joined, r.Updated...), ", "))
	}
	return nil
}
