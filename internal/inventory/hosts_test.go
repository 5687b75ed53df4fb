package inventory_test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

// Every bad field of every host is reported at once, each on its line.
func TestHostFieldProblems(t *testing.T) {
	probs := problemsOf(t, filepath.Join("testdata", "invalid", "host-bad-fields.yaml"))
	want := []struct {
		line        int
		field, text string
	}{
		{25, "hosts[0].arch", `"x86_64": use amd64 or arm64`},
		{26, "hosts[1].role", `"boss": use manager or worker`},
		{27, "hosts[2].sshPort", "70000 is not a TCP port"},
		{28, "hosts[3].address", `"gpu4.lab" is not an IPv4 address`},
		{29, "hosts[4].labels.kind", `"kind" is a label provision sets itself`},
		{30, "hosts[5].name", `"GPU_7" is not a valid hostname`},
	}
	for _, w := range want {
		found := false
		for _, p := range probs {
			found = found || p.Line == w.line && p.Field == w.field && strings.Contains(p.Msg, w.text)
		}
		if !found {
			t.Errorf("no problem :%d: %s: ...%s...; got:\n%v", w.line, w.field, w.text, probs)
		}
	}
}

// A host becomes one node with kind=host, its own failure domain, and the
// inventory's SSH user and port unless it sets its own.
func TestHostsExpand(t *testing.T) {
	src := `apiVersion: provision/v1
kind: Lab
metadata: {name: byo}
network: {cidr: 192.168.10.0/24, gateway: 192.168.10.1}
ssh:
  authorizedKeys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGPVVGlKnhJV7BQ1FYjdwArZeElwVh+YVKLidECc4Bac admin@test-lab]
  port: 2222
hosts:
  - {name: old-1, address: 192.168.10.5, role: manager}
  - {name: gpu-1, address: 192.168.10.6, sshUser: root, sshPort: 22, arch: arm64, labels: {gpu: a100}}
`
	inv, err := inventory.Parse("byo.yaml", []byte(src), mapFS{})
	if err != nil {
		t.Fatal(err)
	}
	want := []inventory.Node{
		{Name: "old-1", Kind: "host", Role: "manager", IP: "192.168.10.5", Arch: "amd64", SSHUser: "provision", SSHPort: 2222,
			Labels: map[string]string{"kind": "host", "arch": "amd64", "role": "manager"}},
		{Name: "gpu-1", Kind: "host", Role: "worker", IP: "192.168.10.6", Arch: "arm64", SSHUser: "root", SSHPort: 22,
			Labels: map[string]string{"kind": "host", "arch": "arm64", "role": "worker", "gpu": "a100"}},
	}
	if len(inv.Nodes) != len(want) {
		t.Fatalf("%d nodes, want %d", len(inv.Nodes), len(want))
	}
	for i, w := range want {
		got := inv.Nodes[i]
		got.Source = inventory.Pos{}
		w.Source = inventory.Pos{}
		if got.Name != w.Name || got.Kind != w.Kind || got.Role != w.Role || got.IP != w.IP || got.Arch != w.Arch ||
			got.SSHUser != w.SSHUser || got.SSHPort != w.SSHPort || !reflect.DeepEqual(got.Labels, w.Labels) {
			t.Errorf("node %d = %+v, want %+v", i, got, w)
		}
		if fd := got.FailureDomain(); fd != "machine "+w.Name {
			t.Errorf("%s: failure domain %q", w.Name, fd)
		}
	}
}
