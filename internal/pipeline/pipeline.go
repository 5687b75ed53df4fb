// Package pipeline runs provision's stages in order, like a runbook: each
// stage has a stable name, a title, a plan (what it would change, per node)
// and a run. Facts learnt on the way are saved in the state file after every
// stage, so a stage can be re-run alone.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/state"
)

// Env is what every stage gets: the inventory, the facts, where to write and
// how to report. Stages take everything they need from here, nothing global.
type Env struct {
	Inventory   *inventory.Inventory
	State       *state.State
	StateDir    string
	OutDir      string // where rendered files go
	Concurrency int
	Log         *slog.Logger
	Out         io.Writer // program output (tables, summaries)
	Status      *Status   // progress lines
	Now         func() time.Time
	// Meter, when set, counts the calls that change something outside
	// provision (the engines' API); Run notes each stage's in Calls.
	Meter Meter
	// Calls are the changing calls each stage of the last Run made, in
	// runbook order (filled only with a Meter).
	Calls []StageCalls

	bg *background // services left running for the rest of a Run
}

// Meter counts calls that change something, by "METHOD /path".
type Meter interface {
	Calls() map[string]int
}

// StageCalls are the changing calls one stage made, by "METHOD /path".
type StageCalls struct {
	Stage string
	Calls map[string]int
}

// Total is the number of calls.
func (s StageCalls) Total() int {
	n := 0
	for _, c := range s.Calls {
		n += c
	}
	return n
}

// measure runs f and notes the calls it made under stage.
func (e *Env) measure(stage string, f func() error) error {
	if e.Meter == nil {
		return f()
	}
	before := e.Meter.Calls()
	err := f()
	delta := map[string]int{}
	for call, n := range e.Meter.Calls() {
		if d := n - before[call]; d > 0 {
			delta[call] = d
		}
	}
	e.Calls = append(e.Calls, StageCalls{Stage: stage, Calls: delta})
	return err
}

// background is what Env.Background started during a Run.
type background struct {
	ctx      context.Context
	services []service
}

type service struct {
	name string
	wait func() error
}

// Background starts a service that runs for the rest of the run (netboot
// while the Pis boot and join): start gets a context that ends once the
// last stage has run, or the run fails or is stopped, and returns a
// function that waits for the service to stop and says what failed. It is
// an error outside Pipeline.Run (a plan starts nothing).
func (e *Env) Background(name string, start func(ctx context.Context) (wait func() error, err error)) error {
	if e.bg == nil {
		return fmt.Errorf("start %s: services run only during a run (not in a plan)", name)
	}
	wait, err := start(e.bg.ctx)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	e.bg.services = append(e.bg.services, service{name, wait})
	return nil
}

// Stage is one step of the runbook.
type Stage interface {
	// Name is the stable id used by --only and in logs ("render", "swarm").
	Name() string
	// Title says what the stage does, for progress lines and plans.
	Title() string
	// Plan reports what Run would change, per node, without changing anything.
	Plan(ctx context.Context, env *Env) (Plan, error)
	// Run makes the changes. It must be safe to run again: a re-run changes
	// nothing that is already right.
	Run(ctx context.Context, env *Env) error
}

// Skipper is implemented by stages that do not apply to every lab (no
// Proxmox section, no netbooted racks, ...).
type Skipper interface {
	Skip(env *Env) (skip bool, reason string)
}

// Action is what a plan will do to one node.
type Action string

// Actions, in the order plans list them.
const (
	Create  Action = "create"
	Update  Action = "update"
	Replace Action = "replace"
	Destroy Action = "destroy"
	Keep    Action = "unchanged"
)

// Change is one node's line in a plan.
type Change struct {
	Node   string
	Action Action
	Detail string
}

// Plan is a stage's plan.
type Plan struct {
	Stage   string
	Title   string
	Changes []Change
	Skipped string // why the stage does not apply, if it does not
	Notes   []string
}

// Counts tallies a plan's changes by action.
func (p Plan) Counts() map[Action]int {
	c := map[Action]int{}
	for _, ch := range p.Changes {
		c[ch.Action]++
	}
	return c
}

// Pipeline is an ordered list of stages, kept as data.
type Pipeline struct {
	Stages []Stage
}

// Select returns the stages named in only (all when only is empty), in
// pipeline order, or an error naming an unknown stage.
func (p Pipeline) Select(only []string) (Pipeline, error) {
	if len(only) == 0 {
		return p, nil
	}
	want := map[string]bool{}
	for _, name := range only {
		want[name] = true
	}
	var out Pipeline
	for _, s := range p.Stages {
		if want[s.Name()] {
			out.Stages = append(out.Stages, s)
			delete(want, s.Name())
		}
	}
	for name := range want {
		return Pipeline{}, fmt.Errorf("no stage named %q (stages: %s)", name, strings.Join(p.Names(), ", "))
	}
	return out, nil
}

// From returns the stages from the named one on (all when from is empty),
// to resume a run where it stopped.
func (p Pipeline) From(from string) (Pipeline, error) {
	if from == "" {
		return p, nil
	}
	for i, s := range p.Stages {
		if s.Name() == from {
			return Pipeline{Stages: p.Stages[i:]}, nil
		}
	}
	return Pipeline{}, fmt.Errorf("no stage named %q (stages: %s)", from, strings.Join(p.Names(), ", "))
}

// Names lists the stage names in order.
func (p Pipeline) Names() []string {
	out := make([]string, len(p.Stages))
	for i, s := range p.Stages {
		out[i] = s.Name()
	}
	return out
}

// Plan asks every stage for its plan. Stages that are skipped say so in
// their plan instead of failing the whole plan.
func (p Pipeline) Plan(ctx context.Context, env *Env) ([]Plan, error) {
	var plans []Plan
	for _, s := range p.Stages {
		if err := ctx.Err(); err != nil {
			return plans, fmt.Errorf("plan %s: %w", s.Name(), err)
		}
		if sk, ok := s.(Skipper); ok {
			if skip, why := sk.Skip(env); skip {
				plans = append(plans, Plan{Stage: s.Name(), Title: s.Title(), Skipped: why})
				continue
			}
		}
		pl, err := s.Plan(ctx, env)
		if err != nil {
			return plans, fmt.Errorf("plan %s: %w", s.Name(), err)
		}
		pl.Stage, pl.Title = s.Name(), s.Title()
		plans = append(plans, pl)
	}
	return plans, nil
}

// Run runs the stages in order, saving the state after each one. It stops at
// the first failure, and before any stage once ctx is cancelled.
func (p Pipeline) Run(ctx context.Context, env *Env) (err error) {
	bgCtx, stopBackground := context.WithCancel(ctx)
	env.bg = &background{ctx: bgCtx}
	env.Calls = nil
	defer func() {
		// The services stop with the run, the last started first.
		stopBackground()
		bg := env.bg
		env.bg = nil
		for i := len(bg.services) - 1; i >= 0; i-- {
			sv := bg.services[i]
			werr := sv.wait()
			if werr != nil && !errors.Is(werr, context.Canceled) {
				err = errors.Join(err, fmt.Errorf("%s: %w", sv.name, werr))
			}
			env.Status.Progress("%s stopped with the run", sv.name)
		}
	}()
	for _, s := range p.Stages {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("stopped before stage %s: %w", s.Name(), err)
		}
		if sk, ok := s.(Skipper); ok {
			if skip, why := sk.Skip(env); skip {
				env.Status.Skip(s.Title(), why)
				continue
			}
		}
		done := env.Status.Start(s.Title())
		start := env.Now()
		err := env.measure(s.Name(), func() error { return s.Run(ctx, env) })
		if serr := env.State.Save(env.StateDir, env.Now()); serr != nil && err == nil {
			err = serr
		}
		done(err)
		env.Log.Debug("stage finished", "stage", s.Name(), "took", env.Now().Sub(start).Round(time.Millisecond), "ok", err == nil)
		if err != nil {
			return &StageError{Stage: s.Name(), Err: err}
		}
	}
	return nil
}

// StageError is a run's failure in one stage.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }
