package vms_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"

	"github.com/fhlab/provision/internal/terraform"
	"github.com/fhlab/provision/internal/vms"
)

func planFixture(t *testing.T, name string) *terraform.Plan {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "plans", name))
	if err != nil {
		t.Fatal(err)
	}
	var js tfjson.Plan
	if err := json.Unmarshal(b, &js); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &terraform.Plan{Changes: terraform.Summarize(&js), JSON: &js}
}

// The plan summary says, per VM, whether the Telmate provider will reboot
// it to apply an in-place change, and why; and how many VMs in total.
func TestPlanSummaryNamesReboots(t *testing.T) {
	d := build(t, "../../inventory/local.yaml")
	const reboots = " — REBOOTS (automatic_reboot)"
	cases := []struct {
		fixture, vm string
		detail      string // the VM's whole line after "name on host: "
	}{
		{"hardware-a.json", "mgr-1", "in place: memory" + reboots},
		{"hardware-a.json", "mgr-2", "in place: description, tags"},
		{"hardware-a.json", "mgr-3", "in place: automatic_reboot, memory — needs a reboot for memory, which automatic_reboot=false leaves to you: the apply reports an error for it"},
		{"hardware-a.json", "vm-1", "in place: memory, vm_state"},
		{"hardware-a.json", "vm-2", "in place: cpu" + reboots},
		{"hardware-a.json", "vm-3", "in place: cpu"},
		{"hardware-a.json", "vm-4", "in place: disks"},
		{"hardware-a.json", "vm-5", "in place: disks" + reboots},
		{"hardware-a.json", "vm-6", "in place: network"},
		{"hardware-b.json", "mgr-1", "in place: ipconfig0" + reboots},
		{"hardware-b.json", "mgr-2", "in place: memory"},
		{"hardware-b.json", "mgr-3", "in place: sshkeys"},
		{"hardware-b.json", "vm-1", "in place: balloon" + reboots},
		{"hardware-b.json", "vm-2", "in place: memory, tags — REBOOTS for memory (automatic_reboot)"},
		{"hardware-b.json", "vm-3", "in place: bios" + reboots},
		{"hardware-b.json", "vm-4", "in place: cpu"},
		{"hardware-b.json", "vm-5", "in place: automatic_reboot, automatic_reboot_severity, memory — needs a reboot for memory, which automatic_reboot=false leaves to you: the apply reports a warning for it"},
		{"hardware-b.json", "vm-6", "DESTROYED and created again (disk lost), forced by cicustom (snippet names changed)"},
	}
	changes := map[string][]vms.Change{}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.fixture, ".json")+"/"+c.vm, func(t *testing.T) {
			cs, ok := changes[c.fixture]
			if !ok {
				cs = vms.Changes(d, planFixture(t, c.fixture))
				changes[c.fixture] = cs
			}
			for _, ch := range cs {
				if ch.VM != c.vm {
					continue
				}
				if ch.Detail != c.detail {
					t.Errorf("detail\n got %q\nwant %q", ch.Detail, c.detail)
				}
				return
			}
			t.Fatalf("no line for %s", c.vm)
		})
	}
}

func TestPlanSummaryCountsReboots(t *testing.T) {
	d := build(t, "../../inventory/local.yaml")
	cases := []struct {
		fixture string
		want    []string
		not     []string
	}{
		{"hardware-a.json", []string{
			"VMs: 0 to create, 9 to update, 0 to REPLACE, 0 to DESTROY, 0 unchanged.",
			"     update    mgr-1 on pve1: in place: memory — REBOOTS (automatic_reboot)\n",
			"WARNING: 3 VMs will be rebooted by the provider while the apply runs (automatic_reboot): mgr-1, vm-2, vm-5\n",
			"NOTE: 1 VM needs a reboot that automatic_reboot=false leaves to you: mgr-3\n",
		}, nil},
		{"hardware-b.json", []string{
			"WARNING: 4 VMs will be rebooted by the provider while the apply runs (automatic_reboot): mgr-1, vm-1, vm-2, vm-3\n",
			"WARNING: 1 VM(s) will be DESTROYED",
		}, nil},
		// The field report's change: every worker's memory at once.
		{"workers-memory.json", []string{
			"VMs: 0 to create, 6 to update, 0 to REPLACE, 0 to DESTROY, 3 unchanged.",
			"WARNING: 6 VMs will be rebooted by the provider while the apply runs (automatic_reboot): vm-1, vm-2, vm-3, vm-4, vm-5, vm-6\n",
		}, []string{"NOTE:", "DESTROYED"}},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			var b bytes.Buffer
			vms.WriteSummary(&b, vms.Changes(d, planFixture(t, c.fixture)))
			for _, s := range c.want {
				if !strings.Contains(b.String(), s) {
					t.Errorf("summary lacks %q:\n%s", s, b.String())
				}
			}
			for _, s := range c.not {
				if strings.Contains(b.String(), s) {
					t.Errorf("summary has %q:\n%s", s, b.String())
				}
			}
		})
	}
}

func TestAppliedSummary(t *testing.T) {
	d := build(t, "../../inventory/local.yaml")
	cases := []struct {
		fixture string
		want    string
	}{
		{"hardware-a.json", "0 created, 9 changed, 0 destroyed, 3 rebooted"},
		{"hardware-b.json", "0 created, 8 changed, 0 destroyed, 1 replaced, 4 rebooted"},
		{"workers-memory.json", "0 created, 6 changed, 0 destroyed, 6 rebooted"},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			if got := vms.AppliedSummary(vms.Changes(d, planFixture(t, c.fixture))); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
	if got := vms.AppliedSummary(nil); got != "0 created, 0 changed, 0 destroyed" {
		t.Errorf("empty plan: %q", got)
	}
}
