package stages

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
)

// Render writes each node's cloud-init seed (user-data, meta-data,
// network-config) into the output directory.
type Render struct {
	Renderer *render.Renderer
}

func (Render) Name() string  { return "render" }
func (Render) Title() string { return "render cloud-init seeds (user-data, meta-data, network-config)" }

// Plan renders in memory and compares with what is on disk.
func (s Render) Plan(ctx context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	var p pipeline.Plan
	for i := range env.Inventory.Nodes {
		if err := ctx.Err(); err != nil {
			return p, err
		}
		n := &env.Inventory.Nodes[i]
		files, err := s.Renderer.Node(env.Inventory, n)
		if err != nil {
			return p, err
		}
		p.Changes = append(p.Changes, compareSeed(filepath.Join(env.OutDir, n.Name), n.Name, files))
	}
	p.Notes = append(p.Notes, "seeds go to "+env.OutDir)
	return p, nil
}

func compareSeed(dir, node string, files render.Files) pipeline.Change {
	var changed []string
	missing := 0
	for name, want := range files.ByName() {
		got, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case os.IsNotExist(err):
			missing++
		case err != nil || !bytes.Equal(got, want):
			changed = append(changed, name)
		}
	}
	switch {
	case missing == len(files.ByName()):
		return pipeline.Change{Node: node, Action: pipeline.Create}
	case missing > 0 || len(changed) > 0:
		return pipeline.Change{Node: node, Action: pipeline.Update, Detail: fmt.Sprintf("%d missing, changed %v", missing, changed)}
	}
	return pipeline.Change{Node: node, Action: pipeline.Keep}
}

func (s Render) Run(ctx context.Context, env *pipeline.Env) error {
	sum, err := render.WriteAll(ctx, s.Renderer, env.Inventory, env.OutDir, env.Concurrency)
	if err != nil {
		return err
	}
	env.Status.Progress("%d nodes: %d written, %d unchanged, in %s", len(env.Inventory.Nodes), sum.Written, sum.Unchanged, env.OutDir)
	return nil
}
