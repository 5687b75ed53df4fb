package stages

import (
	"context"
	"fmt"

	"github.com/fhlab/provision/internal/par"
	"github.com/fhlab/provision/internal/pipeline"
)

// Discover waits until every node answers over SSH with a trusted host key
// and records its address.
type Discover struct {
	SSH *Connector
}

func (Discover) Name() string  { return "discover" }
func (Discover) Title() string { return "wait for every node to answer over SSH" }

func (Discover) Plan(_ context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	var p pipeline.Plan
	for _, n := range env.Inventory.Nodes {
		if f, ok := env.State.Nodes[n.Name]; ok && f.IP == n.IP {
			p.Changes = append(p.Changes, pipeline.Change{Node: n.Name, Action: pipeline.Keep, Detail: "seen before at " + n.IP})
			continue
		}
		p.Changes = append(p.Changes, pipeline.Change{Node: n.Name, Action: pipeline.Create, Detail: "first contact at " + n.IP})
	}
	p.Notes = append(p.Notes, "host keys are trusted on first use into <state-dir>/known_hosts; a changed key is refused")
	return p, nil
}

func (s Discover) Run(ctx context.Context, env *pipeline.Env) error {
	nodes := env.Inventory.Nodes
	ips := make([]string, len(nodes))
	err := par.Each(ctx, env.Concurrency, len(nodes), func(ctx context.Context, i int) error {
		if _, err := s.SSH.Connect(ctx, env, &nodes[i]); err != nil {
			return fmt.Errorf("reach %s: %w", nodes[i].Name, err)
		}
		ips[i] = nodes[i].IP
		return nil
	})
	reached := 0
	for i, ip := range ips {
		if ip != "" {
			env.State.Node(nodes[i].Name).IP = ip
			reached++
		}
	}
	env.Status.Progress("%d of %d nodes answer over SSH", reached, len(nodes))
	return err
}
