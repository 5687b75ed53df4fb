package stages

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/vms"
)

// TestRollSteps: only swarm nodes the apply takes down roll (a reboot the
// provider makes, or a replacement), workers by Proxmox host in host
// order, then managers one at a time; a VM created, changed in place
// without a reboot, with the reboot off, or not in the swarm yet does not.
func TestRollSteps(t *testing.T) {
	inv := &inventory.Inventory{Nodes: []inventory.Node{
		{Name: "mgr-1", Role: inventory.Manager}, {Name: "mgr-2", Role: inventory.Manager},
		{Name: "vm-1"}, {Name: "vm-2"}, {Name: "vm-3"}, {Name: "vm-4"}, {Name: "vm-5"}, {Name: "vm-6"}, {Name: "vm-7"},
	}}
	st := state.New("lab")
	for _, n := range []string{"mgr-1", "mgr-2", "vm-1", "vm-2", "vm-3", "vm-4", "vm-5", "vm-6"} {
		st.Node(n).SwarmNodeID = "id-" + n
	}
	env := &pipeline.Env{Inventory: inv, State: st}
	reboot := vms.Reboot{Attrs: []string{"memory"}, Automatic: true}
	changes := []vms.Change{
		{VM: "mgr-2", Host: "pve2", Action: "update", Reboot: reboot},
		{VM: "vm-3", Host: "pve3", Action: "update", Reboot: reboot},
		{VM: "vm-1", Host: "pve1", Action: "replace"},
		{VM: "vm-2", Host: "pve3", Action: "update", Reboot: reboot},
		{VM: "mgr-1", Host: "pve1", Action: "update", Reboot: reboot},
		{VM: "vm-4", Host: "pve1", Action: "update"},                                                // hot-plugged
		{VM: "vm-5", Host: "pve2", Action: "update", Reboot: vms.Reboot{Attrs: []string{"memory"}}}, // automatic_reboot off
		{VM: "vm-6", Host: "pve2", Action: "create"},
		{VM: "vm-7", Host: "pve2", Action: "update", Reboot: reboot}, // not in the swarm
	}
	got := fmt.Sprint(rollSteps(env, changes))
	want := "[{pve1 [vm-1]} {pve3 [vm-3 vm-2]} {mgr-2 [mgr-2]} {mgr-1 [mgr-1]}]"
	if got != want {
		t.Errorf("rollSteps = %s, want %s", got, want)
	}
	if s := rollSteps(env, changes[5:]); len(s) != 0 {
		t.Errorf("nothing to roll: %v", s)
	}
}

// TestSoleManager: a roll that would take down the only manager is refused
// before anything is applied; with three managers, or without the
// manager in the roll, it is not.
func TestSoleManager(t *testing.T) {
	one := &inventory.Inventory{Nodes: []inventory.Node{{Name: "mgr-1", Role: inventory.Manager}, {Name: "vm-1"}}}
	three := &inventory.Inventory{Nodes: []inventory.Node{{Name: "mgr-1", Role: inventory.Manager}, {Name: "mgr-2", Role: inventory.Manager}, {Name: "mgr-3", Role: inventory.Manager}}}
	withMgr := []rollStep{{Name: "pve1", VMs: []string{"vm-1"}}, {Name: "mgr-1", VMs: []string{"mgr-1"}}}
	if err := soleManager(one, withMgr); err == nil || !strings.Contains(err.Error(), "the swarm's only manager") || !strings.Contains(err.Error(), "--all-at-once") {
		t.Errorf("one manager rolled: %v", err)
	}
	if err := soleManager(one, withMgr[:1]); err != nil {
		t.Errorf("only a worker rolled: %v", err)
	}
	if err := soleManager(three, withMgr); err != nil {
		t.Errorf("three managers: %v", err)
	}
}
