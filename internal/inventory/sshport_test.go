package inventory_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

// TestProxmoxSSHPort: proxmox.nodes[].sshPort is 1-65535 when written
// (an explicit 0 is refused, not turned into 22), 0 when left out.
func TestProxmoxSSHPort(t *testing.T) {
	const head = `apiVersion: provision/v1
kind: Lab
metadata:
  name: test-lab
network:
  cidr: 192.168.10.0/24
  gateway: 192.168.10.1
ssh:
  authorizedKeys:
    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGPVVGlKnhJV7BQ1FYjdwArZeElwVh+YVKLidECc4Bac admin@test-lab
proxmox:
  apiURL: https://pve1:8006/api2/json
  template: debian-12-cloudinit
  vms:
    - {name: mgr-%d, count: 3, role: manager, ipStart: 192.168.10.11}
  nodes:
    - {name: pve1}
`
	for _, tc := range []struct {
		name, node string
		want       int    // SSHPort of pve2 when it loads
		problem    string // else the problem on line 18
	}{
		{"left out", "{name: pve2}", 0, ""},
		{"set", "{name: pve2, sshPort: 2222}", 2222, ""},
		{"highest", "{name: pve2, sshPort: 65535}", 65535, ""},
		{"zero", "{name: pve2, sshPort: 0}", 0, "0 is not a TCP port (1-65535; leave sshPort out for 22)"},
		{"too high", "{name: pve2, sshPort: 65536}", 0, "65536 is not a TCP port"},
		{"negative", "{name: pve2, sshPort: -22}", 0, "-22 is not a TCP port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lab.yaml")
			if err := os.WriteFile(path, []byte(head+"    - "+tc.node+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			inv, err := inventory.Load(path)
			if tc.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := inv.Lab.Proxmox.Nodes[1].SSHPort; got != tc.want {
					t.Errorf("sshPort = %d, want %d", got, tc.want)
				}
				return
			}
			var probs inventory.Problems
			if !errors.As(err, &probs) || len(probs) != 1 {
				t.Fatalf("want one problem, got %v", err)
			}
			p := probs[0]
			if p.File != path || p.Line != 18 || p.Field != "proxmox.nodes[1].sshPort" || !strings.Contains(p.Msg, tc.problem) {
				t.Errorf("problem %s:%d: %s: %s; want line 18, proxmox.nodes[1].sshPort, %q", p.File, p.Line, p.Field, p.Msg, tc.problem)
			}
		})
	}
}
