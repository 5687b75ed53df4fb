package stages_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/swarm"
)

// TestIntegrationRollStep rolls one manager of a real three-manager swarm
// with a change that cuts its power and powers it on again (as the
// provider's reboot does to a VM): drained, changed, back (its own engine
// in the swarm, Ready and reachable for the others), active again, in that
// order. With another manager's dockerd stopped, the same step is refused
// before anything is drained: one manager of three would be left.
func TestIntegrationRollStep(t *testing.T) {
	f := labtest.New(t, t.TempDir(), testWriter{t})
	inv := f.Inventory(t, "roll.yaml", "    - {name: mgr-%d, count: 3, role: manager, ipStart: {{ADDR 11}}}\n    - {name: vm-%d, count: 1, ipStart: {{ADDR 21}}}", "    - {name: p1, count: 1, ipStart: {{ADDR 101}}}")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	nodes := inv.Nodes[:4]
	f.Up(t, ctx, nodes)
	if _, out, err := runSwarm(t, f, &inventory.Inventory{Lab: inv.Lab, File: inv.File, Nodes: nodes}, &lockedBuffer{}); err != nil {
		t.Fatalf("form: %v\n%s", err, out)
	}
	members := map[string]*swarm.Member{}
	for _, n := range nodes {
		ln, _ := f.Node(n.Name)
		sock := ln.DockerSocket
		members[n.Name] = &swarm.Member{Name: n.Name, Addr: n.IP, Role: n.Role, Connect: func(context.Context) (swarm.Endpoint, error) {
			return swarm.Endpoint{Where: "unix://" + sock, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			}}, nil
		}}
		defer members[n.Name].Close()
	}
	control := members["mgr-2"]
	if err := control.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var steps []string
	opts := swarm.RollOptions{RemoveOptions: swarm.RemoveOptions{Poll: 200 * time.Millisecond, Progress: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, strings.TrimSpace(fmt.Sprintf(format, args...)))
	}}}
	changed := false
	powerCycle := func(ctx context.Context) error {
		changed = true
		mu.Lock()
		steps = append(steps, "(power cycle)")
		mu.Unlock()
		if err := f.Lab.PowerOff(ctx, "mgr-1"); err != nil {
			return err
		}
		specs, err := lab.SpecsFromInventory(nodes[:1], false)
		if err != nil {
			return err
		}
		_, err = f.Lab.Up(ctx, specs)
		return err
	}
	if err := swarm.RollStep(ctx, "mgr-1", control, []*swarm.Member{members["mgr-1"]}, powerCycle, opts); err != nil {
		t.Fatalf("roll mgr-1: %v\n%s", err, strings.Join(steps, "\n"))
	}
	want := []string{"roll mgr-1: draining mgr-1", "roll mgr-1: changing mgr-1", "(power cycle)", "roll mgr-1: waiting until mgr-1 is Ready", "roll mgr-1: mgr-1 Ready; availability back to active"}
	if strings.Join(steps, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}
	// Every node active and, once the managers settled (a leader election
	// leaves the nodes' status unknown for a moment), Ready.
	for i := 0; ; i++ {
		var notReady []string
		for _, n := range nodeList(t, f, "mgr-2") {
			if n.Spec.Availability != "active" {
				t.Fatalf("%s after the roll: %s", n.Description.Hostname, n.Spec.Availability)
			}
			if n.Status.State != "ready" {
				notReady = append(notReady, n.Description.Hostname+" "+string(n.Status.State))
			}
		}
		if len(notReady) == 0 {
			break
		}
		if i == 120 {
			t.Fatalf("not Ready a minute after the roll: %v", notReady)
		}
		time.Sleep(500 * time.Millisecond)
	}

	f.StopDockerd(t, "mgr-3")
	// mgr-3 is seen unreachable once its heartbeats are missed.
	for i := 0; ; i++ {
		unreachable := false
		for _, n := range nodeList(t, f, "mgr-2") {
			unreachable = unreachable || n.Description.Hostname == "mgr-3" && n.ManagerStatus != nil && n.ManagerStatus.Reachability == "unreachable"
		}
		if unreachable {
			break
		}
		if i == 120 {
			t.Fatal("mgr-3 still reachable a minute after its dockerd stopped")
		}
		time.Sleep(500 * time.Millisecond)
	}
	changed, steps = false, nil
	err := swarm.RollStep(ctx, "mgr-1", control, []*swarm.Member{members["mgr-1"]}, powerCycle, opts)
	if err == nil || !strings.Contains(err.Error(), "changing manager mgr-1 leaves 1 of 3 managers up and reachable: quorum needs 2; nothing was changed") {
		t.Errorf("roll with mgr-3 down: %v", err)
	}
	if changed || len(steps) > 0 {
		t.Errorf("the refused roll did something: %v", steps)
	}
}
