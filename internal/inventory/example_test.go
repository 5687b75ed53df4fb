package inventory_test

import (
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

func TestExampleInventories(t *testing.T) {
	inv, err := inventory.Load("../../inventory/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, n := range inv.Nodes {
		counts[n.Kind+"/"+n.Role]++
	}
	if len(inv.Nodes) != 159 || counts["vm/manager"] != 3 || counts["vm/worker"] != 12 || counts["pi/worker"] != 144 {
		t.Fatalf("example.yaml expands to %d nodes %v, want 159 (3 managers, 12 VM workers, 144 Pis)", len(inv.Nodes), counts)
	}
	hosts := map[string]bool{}
	for _, n := range inv.Nodes {
		if n.Role == inventory.Manager {
			if hosts[n.Host] {
				t.Errorf("two managers on %s", n.Host)
			}
			hosts[n.Host] = true
		}
	}
}

func TestLocalInventory(t *testing.T) {
	inv, err := inventory.Load("../../inventory/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var managers, pis int
	for _, n := range inv.Nodes {
		if n.Role == inventory.Manager {
			managers++
		}
		if n.Kind == inventory.KindPi {
			pis++
		}
	}
	if len(inv.Nodes) != 15 || managers != 3 || pis == 0 {
		t.Fatalf("local.yaml: %d nodes, %d managers, %d Pis; want 15 nodes, 3 managers, some Pis", len(inv.Nodes), managers, pis)
	}
}
