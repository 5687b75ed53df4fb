package stages

import (
	"context"
	"fmt"
	"sync"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/par"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/rpi/netboot"
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

// lastBootStep says, for a netbooted Pi that does not answer, how far its
// last netboot got (the boot events pi-boot's server records, which load
// reads once per run), or that the server never saw it.
func lastBootStep(load func() (*netboot.Boots, error), n *inventory.Node) string {
	if n.Kind != inventory.KindPi || n.Boot != inventory.BootNetboot {
		return ""
	}
	boots, err := load()
	if err != nil {
		return "; its netboot events: " + err.Error()
	}
	r, ok := boots.Pis[n.Name]
	if !ok {
		return fmt.Sprintf("; the netboot server never saw it (no DHCP request or TFTP read for serial %s): check its power, its cable and its EEPROM boot order (provision netboot eeprom)", n.Serial)
	}
	return fmt.Sprintf("; its last netboot step: %s at %s", r.LastStep, r.LastAt.Local().Format("15:04:05"))
}

func (s Discover) Run(ctx context.Context, env *pipeline.Env) error {
	nodes := env.Inventory.Nodes
	ips := make([]string, len(nodes))
	// Read when the first Pi fails, so that it holds what the server saw
	// until then.
	boots := sync.OnceValues(func() (*netboot.Boots, error) { return netboot.LoadBoots(env.StateDir) })
	err := par.Each(ctx, env.Concurrency, len(nodes), func(ctx context.Context, i int) error {
		if _, err := s.SSH.Connect(ctx, env, &nodes[i]); err != nil {
			return pipeline.NodeErr(nodes[i].Name, fmt.Errorf("reach %s: %w%s", nodes[i].Name, err, lastBootStep(boots, &nodes[i])))
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
