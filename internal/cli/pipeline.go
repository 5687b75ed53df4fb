package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/swarm"
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
	if err != nil {
		return nil, stages.Deps{}, err
	}
	env.Meter = d.Engines
	d.Renderer = stages.NodesMirror(d.Renderer, inv, env.StateDir)
	return env, d, nil
}

// writeCalls prints, after a run, the Engine API calls that changed
// something, by stage: "none" on a lab that already matched. verify's are
// its own test network and services, removed again.
func writeCalls(w io.Writer, calls []pipeline.StageCalls) {
	var parts []string
	for _, c := range calls {
		if c.Total() == 0 {
			continue
		}
		byCall := make([]string, 0, len(c.Calls))
		for call, n := range c.Calls {
			byCall = append(byCall, fmt.Sprintf("%s ×%d", call, n))
		}
		slices.Sort(byCall)
		detail := strings.Join(byCall, ", ")
		if c.Stage == "verify" {
			detail = "its own test network and services, removed again: " + detail
		}
		parts = append(parts, fmt.Sprintf("%s %d (%s)", c.Stage, c.Total(), detail))
	}
	if len(calls) == 0 {
		return
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	fmt.Fprintf(w, "changing Engine API calls: %s\n", strings.Join(parts, "; "))
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
			Timeout:      a.settings.SSHTimeout,
			DockerSocket: a.settings.DockerSocket,
			Redactor:     a.redactor,
		}),
		Terraform: a.terraformSettings(false),
		Engines:   &swarm.Counter{},
	}, nil
}
