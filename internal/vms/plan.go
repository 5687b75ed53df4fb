package vms

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fhlab/provision/internal/terraform"
)

// Change is one VM's line in a plan.
type Change struct {
	VM     string
	Host   string
	Action string // create, update, replace, destroy or unchanged
	Detail string
	// Reboot says whether an update restarts the running VM.
	Reboot Reboot
}

// Unchanged is the action of a VM the plan leaves alone.
const Unchanged = "unchanged"

// Changes turns a terraform plan into one line per VM, including the VMs it
// leaves alone; other resources are listed by address.
func Changes(d *Data, p *terraform.Plan) []Change {
	touched := map[string]bool{}
	var out []Change
	for _, c := range p.Changes {
		name := c.Address
		if c.Type == ResourceType && c.Name == ResourceName {
			name = c.Key
		}
		touched[name] = true
		ch := Change{VM: name, Action: string(c.Action)}
		if v, ok := d.TFVars.VMs[name]; ok {
			ch.Host = v.TargetNode
		}
		switch c.Action {
		case terraform.Replace:
			why := make([]string, len(c.Forcing))
			for i, f := range c.Forcing {
				why[i] = explain(f)
			}
			ch.Detail = "DESTROYED and created again (disk lost), forced by " + strings.Join(why, ", ")
		case terraform.Update:
			if c.Type == ResourceType {
				ch.Reboot = RebootOf(c)
			}
			ch.Detail = "in place: " + strings.Join(c.Attrs, ", ") + ch.Reboot.describe(c.Attrs)
		case terraform.Destroy:
			ch.Detail = "DESTROYED (disk lost)"
		case terraform.Create:
			if v, ok := d.TFVars.VMs[name]; ok {
				ch.Detail = fmt.Sprintf("vmid %d, %d cores, %d MiB, %s disk", v.VMID, v.Cores, v.Memory, v.DiskSize)
			}
		}
		out = append(out, ch)
	}
	if !p.Destroy {
		for _, vm := range d.VMs {
			if !touched[vm.Name] {
				out = append(out, Change{VM: vm.Name, Host: vm.Host.Name, Action: Unchanged})
			}
		}
	}
	return out
}

// explain says why an attribute forces a new VM.
func explain(attr string) string {
	switch attr {
	case "force_recreate_on_change_of":
		return "force_recreate_on_change_of (its cloud-init snippets changed)"
	case "cicustom":
		return "cicustom (snippet names changed)"
	case "clone":
		return "clone (another template)"
	case "vmid":
		return "vmid (another VMID)"
	}
	return attr
}

// WriteSummary prints a plan per VM; replacements and destructions loudly.
func WriteSummary(w io.Writer, changes []Change) {
	count := map[string]int{}
	var rebooted, pending []string
	for _, c := range changes {
		count[c.Action]++
		switch {
		case c.Reboot.Needed() && c.Reboot.Automatic:
			rebooted = append(rebooted, c.VM)
		case c.Reboot.Needed():
			pending = append(pending, c.VM)
		}
	}
	fmt.Fprintf(w, "VMs: %d to create, %d to update, %d to REPLACE, %d to DESTROY, %d unchanged.\n",
		count["create"], count["update"], count["replace"], count["destroy"], count[Unchanged])
	sorted := append([]Change(nil), changes...)
	order := map[string]int{"destroy": 0, "replace": 1, "create": 2, "update": 3, Unchanged: 4}
	sort.SliceStable(sorted, func(i, j int) bool { return order[sorted[i].Action] < order[sorted[j].Action] })
	for _, c := range sorted {
		where := ""
		if c.Host != "" {
			where = " on " + c.Host
		}
		switch c.Action {
		case "replace", "destroy":
			fmt.Fprintf(w, "  !! %-9s %s%s: %s\n", strings.ToUpper(c.Action), c.VM, where, c.Detail)
		case Unchanged:
			fmt.Fprintf(w, "     %-9s %s%s\n", c.Action, c.VM, where)
		default:
			fmt.Fprintf(w, "     %-9s %s%s: %s\n", c.Action, c.VM, where, c.Detail)
		}
	}
	if n := count["replace"] + count["destroy"]; n > 0 {
		fmt.Fprintf(w, "WARNING: %d VM(s) will be DESTROYED; what is on their disks is lost.\n", n)
	}
	if len(rebooted) > 0 {
		fmt.Fprintf(w, "WARNING: %s will be rebooted by the provider while the apply runs (automatic_reboot): %s\n",
			vmCount(len(rebooted)), strings.Join(rebooted, ", "))
	}
	if len(pending) > 0 {
		verb := "needs"
		if len(pending) > 1 {
			verb = "need"
		}
		fmt.Fprintf(w, "NOTE: %s %s a reboot that automatic_reboot=false leaves to you: %s\n",
			vmCount(len(pending)), verb, strings.Join(pending, ", "))
	}
}

func vmCount(n int) string {
	if n == 1 {
		return "1 VM"
	}
	return fmt.Sprintf("%d VMs", n)
}

// AppliedSummary is the line a successful apply ends with: what the
// applied plan did, e.g. "15 created, 0 changed, 0 destroyed"; replaced
// and rebooted VMs are added when there are any.
func AppliedSummary(changes []Change) string {
	count := map[string]int{}
	rebooted := 0
	for _, c := range changes {
		count[c.Action]++
		if c.Reboot.Needed() && c.Reboot.Automatic {
			rebooted++
		}
	}
	s := fmt.Sprintf("%d created, %d changed, %d destroyed", count["create"], count["update"], count["destroy"])
	if n := count["replace"]; n > 0 {
		s += fmt.Sprintf(", %d replaced", n)
	}
	if rebooted > 0 {
		s += fmt.Sprintf(", %d rebooted", rebooted)
	}
	return s
}
