package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/state"
)

// recorder is a stage that records what the pipeline asked of it.
type recorder struct {
	name    string
	calls   *[]string
	fail    error
	skip    string
	cancel  context.CancelFunc
	changes []pipeline.Change
	meter   *meter // calls made on it by Run
	call    string
}

// meter is a pipeline.Meter the recorder calls on.
type meter map[string]int

func (m meter) Calls() map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (r recorder) Name() string  { return r.name }
func (r recorder) Title() string { return "stage " + r.name }
func (r recorder) Plan(context.Context, *pipeline.Env) (pipeline.Plan, error) {
	*r.calls = append(*r.calls, "plan "+r.name)
	return pipeline.Plan{Changes: r.changes}, nil
}
func (r recorder) Run(_ context.Context, env *pipeline.Env) error {
	*r.calls = append(*r.calls, "run "+r.name)
	if r.call != "" {
		(*r.meter)[r.call]++
	}
	env.State.Node("n1").IP = "192.0.2.1"
	if r.cancel != nil {
		r.cancel()
	}
	return r.fail
}
func (r recorder) Skip(*pipeline.Env) (bool, string) { return r.skip != "", r.skip }

func newEnv(t *testing.T, status io.Writer) *pipeline.Env {
	return &pipeline.Env{
		State: state.New("lab"), StateDir: t.TempDir(), Concurrency: 4,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard,
		Status: pipeline.NewStatus(status, time.Now), Now: time.Now,
	}
}

func TestRunOrderSkipFailureAndState(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		stages  func(calls *[]string) []pipeline.Stage
		want    []string
		wantErr string
	}{
		{
			name: "all run in order",
			stages: func(c *[]string) []pipeline.Stage {
				return []pipeline.Stage{recorder{name: "a", calls: c}, recorder{name: "b", calls: c}}
			},
			want: []string{"run a", "run b"},
		},
		{
			name: "skipped stage does not run",
			stages: func(c *[]string) []pipeline.Stage {
				return []pipeline.Stage{recorder{name: "a", calls: c, skip: "no Pis"}, recorder{name: "b", calls: c}}
			},
			want: []string{"run b"},
		},
		{
			name: "failure stops the runbook and names the stage",
			stages: func(c *[]string) []pipeline.Stage {
				return []pipeline.Stage{recorder{name: "a", calls: c, fail: boom}, recorder{name: "b", calls: c}}
			},
			want:    []string{"run a"},
			wantErr: "a: boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			var status bytes.Buffer
			env := newEnv(t, &status)
			err := pipeline.Pipeline{Stages: tt.stages(&calls)}.Run(context.Background(), env)
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Fatalf("Run = %v, want error %q", err, tt.wantErr)
			}
			if strings.Join(calls, ",") != strings.Join(tt.want, ",") {
				t.Errorf("calls %v, want %v", calls, tt.want)
			}
			// Facts are saved after every stage, also the failing one.
			s, lerr := state.Load(env.StateDir, "lab")
			if lerr != nil || s.Nodes["n1"] == nil {
				t.Errorf("state not saved after the stage: %v", lerr)
			}
			if _, err := os.Stat(filepath.Join(env.StateDir, state.FileName)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	var calls []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := pipeline.Pipeline{Stages: []pipeline.Stage{
		recorder{name: "a", calls: &calls, cancel: cancel},
		recorder{name: "b", calls: &calls},
	}}
	err := p.Run(ctx, newEnv(t, nil))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "before stage b") {
		t.Fatalf("Run = %v, want cancellation before stage b", err)
	}
	if len(calls) != 1 {
		t.Errorf("calls %v: stage b ran after cancellation", calls)
	}
}

func TestSelectAndPlan(t *testing.T) {
	var calls []string
	p := pipeline.Pipeline{Stages: []pipeline.Stage{
		recorder{name: "a", calls: &calls, changes: []pipeline.Change{{Node: "n1", Action: pipeline.Create}}},
		recorder{name: "b", calls: &calls, skip: "no Proxmox section"},
		recorder{name: "c", calls: &calls, changes: []pipeline.Change{{Node: "n1", Action: pipeline.Replace}}},
	}}
	if _, err := p.Select([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "stages: a, b, c") {
		t.Errorf("Select(nope) = %v, want an error listing the stages", err)
	}
	sel, err := p.Select([]string{"c", "a"})
	if err != nil || strings.Join(sel.Names(), ",") != "a,c" {
		t.Fatalf("Select = %v %v, want a,c in pipeline order", sel.Names(), err)
	}
	if from, err := p.From("b"); err != nil || strings.Join(from.Names(), ",") != "b,c" {
		t.Errorf("From(b) = %v %v, want b,c", from.Names(), err)
	}
	if _, err := p.From("nope"); err == nil || !strings.Contains(err.Error(), "stages: a, b, c") {
		t.Errorf("From(nope) = %v, want an error listing the stages", err)
	}
	plans, err := p.Plan(context.Background(), newEnv(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	pipeline.WritePlan(&out, plans, false)
	for _, want := range []string{"a — stage a", "create       1  n1", "skipped: no Proxmox section", "replace      1  n1  <-- !!"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Join(calls, ",") != "plan a,plan c" {
		t.Errorf("calls %v: a skipped stage must not be asked for a plan", calls)
	}
}

// starter is a stage that starts a background service recording its life.
type starter struct {
	name  string
	calls *[]string
	fail  error // the service's error when it stops
}

func (s starter) Name() string  { return s.name }
func (s starter) Title() string { return "stage " + s.name }
func (s starter) Plan(_ context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	err := env.Background("svc", func(context.Context) (func() error, error) { return nil, nil })
	return pipeline.Plan{}, err
}
func (s starter) Run(_ context.Context, env *pipeline.Env) error {
	return env.Background("service "+s.name, func(ctx context.Context) (func() error, error) {
		*s.calls = append(*s.calls, "start "+s.name)
		return func() error {
			<-ctx.Done()
			*s.calls = append(*s.calls, "stop "+s.name)
			return s.fail
		}, nil
	})
}

// TestBackgroundServices: a service a stage starts runs until the last
// stage has run, stops in reverse order of start, and its error is the
// run's; a plan cannot start one.
func TestBackgroundServices(t *testing.T) {
	for _, c := range []struct {
		name    string
		failAt  error // stage c's failure
		svcErr  error
		wantErr string
		want    string
	}{
		{"all run", nil, nil, "", "start a,start b,run c,stop b,stop a"},
		{"a later stage fails", errors.New("c broke"), nil, "c broke", "start a,start b,run c,stop b,stop a"},
		{"a service failed", nil, errors.New("tftp died"), "service b: tftp died", "start a,start b,run c,stop b,stop a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var calls []string
			var status bytes.Buffer
			p := pipeline.Pipeline{Stages: []pipeline.Stage{
				starter{name: "a", calls: &calls},
				starter{name: "b", calls: &calls, fail: c.svcErr},
				recorder{name: "c", calls: &calls, fail: c.failAt},
			}}
			env := newEnv(t, &status)
			err := p.Run(context.Background(), env)
			if got := strings.Join(calls, ","); got != c.want {
				t.Errorf("calls %s, want %s", got, c.want)
			}
			if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("Run = %v, want %q", err, c.wantErr)
			}
			if !strings.Contains(status.String(), "service a stopped with the run") {
				t.Errorf("status:\n%s", status.String())
			}
			if _, err := (starter{name: "p", calls: &calls}).Plan(context.Background(), env); err == nil {
				t.Error("a service started outside a run")
			}
		})
	}
}

// TestRunNotesEachStagesCalls: with a Meter, Run notes the changing calls
// each stage made (only its own, none for a stage that made none), also
// for the stage that failed, and starts afresh on the next Run.
func TestRunNotesEachStagesCalls(t *testing.T) {
	var calls []string
	m := meter{"POST /swarm/join": 3}
	env := newEnv(t, io.Discard)
	env.Meter = m
	p := pipeline.Pipeline{Stages: []pipeline.Stage{
		recorder{name: "a", calls: &calls, meter: &m, call: "POST /swarm/join"},
		recorder{name: "b", calls: &calls},
		recorder{name: "c", calls: &calls, meter: &m, call: "POST /nodes/{id}/update", fail: errors.New("boom")},
	}}
	if err := p.Run(context.Background(), env); err == nil {
		t.Fatal("Run of a failing stage: no error")
	}
	want := []pipeline.StageCalls{
		{Stage: "a", Calls: map[string]int{"POST /swarm/join": 1}},
		{Stage: "b", Calls: map[string]int{}},
		{Stage: "c", Calls: map[string]int{"POST /nodes/{id}/update": 1}},
	}
	if fmt.Sprint(env.Calls) != fmt.Sprint(want) {
		t.Errorf("Calls = %v, want %v", env.Calls, want)
	}
	if env.Calls[0].Total() != 1 || env.Calls[1].Total() != 0 {
		t.Errorf("totals %d, %d", env.Calls[0].Total(), env.Calls[1].Total())
	}
	if err := (pipeline.Pipeline{Stages: p.Stages[1:2]}).Run(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if len(env.Calls) != 1 || env.Calls[0].Stage != "b" {
		t.Errorf("a second Run's Calls = %v, want only b's", env.Calls)
	}
}

// TestFailed finds every node's failure in an error tree (a stage's joined
// errors, a summary carrying its nodes, wrapped in a StageError), each
// node once with its first cause, and none in an error without nodes.
func TestFailed(t *testing.T) {
	a1 := pipeline.NodeErr("a", errors.New("reach a: refused"))
	b := pipeline.NodeErr("b", errors.New("reach b: timeout"))
	a2 := pipeline.NodeErr("a", errors.New("join a: later"))
	summary := pipeline.WithNodes(errors.New("2 of 3 nodes failed"), []*pipeline.NodeError{a1.(*pipeline.NodeError), b.(*pipeline.NodeError)})
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"none", errors.New("boom"), ""},
		{"nil", nil, ""},
		{"joined", errors.Join(a1, errors.New("other"), b), "a: reach a: refused; b: reach b: timeout"},
		{"summary in a stage", &pipeline.StageError{Stage: "swarm", Err: fmt.Errorf("form: %w", summary)}, "a: reach a: refused; b: reach b: timeout"},
		{"first cause kept", errors.Join(a1, a2), "a: reach a: refused"},
		{"nil node error", pipeline.NodeErr("c", nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range pipeline.Failed(tt.err) {
				got = append(got, f.Node+": "+f.Error())
			}
			if strings.Join(got, "; ") != tt.want {
				t.Errorf("Failed = %q, want %q", strings.Join(got, "; "), tt.want)
			}
		})
	}
	if summary.Error() != "2 of 3 nodes failed" {
		t.Errorf("WithNodes changed the message: %q", summary.Error())
	}
}
