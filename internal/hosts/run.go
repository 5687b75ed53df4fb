package hosts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/par"
	"github.com/fhlab/provision/internal/remote"
)

// Runner gives the plans and results of a run over every host.
type Runner struct {
	Want        Want
	Options     func(n inventory.Node) Options // per host: the swarm facts of the state
	Connect     func(ctx context.Context, n *inventory.Node) (remote.Runner, error)
	Concurrency int
	Now         func() time.Time
}

// Outcome is one host's plan and, after Apply, what changed.
type Outcome struct {
	Node   inventory.Node
	Plan   *Plan
	Result *Result
	Err    error
}

// Plan reads every host's facts and plans it; a host that cannot be
// reached has Err set.
func (r *Runner) Plan(ctx context.Context, nodes []inventory.Node) []*Outcome {
	out := make([]*Outcome, len(nodes))
	_ = par.Each(ctx, max(r.Concurrency, 1), len(nodes), func(ctx context.Context, i int) error {
		out[i] = r.plan(ctx, nodes[i])
		return nil
	})
	return out
}

func (r *Runner) plan(ctx context.Context, n inventory.Node) *Outcome {
	o := &Outcome{Node: n}
	cl, err := r.Connect(ctx, &n)
	if err != nil {
		o.Err = fmt.Errorf("reach %s: %w", n.Name, err)
		return o
	}
	f, err := Gather(ctx, cl, r.Want, r.Now)
	if err != nil {
		o.Err = fmt.Errorf("%s: %w", n.Name, err)
		return o
	}
	o.Plan = MakePlan(n, f, r.Want, r.Options(n))
	return o
}

// Apply plans every host and applies the plans: managers one at a time
// (each done before the next starts), then workers at most Concurrency
// at once. A host that fails or is refused does not stop the others.
func (r *Runner) Apply(ctx context.Context, nodes []inventory.Node, progress func(format string, args ...any)) []*Outcome {
	var managers, workers []int
	for i, n := range nodes {
		if n.Role == inventory.Manager {
			managers = append(managers, i)
		} else {
			workers = append(workers, i)
		}
	}
	out := make([]*Outcome, len(nodes))
	one := func(ctx context.Context, i int) {
		o := r.plan(ctx, nodes[i])
		out[i] = o
		if o.Err != nil || o.Plan.Refused != "" || o.Plan.Unchanged() {
			return
		}
		progress("%s: applying %d changes", o.Node.Name, len(o.Plan.Items))
		cl, err := r.Connect(ctx, &o.Node)
		if err == nil {
			o.Result, err = Apply(ctx, cl, o.Plan)
		}
		o.Err = err
	}
	for _, i := range managers {
		one(ctx, i)
	}
	var mu sync.Mutex
	_ = par.Each(ctx, max(r.Concurrency, 1), len(workers), func(ctx context.Context, k int) error {
		one(ctx, workers[k])
		mu.Lock()
		defer mu.Unlock()
		return nil
	})
	return out
}

// Failure is why the host was not prepared: its error, or why it was
// refused; nil when it was.
func (o *Outcome) Failure() error {
	switch {
	case o.Err != nil:
		return o.Err
	case o.Plan != nil && o.Plan.Refused != "":
		return fmt.Errorf("%s refused: %s", o.Node.Name, o.Plan.Refused)
	}
	return nil
}

// Summary counts the outcomes: "3 hosts: 5 changes on 1, 2 unchanged" or
// "nothing changed". The error names every host that failed or was refused.
func Summary(out []*Outcome, applied bool) (string, error) {
	var changes, changedHosts, unchanged int
	var errs []error
	for _, o := range out {
		switch {
		case o.Failure() != nil:
			errs = append(errs, o.Failure())
		case applied && o.Result != nil && len(o.Result.Changed) > 0:
			changes += len(o.Result.Changed)
			changedHosts++
		case !applied && len(o.Plan.Items) > 0:
			changes += len(o.Plan.Items)
			changedHosts++
		default:
			unchanged++
		}
	}
	verb := "would change"
	if applied {
		verb = "changed"
	}
	s := fmt.Sprintf("%d hosts: %s %d items on %d, %d unchanged, %d failed or refused", len(out), verb, changes, changedHosts, unchanged, len(errs))
	if changes == 0 && len(errs) == 0 {
		s = fmt.Sprintf("%d hosts: nothing changed", len(out))
		if !applied {
			s = fmt.Sprintf("%d hosts: nothing to change", len(out))
		}
	}
	return s, errors.Join(errs...)
}

// Changes counts the items applied across all hosts.
func Changes(out []*Outcome) int {
	n := 0
	for _, o := range out {
		if o.Result != nil {
			n += len(o.Result.Changed)
		}
	}
	return n
}
