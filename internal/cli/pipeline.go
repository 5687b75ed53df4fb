package cli

import (
	"path/filepath"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/templates"
)

// env builds the pipeline environment for an inventory: state loaded from
// the state directory, output directory, logger and progress lines (the
// run's one Status).
func (a *app) env(inv *inventory.Inventory, outDir string) (*pipeline.Env, error) {
	dir := a.stateDir(inv)
	st, err := state.Load(dir, inv.Lab.Metadata.Name)
	if err != nil {
		return nil, err
	}
	if outDir == "" {
		outDir = filepath.Join(dir, "cloud-init")
	}
	return &pipeline.Env{
		Inventory: inv, State: st, StateDir: dir, OutDir: outDir,
		Concurrency: a.settings.Concurrency, Log: a.log, Out: a.status.Wrap(a.streams.Out),
		Status: a.status, Now: a.now,
	}, nil
}

// session loads the inventory and builds what running stages on it needs:
// the pipeline environment and the stages' dependencies. The caller closes
// d.SSH.
func (a *app) session(outDir string) (*pipeline.Env, stages.Deps, error) {
	inv, err := a.loadInventory()
	if err != nil {
		return nil, stages.Deps{}, err
	}
	env, err := a.env(inv, outDir)
	if err != nil {
		return nil, stages.Deps{}, err
	}
	d, err := a.deps()
	return env, d, err
}

// deps builds the stages' dependencies once.
func (a *app) deps() (stages.Deps, error) {
	r, err := render.New(templates.FS)
	if err != nil {
		return stages.Deps{}, err
	}
	return stages.Deps{
		Renderer: r,
		SSH: stages.NewConnector(stages.SSH{
			KeyPath:      a.settings.SSHKey,
			DockerSocket: a.settings.DockerSocket,
			Redactor:     a.redactor,
		}),
		Terraform: a.terraformSettings(false),
	}, nil
}
