package stages

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

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
	// SelfJoinWait bounds the wait for nodes that join by themselves
	// (join: self) and are not in the swarm yet (default 10 minutes).
	SelfJoinWait time.Duration
	// LoginAll logs in to every node, also to the workers a re-run would
	// check without a login (Ready in the managers' list as recorded, and
	// answering on their gossip port).
	LoginAll bool
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
		case n.Join == inventory.JoinSelf:
			p.Changes = append(p.Changes, pipeline.Change{Node: n.Name, Action: pipeline.Create, Detail: "joins by itself at first boot (ticket in its seed), then labelled"})
		default:
			p.Changes = append(p.Changes, pipeline.Change{Node: n.Name, Action: pipeline.Create, Detail: "join as " + n.Role})
		}
	}
	p.Notes = append(p.Notes, "from the state file; `provision swarm` reads every engine first and changes only what differs")
	return p, nil
}

// Run forms the swarm. Each node is connected to in its own pipeline
// inside swarm.Form, so a node that does not answer yet holds up no other.
func (s Swarm) Run(ctx context.Context, env *pipeline.Env) error {
	inv := env.Inventory
	members := members(env, s.SSH)
	defer closeMembers(members)
	if s.LoginAll {
		for _, m := range members {
			m.Probe = nil
		}
	}
	members, self := splitSelfJoin(inv, members)
	res, formErr := swarm.Form(ctx, members, swarm.Options{
		DefaultAddrPool: inv.Lab.Swarm.DefaultAddrPool,
		SubnetSize:      uint32(inv.Lab.Swarm.DefaultAddrPoolMaskLength),
		DrainManagers:   inv.Lab.Swarm.DrainManagers,
		Ingress:         swarm.Ingress{Disabled: !inv.Lab.Swarm.Ingress.On(), Subnet: inv.Lab.Swarm.Ingress.Subnet},
		Force:           s.Force,
		Concurrency:     env.Concurrency,
		Counter:         s.Counter,
		Progress:        env.Status.Progress,
		Log:             env.Log,
	})
	record(env.State, inv, res)
	if len(res.Rows) > 0 {
		fmt.Fprintln(env.Out)
		swarm.WriteTable(env.Out, res.Rows)
	}
	for _, line := range res.Summary(formErr) {
		env.Status.Progress("%s", line)
	}
	if len(res.Failed) > 0 {
		env.Status.Progress("to retry them once fixed: provision swarm -i %s (it changes only what still differs, so only they are touched)", inv.File)
	}
	if err := s.awaitSelfJoin(ctx, env, members, res, self); err != nil {
		formErr = errors.Join(formErr, err)
	}
	failed := make([]*pipeline.NodeError, len(res.Failed))
	for i, f := range res.Failed {
		failed[i] = &pipeline.NodeError{Node: f.Node, Err: f.Err}
	}
	return pipeline.WithNodes(formErr, failed)
}

// members are the inventory's nodes as swarm members, in inventory order,
// each reaching its engine over SSH when Form (or Open) asks for it.
func members(env *pipeline.Env, ssh *Connector) []*swarm.Member {
	inv := env.Inventory
	out := make([]*swarm.Member, len(inv.Nodes))
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		out[i] = &swarm.Member{Name: n.Name, Addr: n.IP, Role: n.Role, Labels: n.Labels,
			Connect: func(ctx context.Context) (swarm.Endpoint, error) {
				cl, err := ssh.Connect(ctx, env, n)
				if err != nil {
					return swarm.Endpoint{}, err
				}
				sock := ssh.DockerSocket(ctx, env, n.Name, cl)
				return swarm.Endpoint{Dial: cl.UnixSocketDialer(sock), Where: "unix://" + sock + " over ssh " + cl.Target(), Lost: cl.Lost}, nil
			},
			Probe: func(ctx context.Context) error { return probeGossip(ctx, n.IP) },
		}
		if f := env.State.Nodes[n.Name]; f != nil {
			out[i].NodeID = f.SwarmNodeID
		}
	}
	return out
}

// probeGossip connects to a node's swarm gossip port (TCP 7946), which
// only a running dockerd that is in a swarm listens on, and hangs up: a
// re-run's check that a worker the managers list Ready is really up,
// without an SSH login. Nothing is sent; dockerd logs nothing for it.
func probeGossip(ctx context.Context, ip string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(ip, "7946"))
	if err != nil {
		return err
	}
	return conn.Close()
}

// open connects to every member at once; those that cannot be reached are
// named in the error and left without an engine. Changing calls on the
// engines are counted in c (may be nil).
func open(ctx context.Context, ms []*swarm.Member, concurrency int, c *swarm.Counter) error {
	return par.Each(ctx, concurrency, len(ms), func(ctx context.Context, i int) error {
		if err := ms[i].Open(ctx, c); err != nil {
			return pipeline.NodeErr(ms[i].Name, fmt.Errorf("reach %s: %w", ms[i].Name, err))
		}
		return nil
	})
}

func closeMembers(ms []*swarm.Member) {
	for _, m := range ms {
		m.Close()
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
