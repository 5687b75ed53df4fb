package stages

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/par"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/swarm"
)

// Swarm joins every node into one Docker Swarm through each node's Engine
// API, reached over SSH.
type Swarm struct {
	SSH     *Connector
	Force   bool           // members of another swarm leave it and join this one
	Counter *swarm.Counter // counts mutating Engine API calls (may be nil)
}

func (Swarm) Name() string  { return "swarm" }
func (Swarm) Title() string { return "form the Docker Swarm (init, join, labels)" }

// Plan is made from the recorded facts: nodes with a swarm node ID in the
// state are expected to be members already; `provision swarm` checks each
// engine before it changes anything.
func (Swarm) Plan(_ context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	var p pipeline.Plan
	sw := env.State.Swarm
	for _, n := range env.Inventory.Nodes {
		f := env.State.Nodes[n.Name]
		switch {
		case sw == nil && n.Role == inventory.Manager && len(p.Changes) == 0:
			p.Changes = append(p.Changes, pipeline.Change{Node: n.Name, Action: pipeline.Create, Detail: "swarm init, pool " + strings.Join(env.Inventory.Lab.Swarm.DefaultAddrPool, ",")})
		case f != nil && f.SwarmNodeID != "":
			p.Changes = append(p.Changes, pipeline.Change{Node: n.Name, Action: pipeline.Keep, Detail: "node " + f.SwarmNodeID})
		default:
			p.Changes = append(p.Changes, pipeline.Change{Node: n.Name, Action: pipeline.Create, Detail: "join as " + n.Role})
		}
	}
	p.Notes = append(p.Notes, "from the state file; `provision swarm` reads every engine first and changes only what differs")
	return p, nil
}

func (s Swarm) Run(ctx context.Context, env *pipeline.Env) error {
	inv := env.Inventory
	reachable, connErr := engines(ctx, env, s.SSH, s.Counter)
	defer closeEngines(reachable)
	if len(reachable) == 0 {
		return connErr
	}
	res, formErr := swarm.Form(ctx, reachable, swarm.Options{
		DefaultAddrPool: inv.Lab.Swarm.DefaultAddrPool,
		SubnetSize:      uint32(inv.Lab.Swarm.DefaultAddrPoolMaskLength),
		DrainManagers:   inv.Lab.Swarm.DrainManagers,
		Ingress:         swarm.Ingress{Disabled: !inv.Lab.Swarm.Ingress.On(), Subnet: inv.Lab.Swarm.Ingress.Subnet},
		Force:           s.Force,
		Concurrency:     env.Concurrency,
		Progress:        env.Status.Progress,
		Log:             env.Log,
	})
	record(env.State, inv, res)
	if len(res.Rows) > 0 {
		fmt.Fprintln(env.Out)
		swarm.WriteTable(env.Out, res.Rows)
	}
	if res.Changed() {
		env.Status.Progress("initialised: %v, joined %d, updated %d, removed %d stale", res.Initialized, len(res.Joined), len(res.Updated), len(res.Removed))
	} else {
		env.Status.Progress("the swarm already matches the inventory: nothing changed")
	}
	return errors.Join(connErr, formErr)
}

// engines connects to every node over SSH and opens a Docker client to its
// engine through that connection. Nodes that cannot be reached are named in
// the error and left out; the others are returned in inventory order.
func engines(ctx context.Context, env *pipeline.Env, ssh *Connector, counter *swarm.Counter) ([]*swarm.Member, error) {
	inv := env.Inventory
	members := make([]*swarm.Member, len(inv.Nodes))
	err := par.Each(ctx, env.Concurrency, len(inv.Nodes), func(ctx context.Context, i int) error {
		n := &inv.Nodes[i]
		cl, err := ssh.Connect(ctx, env, n)
		if err != nil {
			return fmt.Errorf("reach %s: %w", n.Name, err)
		}
		engine, err := swarm.NewEngine(cl.UnixSocketDialer(ssh.DockerSocket(env, n.Name)), counter)
		if err != nil {
			return fmt.Errorf("docker client for %s: %w", n.Name, err)
		}
		members[i] = &swarm.Member{Name: n.Name, Addr: n.IP, Role: n.Role, Labels: n.Labels, Engine: engine}
		return nil
	})
	var out []*swarm.Member
	for _, m := range members {
		if m != nil {
			out = append(out, m)
		}
	}
	return out, err
}

func closeEngines(ms []*swarm.Member) {
	for _, m := range ms {
		m.Engine.Close()
	}
}

// record keeps the swarm's facts (never its tokens) in the state.
func record(st *state.State, inv *inventory.Inventory, res *swarm.Result) {
	if res.ClusterID == "" {
		return
	}
	byName := map[string]swarm.Row{}
	var managers []string
	for _, r := range res.Rows {
		if r.Inventory {
			byName[r.Name] = r
		}
		if r.Role == "manager" && r.Inventory {
			managers = append(managers, r.Name)
		}
	}
	st.Swarm = &state.SwarmFacts{
		ClusterID: res.ClusterID, Managers: managers,
		DefaultAddrPool: inv.Lab.Swarm.DefaultAddrPool, MaskLength: inv.Lab.Swarm.DefaultAddrPoolMaskLength,
	}
	for _, n := range inv.Nodes {
		if r, ok := byName[n.Name]; ok {
			f := st.Node(n.Name)
			f.SwarmNodeID, f.IP = r.ID, n.IP
		}
	}
}
