package vms

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/fhlab/provision/internal/terraform"
)

// Reboot is what an in-place update does to a running VM.
//
// The Telmate provider (3.0.2-rc07) writes the new configuration, then asks
// Proxmox for the VM's pending changes: whatever Proxmox could not apply to
// the running VM (it keeps every option it cannot hot-plug pending, e.g.
// memory, cores or the CPU type with the default hotplug
// "network,disk,usb") makes the VM need a restart, and so does, by the
// provider's own rule, any change of the cloud-init settings (ciuser,
// cipassword, cicustom, searchdomain, nameserver, ipconfigN, ciupgrade
// turned on). With automatic_reboot (the default) the provider then reboots
// the VM itself; without it the apply reports the VM as needing a reboot
// (an error unless automatic_reboot_severity is "warning").
type Reboot struct {
	// Attrs are the changed attributes that need a restart; empty when the
	// update is applied to the running VM.
	Attrs []string
	// Automatic: automatic_reboot is on, the provider reboots the VM.
	Automatic bool
	// Severity is automatic_reboot_severity (error or warning), what the
	// apply reports when Automatic is off.
	Severity string
}

// Needed reports whether the update needs a restart of the VM.
func (r Reboot) Needed() bool { return len(r.Attrs) > 0 }

// RebootOf says whether applying the in-place update c restarts the VM.
// Only updates of running VMs (vm_state other than "stopped") can.
func RebootOf(c terraform.Change) Reboot {
	if c.Action != terraform.Update {
		return Reboot{}
	}
	after := c.After
	if s, _ := after["vm_state"].(string); s == "stopped" {
		return Reboot{}
	}
	r := Reboot{Automatic: true, Severity: "error"}
	if b, ok := after["automatic_reboot"].(bool); ok {
		r.Automatic = b
	}
	if s, _ := after["automatic_reboot_severity"].(string); s != "" {
		r.Severity = s
	}
	// What hot-plugs is decided by the running VM's setting; a changed
	// hotplug is itself pending until the restart.
	hp, ok := c.Before["hotplug"]
	if !ok {
		hp = after["hotplug"]
	}
	hot := hotplug(hp)
	for _, a := range c.Attrs {
		if needsRestart(a, c.Before[a], after[a], hot) {
			r.Attrs = append(r.Attrs, a)
		}
	}
	return r
}

// appliedLive are attributes whose change never restarts the VM: Proxmox
// applies them to a running VM at once (its "fast-plug" options: name,
// description, tags, onboot, startup, protection), they are other API calls
// (pool, HA, migration, power state) or they are the provider's own
// settings and read-only values. sshkeys is a cloud-init option Proxmox
// applies at once and the provider does not count as needing a reboot.
func appliedLive(attr string) bool {
	switch attr {
	case "name", "description", "desc", "tags", "onboot", "start_at_node_boot", "startup", "startup_shutdown",
		"protection", "pool", "hastate", "hagroup", "target_node", "target_nodes", "vm_state",
		"automatic_reboot", "automatic_reboot_severity", "timeouts", "clone_wait", "additional_wait",
		"agent_timeout", "define_connection_info", "skip_ipv4", "skip_ipv6", "ci_wait", "os_type",
		"os_network_config", "ssh_forward_ip", "ssh_user", "ssh_private_key", "ssh_host", "ssh_port",
		"force_create", "full_clone", "reboot_required", "current_node", "default_ipv4_address",
		"default_ipv6_address", "unused_disk", "linked_vmid", "id", "sshkeys":
		return true
	}
	return false
}

// needsRestart reports whether changing attr from before to after leaves
// a pending change on a running VM with the given hotplug features.
func needsRestart(attr string, before, after any, hot map[string]bool) bool {
	switch {
	case appliedLive(attr):
		return false
	case attr == "ciupgrade":
		on, _ := after.(bool)
		return on
	case attr == "memory":
		return !hot["memory"]
	case attr == "vcpus":
		return !hot["cpu"]
	case attr == "network":
		return !hot["network"]
	case attr == "usb" || attr == "usbs" || attr == "tablet":
		return !hot["usb"]
	case attr == "balloon":
		// Turning the balloon device on or off is not hot-pluggable.
		return isZero(before) != isZero(after)
	case attr == "cpu":
		// Only the vCPU count (with cpu hotplug) and the cgroup limits
		// change live; cores, sockets, type, NUMA and affinity do not.
		for _, leaf := range changedLeaves(before, after, "") {
			switch {
			case strings.HasSuffix(leaf, ".vcores") && hot["cpu"]:
			case strings.HasSuffix(leaf, ".limit"), strings.HasSuffix(leaf, ".units"):
			default:
				return true
			}
		}
		return false
	case attr == "disks":
		// SCSI and VirtIO disks are hot-plugged, moved and grown live
		// (with disk hotplug); IDE and SATA slots, the cloud-init drive
		// among them, are not.
		if !hot["disk"] {
			return true
		}
		for _, leaf := range changedLeaves(before, after, "") {
			if strings.Contains(leaf, ".ide") || strings.Contains(leaf, ".sata") || strings.Contains(leaf, "cloudinit") {
				return true
			}
		}
		return false
	case attr == "disk":
		// The flat disk list: only a grown size is sure to apply live.
		if !hot["disk"] {
			return true
		}
		for _, leaf := range changedLeaves(before, after, "") {
			if !strings.HasSuffix(leaf, ".size") {
				return true
			}
		}
		return false
	}
	// Everything else (hardware, firmware, boot order, agent, the
	// cloud-init settings) stays pending until the VM restarts.
	return true
}

// hotplug parses Proxmox's hotplug option: a list of features, "1" for the
// default set, "0" for none. Unset it is the provider's default.
func hotplug(v any) map[string]bool {
	s, _ := v.(string)
	switch s {
	case "", "1":
		s = "network,disk,usb"
	case "0":
		s = ""
	}
	out := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out[f] = true
		}
	}
	return out
}

func isZero(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case float64:
		return t == 0
	case string:
		return t == "" || t == "0"
	}
	return false
}

// changedLeaves lists the dotted paths (list indexes as numbers) where
// before and after differ, e.g. ".0.ide.0.ide2.0.cloudinit.0.storage".
func changedLeaves(before, after any, prefix string) []string {
	bm, bok := before.(map[string]any)
	am, aok := after.(map[string]any)
	if bok || aok {
		keys := map[string]bool{}
		for k := range bm {
			keys[k] = true
		}
		for k := range am {
			keys[k] = true
		}
		var out []string
		for k := range keys {
			out = append(out, changedLeaves(bm[k], am[k], prefix+"."+k)...)
		}
		sort.Strings(out)
		return out
	}
	bl, bok := before.([]any)
	al, aok := after.([]any)
	if bok || aok {
		var out []string
		for i := 0; i < max(len(bl), len(al)); i++ {
			var b, a any
			if i < len(bl) {
				b = bl[i]
			}
			if i < len(al) {
				a = al[i]
			}
			out = append(out, changedLeaves(b, a, fmt.Sprintf("%s.%d", prefix, i))...)
		}
		return out
	}
	if reflect.DeepEqual(before, after) {
		return nil
	}
	return []string{prefix}
}

// describe is the reboot part of an update's line.
func (r Reboot) describe(all []string) string {
	if !r.Needed() {
		return ""
	}
	what := ""
	if len(r.Attrs) < len(all) {
		what = " for " + strings.Join(r.Attrs, ", ")
	}
	if r.Automatic {
		return " — REBOOTS" + what + " (automatic_reboot)"
	}
	report := "an error"
	if r.Severity == "warning" {
		report = "a warning"
	}
	return fmt.Sprintf(" — needs a reboot%s, which automatic_reboot=false leaves to you: the apply reports %s for it", what, report)
}
