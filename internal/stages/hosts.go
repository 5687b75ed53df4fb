package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fhlab/provision/internal/hosts"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/mirror"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/render"
)

// Hosts prepares the inventory's existing machines (hosts:) over SSH:
// Docker from the lab's apt source, the tuning files, services.
type Hosts struct {
	Renderer    *render.Renderer
	SSH         *Connector
	Force       bool // prepare hosts in another swarm; overwrite conflicting sysctls
	AllowReboot bool // reboot when the kernel command line must change
	// Changed, when set, receives the number of items the run changed.
	Changed *int
}

func (Hosts) Name() string { return "hosts" }
func (Hosts) Title() string {
	return "prepare existing hosts over SSH (docker, tuning files, services)"
}

func (Hosts) Skip(env *pipeline.Env) (bool, string) {
	return skipWithout(env, inventory.KindHost, "the inventory has no hosts")
}

// MirrorDir is where the lab's mirror is kept: mirror.dir (relative to the
// inventory) or <state-dir>/mirror.
func MirrorDir(env *pipeline.Env) string {
	return mirrorDir(env.Inventory, env.StateDir)
}

func mirrorDir(inv *inventory.Inventory, stateDir string) string {
	if m := inv.Lab.Mirror; m != nil && m.Dir != "" {
		return inventory.ResolvePath(filepath.Dir(inv.File), m.Dir)
	}
	return filepath.Join(stateDir, "mirror")
}

// source is the lab mirror as hosts see it, when the inventory has one.
func source(env *pipeline.Env) (*hosts.Source, error) {
	if env.Inventory.Lab.Mirror == nil {
		return nil, nil
	}
	return labMirror(env.Inventory, env.StateDir)
}

// labMirror reads the lab mirror's public key, which `provision mirror
// build` made.
func labMirror(inv *inventory.Inventory, stateDir string) (*render.AptMirror, error) {
	key, err := os.ReadFile(filepath.Join(mirrorDir(inv, stateDir), mirror.RepoDir, mirror.PublicKey))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the lab mirror has no key yet: run provision mirror build -i %s", inv.File)
	}
	if err != nil {
		return nil, fmt.Errorf("lab mirror key: %w", err)
	}
	return &render.AptMirror{URL: inv.Lab.Mirror.URL, Suite: mirror.Suite, Key: key}, nil
}

// NodesMirror is r, or, when the inventory says mirror.nodes, r with the
// lab mirror's apt source and key in every VM's and Pi's seed (read when
// the first seed is rendered).
func NodesMirror(r *render.Renderer, inv *inventory.Inventory, stateDir string) *render.Renderer {
	if m := inv.Lab.Mirror; m == nil || !m.Nodes {
		return r
	}
	return r.WithAptMirror(func() (*render.AptMirror, error) {
		m, err := labMirror(inv, stateDir)
		if err != nil {
			return nil, fmt.Errorf("mirror.nodes: %w", err)
		}
		return m, nil
	})
}

// Runner is the hosts run for env: what every host should have and how to
// reach it.
func (s Hosts) Runner(env *pipeline.Env) (*hosts.Runner, []inventory.Node, error) {
	src, err := source(env)
	if err != nil {
		return nil, nil, err
	}
	want, err := hosts.Desired(s.Renderer, env.Inventory, src)
	if err != nil {
		return nil, nil, err
	}
	var nodes []inventory.Node
	for _, n := range env.Inventory.Nodes {
		if n.Kind == inventory.KindHost {
			nodes = append(nodes, n)
		}
	}
	r := &hosts.Runner{
		Want:        want,
		Concurrency: env.Concurrency,
		Now:         env.Now,
		Connect: func(ctx context.Context, n *inventory.Node) (remote.Runner, error) {
			return s.SSH.Connect(ctx, env, n)
		},
		Options: func(n inventory.Node) hosts.Options {
			o := hosts.Options{Force: s.Force, AllowReboot: s.AllowReboot}
			if env.State.Swarm != nil {
				o.ClusterID = env.State.Swarm.ClusterID
			}
			if f, ok := env.State.Nodes[n.Name]; ok {
				o.NodeID = f.SwarmNodeID
			}
			return o
		},
	}
	return r, nodes, nil
}

// Plan reads every host's facts (read-only) and lists its changes.
func (s Hosts) Plan(ctx context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	var p pipeline.Plan
	r, nodes, err := s.Runner(env)
	if err != nil {
		return p, err
	}
	for _, o := range r.Plan(ctx, nodes) {
		c := pipeline.Change{Node: o.Node.Name}
		switch {
		case o.Err != nil:
			c.Action, c.Detail = pipeline.Update, "cannot read facts: "+o.Err.Error()
		case o.Plan.Refused != "":
			c.Action, c.Detail = pipeline.Keep, "refused: "+o.Plan.Refused
		case o.Plan.Unchanged():
			c.Action = pipeline.Keep
		default:
			c.Action, c.Detail = pipeline.Update, fmt.Sprintf("%d changes: %v", len(o.Plan.Items), o.Plan.Items)
		}
		p.Changes = append(p.Changes, c)
	}
	return p, nil
}

// Run applies: managers one at a time, then workers.
func (s Hosts) Run(ctx context.Context, env *pipeline.Env) error {
	r, nodes, err := s.Runner(env)
	if err != nil {
		return err
	}
	out := r.Apply(ctx, nodes, env.Status.Progress)
	for _, o := range out {
		if o.Plan != nil {
			fmt.Fprint(env.Out, o.Plan.String())
		}
	}
	if s.Changed != nil {
		*s.Changed = hosts.Changes(out)
	}
	line, err := hosts.Summary(out, true)
	env.Status.Progress("%s", line)
	var failed []*pipeline.NodeError
	for _, o := range out {
		if f := o.Failure(); f != nil {
			failed = append(failed, &pipeline.NodeError{Node: o.Node.Name, Err: f})
		}
	}
	return pipeline.WithNodes(err, failed)
}
