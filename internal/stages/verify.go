package stages

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/swarm"
)

// Verify checks the formed swarm: every node Ready with its labels, an
// overlay network's subnet inside the pool, and a replicated service
// reachable across nodes.
type Verify struct {
	SSH     *Connector
	Image   string         // an image with busybox sh and nc, present on the nodes
	Counter *swarm.Counter // counts its changing Engine API calls (may be nil)
}

func (Verify) Name() string  { return "verify" }
func (Verify) Title() string { return "verify the swarm (nodes, overlay pool, service across nodes)" }

func (Verify) Plan(_ context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	return pipeline.Plan{Notes: []string{"creates and removes a test overlay network and two services named provision-verify-*"}}, nil
}

func (s Verify) Run(ctx context.Context, env *pipeline.Env) error {
	// Every inventory node is checked, reachable over SSH or not.
	all := members(env, s.SSH)
	defer closeMembers(all)
	connErr := open(ctx, all, env.Concurrency, s.Counter)
	var manager *swarm.Member
	for _, m := range all {
		if m.Role == swarm.Manager && m.Engine != nil {
			if info, err := m.Engine.Info(ctx); err == nil && info.Swarm.ControlAvailable {
				manager = m
				break
			}
		}
	}
	if manager == nil {
		return errors.Join(connErr, errors.New("verify: no reachable manager of a swarm (run provision swarm first)"))
	}
	inv := env.Inventory
	checks, err := swarm.Verify(ctx, manager.Engine, all, swarm.VerifyOptions{
		Pools: inv.Lab.Swarm.DefaultAddrPool, MaskLen: inv.Lab.Swarm.DefaultAddrPoolMaskLength, Image: s.Image,
	})
	tw := tabwriter.NewWriter(env.Out, 0, 4, 2, ' ', 0)
	for _, c := range checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, c.Name, c.Detail)
	}
	tw.Flush()
	return errors.Join(connErr, err)
}
