package inventory_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

// TestSelfJoinRack: join: self marks the rack's Pis; other racks and the
// VMs stay push (the default); the join endpoint gets its defaults.
func TestSelfJoinRack(t *testing.T) {
	doc := `apiVersion: provision/v1
kind: Lab
metadata: {name: sj}
network: {cidr: 192.168.10.0/24, gateway: 192.168.10.1}
ssh: {authorizedKeys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGPVVGlKnhJV7BQ1FYjdwArZeElwVh+YVKLidECc4Bac admin@sj]}
swarm: {managers: 1}
proxmox:
  apiURL: https://pve1:8006/api2/json
  nodes: [{name: pve1}]
  template: debian-12-cloudinit
  vms:
    - {name: mgr-%d, count: 1, role: manager, ipStart: 192.168.10.11}
pis:
  joinServer: {address: 192.168.10.5}
  racks:
    - {name: r1, count: 2, join: self, ipStart: 192.168.10.101}
    - {name: r2, count: 1, ipStart: 192.168.10.111}
`
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"mgr-1": "", "pi-r1-01": inventory.JoinSelf, "pi-r1-02": inventory.JoinSelf, "pi-r2-01": ""}
	for _, n := range inv.Nodes {
		if n.Join != want[n.Name] {
			t.Errorf("%s: join %q, want %q", n.Name, n.Join, want[n.Name])
		}
	}
	js := inv.Lab.Pis.JoinServer
	if js.Port != inventory.DefaultJoinPort || js.TicketTTL != inventory.DefaultJoinTicketTTL {
		t.Errorf("joinServer defaults: %+v", js)
	}
	if r := inv.Lab.Pis.Racks[1]; r.Join != inventory.JoinPush {
		t.Errorf("rack r2 join %q, want push", r.Join)
	}
}
