package stages_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/ui"
)

// TestIntegrationDestroyAndStatus, on an emulated lab of 3 managers, a VM
// worker and a Pi worker (one dockerd and sshd per network namespace):
// status shows the formed swarm and then a label changed by hand as
// drift; destroying the worker that runs a service's task drains it (the
// task moves to the other worker), makes it leave and removes it, and
// status shows it absent; destroying 2 of the 3 managers is refused
// without --force, with the count and the reachable manager, and changes
// nothing; a second destroy of the worker has nothing to do.
func TestIntegrationDestroyAndStatus(t *testing.T) {
	f := labtest.New(t, t.TempDir(), testWriter{t})
	inv := f.Inventory(t, "dlab.yaml",
		"    - {name: mgr-%d, count: 3, role: manager, ipStart: {{ADDR 11}}}\n    - {name: vm-%d, count: 1, ipStart: {{ADDR 21}}, labels: {tier: compute}}",
		"    - {name: p1, count: 1, ipStart: {{ADDR 101}}}")
	if len(inv.Nodes) != 5 {
		t.Fatalf("test inventory has %d nodes, want 5", len(inv.Nodes))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f.Up(t, ctx, inv.Nodes)

	var out, status bytes.Buffer
	env := f.Env(t, inv, &out, &status)
	conn := stages.NewConnector(stages.SSH{KeyPath: f.KeyPath})
	defer conn.Close()
	if err := (pipeline.Pipeline{Stages: []pipeline.Stage{stages.Swarm{SSH: conn}}}).Run(ctx, env); err != nil {
		t.Fatalf("form the swarm: %v\n%s%s", err, &status, &out)
	}

	// Status of the formed swarm: every node ready and joined, one
	// leader, no drift.
	ss := dStatus(t, ctx, env, conn)
	leaders := 0
	for _, n := range inv.Nodes {
		s := ss[n.Name]
		if s.Swarm != "ready" || s.Stage != stages.StageJoined || s.Role != n.Role || s.IP != n.IP || len(s.Drift) != 0 {
			t.Errorf("%s: %+v, want ready, joined, %s, %s, no drift", n.Name, s, n.Role, n.IP)
		}
		if s.Manager == "leader" {
			leaders++
		}
		if want := map[string]string{inventory.KindVM: "vm", inventory.KindPi: "sd"}[n.Kind]; s.Boot != want {
			t.Errorf("%s boots %q, want %q", n.Name, s.Boot, want)
		}
	}
	if leaders != 1 || len(ss) != 5 {
		t.Errorf("%d leaders among %d lines, want 1 among 5", leaders, len(ss))
	}

	// A label changed by hand is drift.
	mgr := dEngine(t, f, "mgr-1")
	n := dNode(t, ctx, mgr, "vm-1")
	n.Spec.Labels["tier"] = "storage"
	if err := mgr.NodeUpdate(ctx, n.ID, n.Version, n.Spec); err != nil {
		t.Fatal(err)
	}
	ss = dStatus(t, ctx, env, conn)
	if d := ss["vm-1"].Drift; len(d) != 1 || d[0] != "label tier=storage, inventory says compute" {
		t.Errorf("vm-1 drift %q, want the label tier", d)
	}
	var table bytes.Buffer
	stages.WriteStatusTable(&table, statusLines(ss, inv))
	if !strings.Contains(table.String(), "tier=storage") || !strings.Contains(table.String(), "label tier=storage, inventory says compute") {
		t.Errorf("the table does not show the drift:\n%s", &table)
	}

	// A service's one task runs on a worker; destroying that worker moves
	// it to the other.
	loadBusybox(t, f)
	spec := dswarm.ServiceSpec{
		Annotations: dswarm.Annotations{Name: "destroy-probe"},
		TaskTemplate: dswarm.TaskSpec{
			ContainerSpec: &dswarm.ContainerSpec{Image: lab.BusyboxImageTag, Command: []string{"sleep", "3600"}},
			Placement:     &dswarm.Placement{Constraints: []string{"node.role==worker"}},
		},
	}
	svc, err := mgr.ServiceCreate(ctx, spec, dswarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	victim := dTaskNode(t, ctx, mgr, svc.ID, "")
	other := "vm-1"
	if victim == "vm-1" {
		other = inv.Nodes[4].Name
	}
	victimEngine := dEngine(t, f, victim)

	// A netboot root of the victim (as netboot serve leaves one): removed.
	roots := stages.NetbootRootsDir(env.StateDir)
	os.MkdirAll(roots, 0o755)
	overlay := filepath.Join(roots, victim+".qcow2")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", overlay, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v %s", err, b)
	}

	out.Reset()
	counter := &swarm.Counter{}
	d := stages.Destroy{SSH: conn, Nodes: []string{victim}, Prompt: ui.Prompt{Yes: true}, Options: swarm.RemoveOptions{Counter: counter}}
	if err := d.Run(ctx, env); err != nil {
		t.Fatalf("destroy %s: %v\n%s%s", victim, err, &status, &out)
	}
	for _, want := range []string{victim + " (worker) drained, leaves, removed", "roots:  the netboot roots (overlays) of " + victim + " removed", "1 netboot root removed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("destroy output lacks %q:\n%s", want, &out)
		}
	}
	if _, err := os.Stat(overlay); err == nil {
		t.Errorf("the netboot root %s is still there", overlay)
	}
	if got := dTaskNode(t, ctx, mgr, svc.ID, victim); got != other {
		t.Errorf("the task runs on %s, want %s", got, other)
	}
	if info, err := victimEngine.Info(ctx); err != nil || info.Swarm.LocalNodeState != dswarm.LocalNodeStateInactive {
		t.Errorf("%s's engine: %v, swarm state %q, want inactive", victim, err, info.Swarm.LocalNodeState)
	}
	if _, ok := env.State.Nodes[victim]; ok {
		t.Errorf("%s still has a state entry", victim)
	}
	c := counter.Calls()
	if c["POST /swarm/leave"] != 1 || c["DELETE /nodes/{id}"] != 1 || c["POST /nodes/{id}/update"] != 1 {
		t.Errorf("destroy calls %v, want 1 drain, 1 leave, 1 node rm", c)
	}
	ss = dStatus(t, ctx, env, conn)
	if s := ss[victim]; s.Swarm != stages.SwarmAbsent || s.Stage != stages.StageNone {
		t.Errorf("status of %s after destroy: %+v, want absent, no stage", victim, s)
	}

	// 2 of 3 managers: refused without --force, nothing changed.
	out.Reset()
	counter = &swarm.Counter{}
	d = stages.Destroy{SSH: conn, Nodes: []string{"mgr-3", "mgr-2"}, Prompt: ui.Prompt{Yes: true}, Options: swarm.RemoveOptions{Counter: counter}}
	err = d.Run(ctx, env)
	if err == nil || !strings.Contains(err.Error(), "leaves 1 of 3 managers (reachable: mgr-1): quorum lost") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("destroying 2 of 3 managers: %v, want the quorum refusal", err)
	}
	if n := counter.Mutations(); n != 0 {
		t.Errorf("the refused destroy made %d mutating calls: %v", n, counter.Calls())
	}
	managers := 0
	for _, s := range dStatus(t, ctx, env, conn) {
		if s.Role == "manager" && s.Swarm == "ready" {
			managers++
		}
	}
	if managers != 3 {
		t.Errorf("%d managers ready after the refusal, want 3", managers)
	}

	// Without --yes and without a terminal: the plan, then a refusal
	// with the fix, and nothing changed.
	out.Reset()
	counter = &swarm.Counter{}
	d = stages.Destroy{SSH: conn, Nodes: []string{"mgr-3"}, Options: swarm.RemoveOptions{Counter: counter}}
	if err := d.Run(ctx, env); !errors.Is(err, ui.ErrNeedYes) || !strings.Contains(err.Error(), "pass --yes") {
		t.Errorf("destroy without --yes and a terminal: %v, want %v", err, ui.ErrNeedYes)
	}
	if !strings.Contains(out.String(), "mgr-3 (manager) drained, demoted, leaves, removed") || !strings.Contains(out.String(), "managers 3 now, 2 after") {
		t.Errorf("plan of mgr-3:\n%s", &out)
	}
	if n := counter.Mutations(); n != 0 {
		t.Errorf("the unconfirmed destroy made %d mutating calls: %v", n, counter.Calls())
	}

	// Again: nothing to do.
	out.Reset()
	counter = &swarm.Counter{}
	d = stages.Destroy{SSH: conn, Nodes: []string{victim}, Prompt: ui.Prompt{Yes: true}, Options: swarm.RemoveOptions{Counter: counter}}
	if err := d.Run(ctx, env); err != nil {
		t.Fatalf("second destroy: %v\n%s", err, &out)
	}
	if !strings.Contains(out.String(), "nothing to do") || counter.Mutations() != 0 {
		t.Errorf("second destroy: %d mutating calls %v, output:\n%s", counter.Mutations(), counter.Calls(), &out)
	}

	// The whole lab: the swarm is dissolved, every engine is in no swarm,
	// the state forgets the swarm, and status shows every node absent.
	out.Reset()
	d = stages.Destroy{SSH: conn, Prompt: ui.Prompt{Yes: true}}
	if err := d.Run(ctx, env); err != nil {
		t.Fatalf("destroy the whole lab: %v\n%s%s", err, &status, &out)
	}
	if !strings.Contains(out.String(), "the swarm is dissolved") {
		t.Errorf("plan of the whole lab does not say the swarm is dissolved:\n%s", &out)
	}
	for _, n := range inv.Nodes {
		info, err := dEngine(t, f, n.Name).Info(ctx)
		if err != nil || info.Swarm.LocalNodeState != dswarm.LocalNodeStateInactive {
			t.Errorf("%s after destroying the lab: %v, swarm state %q", n.Name, err, info.Swarm.LocalNodeState)
		}
	}
	if env.State.Swarm != nil || len(env.State.Nodes) != 0 {
		t.Errorf("state after destroying the lab: swarm %+v, %d node entries", env.State.Swarm, len(env.State.Nodes))
	}
	// The emulated lab's own record of each node's socket, as `provision
	// lab up` writes it, was removed with the state entries.
	after, err := stages.Status(ctx, f.Env(t, inv, io.Discard, io.Discard), conn)
	if err == nil || !errors.Is(err, swarm.ErrNoSwarm) {
		t.Errorf("status without a swarm: %v, want %v", err, swarm.ErrNoSwarm)
	}
	for _, s := range after {
		if s.Swarm != stages.SwarmAbsent {
			t.Errorf("%s after destroying the lab: swarm %q, want absent", s.Name, s.Swarm)
		}
	}
}

func dStatus(t *testing.T, ctx context.Context, env *pipeline.Env, conn *stages.Connector) map[string]stages.NodeStatus {
	t.Helper()
	ss, err := stages.Status(ctx, env, conn)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	out := map[string]stages.NodeStatus{}
	for _, s := range ss {
		out[s.Name] = s
	}
	return out
}

func statusLines(ss map[string]stages.NodeStatus, inv *inventory.Inventory) []stages.NodeStatus {
	var out []stages.NodeStatus
	for _, n := range inv.Nodes {
		out = append(out, ss[n.Name])
	}
	return out
}

func dEngine(t *testing.T, f *labtest.Fixture, name string) *client.Client {
	t.Helper()
	n, ok := f.Node(name)
	if !ok {
		t.Fatalf("%s is not up", name)
	}
	c, err := lab.NewEngine(n.DockerSocket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dNode(t *testing.T, ctx context.Context, c *client.Client, name string) dswarm.Node {
	t.Helper()
	nodes, err := c.NodeList(ctx, dswarm.NodeListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(nodes, func(n dswarm.Node) bool { return n.Description.Hostname == name })
	if i < 0 {
		t.Fatalf("%s is not in the swarm", name)
	}
	return nodes[i]
}

// dTaskNode waits until the service's task runs on a node other than
// not, and returns that node's name.
func dTaskNode(t *testing.T, ctx context.Context, c *client.Client, service, not string) string {
	t.Helper()
	for {
		tasks, err := c.TaskList(ctx, dswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", service), filters.Arg("desired-state", "running"))})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			if task.Status.State != dswarm.TaskStateRunning {
				continue
			}
			n, _, err := c.NodeInspectWithRaw(ctx, task.NodeID)
			if err == nil && n.Description.Hostname != not {
				return n.Description.Hostname
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("service %s has no running task off %q: %v", service, not, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}
