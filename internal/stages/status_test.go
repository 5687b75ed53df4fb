package stages_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/swarm"
)

var updateStatus = flag.Bool("update", false, "rewrite testdata/status/*.golden from the current output")

// statusFixture is a lab of every kind of line: a leader, a manager
// whose role drifted, a VM worker with a label changed by hand and one set
// by hand besides the inventory's, a netbooted Pi recorded as joined that
// the swarm lost, an SD Pi never reached, and a swarm node the inventory
// does not list.
func statusFixture() (*inventory.Inventory, *state.State, []swarm.Row) {
	inv := &inventory.Inventory{Nodes: []inventory.Node{
		{Name: "mgr-1", Kind: inventory.KindVM, Role: "manager", IP: "192.0.2.11", Labels: map[string]string{"tier": "control"}},
		{Name: "mgr-2", Kind: inventory.KindVM, Role: "manager", IP: "192.0.2.12", Labels: map[string]string{"tier": "control"}},
		{Name: "vm-1", Kind: inventory.KindVM, Role: "worker", IP: "192.0.2.21", Labels: map[string]string{"tier": "compute"}},
		{Name: "p1-01", Kind: inventory.KindPi, Role: "worker", IP: "192.0.2.101", Boot: inventory.BootNetboot, Labels: map[string]string{"rack": "p1"}},
		{Name: "p1-02", Kind: inventory.KindPi, Role: "worker", IP: "192.0.2.102", Boot: inventory.BootSD, Labels: map[string]string{"rack": "p1"}},
	}}
	st := state.New("lab")
	for _, n := range []string{"mgr-1", "mgr-2", "vm-1", "p1-01"} {
		f := st.Node(n)
		f.SSHHostKey, f.SwarmNodeID = "SHA256:x", "id-"+n
	}
	st.Node("p1-02").IP = "192.0.2.102"
	st.Terraform = map[string]string{"vms.mgr-1.id": "pve1/qemu/4101"}
	rows := []swarm.Row{
		{Name: "mgr-1", Role: "manager", State: "ready", Availability: "active", Manager: "leader", Labels: map[string]string{"tier": "control"}},
		{Name: "mgr-2", Role: "worker", State: "ready", Availability: "active", Labels: map[string]string{"tier": "control"}},
		{Name: "vm-1", Role: "worker", State: "down", Availability: "drain", Labels: map[string]string{"tier": "storage", "gpu": "yes"}},
		{Name: "old-9", Role: "worker", State: "down", Availability: "active", Addr: "192.0.2.99"},
	}
	return inv, st, rows
}

func TestStatusGolden(t *testing.T) {
	inv, st, rows := statusFixture()
	cases := map[string][]stages.NodeStatus{
		"formed":  stages.BuildStatus(inv, st, rows, true),
		"unknown": stages.BuildStatus(inv, st, nil, false),
	}
	for name, ss := range cases {
		for _, format := range []string{"table", "json"} {
			t.Run(name+"-"+format, func(t *testing.T) {
				var b bytes.Buffer
				write := stages.WriteStatusTable
				if format == "json" {
					write = stages.WriteStatusJSON
				}
				if err := write(&b, ss); err != nil {
					t.Fatal(err)
				}
				golden := filepath.Join("testdata", "status", name+"."+format+".golden")
				if *updateStatus {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -run TestStatusGolden -update)", err)
				}
				if b.String() != string(want) {
					t.Errorf("%s differs from %s (-update rewrites it):\n%s", format, golden, b.String())
				}
			})
		}
	}
}

// TestStageReached: the stage comes from the last fact the state records.
func TestStageReached(t *testing.T) {
	inv, st, _ := statusFixture()
	want := map[string]string{"mgr-1": stages.StageJoined, "p1-01": stages.StageJoined, "p1-02": stages.StageNone}
	for _, n := range inv.Nodes {
		if w, ok := want[n.Name]; ok {
			if got := stages.StageReached(st, n); got != w {
				t.Errorf("%s: stage %q, want %q", n.Name, got, w)
			}
		}
	}
	st.Nodes["mgr-1"].SwarmNodeID = ""
	if got := stages.StageReached(st, inv.Nodes[0]); got != stages.StageReachable {
		t.Errorf("without a node ID: %q, want %q", got, stages.StageReachable)
	}
	delete(st.Nodes, "mgr-1")
	if got := stages.StageReached(st, inv.Nodes[0]); got != stages.StageVM {
		t.Errorf("with only terraform's output: %q, want %q", got, stages.StageVM)
	}
}
