package inventory

import (
	"os"
	"strings"
	"testing"
)

// TestAddRack: the new rack is one line after the last rack, indented as
// the racks are; every other byte of the file is as it was; the result
// parses and expands to the old nodes plus the rack's.
func TestAddRack(t *testing.T) {
	path := "../../inventory/example.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := Parse(path, data, OSFS{})
	if err != nil {
		t.Fatal(err)
	}
	r := Rack{Name: "r5", Count: 4, Boot: BootSD, IPStart: "192.168.11.200", Labels: map[string]string{"storage": "nvme", "zone": "b"}}
	out, line, err := AddRack(path, data, r)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	want := "    - {name: r5, count: 4, boot: sd, ipStart: 192.168.11.200, labels: {storage: nvme, zone: b}}"
	if lines[line-1] != want {
		t.Fatalf("line %d: %q, want %q", line, lines[line-1], want)
	}
	if rest := strings.Join(append(lines[:line-1:line-1], lines[line:]...), "\n"); rest != string(data) {
		t.Errorf("the rest of the file changed")
	}
	after, err := Parse(path, out, OSFS{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Nodes) != len(before.Nodes)+4 || after.Nodes[len(after.Nodes)-1].Name != "pi-r5-04" {
		t.Errorf("%d nodes after, %d before; last %s", len(after.Nodes), len(before.Nodes), after.Nodes[len(after.Nodes)-1].Name)
	}
	if after.Line("pis.racks[4].name") != line {
		t.Errorf("the rack's line is %d, AddRack said %d", after.Line("pis.racks[4].name"), line)
	}
}

func TestAddRackRefusals(t *testing.T) {
	for name, c := range map[string]struct{ file, want string }{
		"no racks":   {"apiVersion: provision/v1\nkind: Lab\n", "no pis.racks section"},
		"flow racks": {"pis:\n  racks: [{name: r1, count: 1}]\n", "add the rack by hand"},
		"not yaml":   {"pis: [\n", "lab.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := AddRack("lab.yaml", []byte(c.file), Rack{Name: "r9", Count: 1})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
}
