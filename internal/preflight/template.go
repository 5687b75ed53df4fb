package preflight

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/proxmox"
)

type guestRef struct {
	node string
	vmid int
}

// templatePlan says which template serves each target host, from
// /cluster/resources, and which configs to read.
type templatePlan struct {
	local       map[string]proxmox.Resource // host → the template on it
	dups        map[string][]int            // host → VMIDs of further templates with the name
	nonTemplate map[string]proxmox.Resource // host → a VM with the name that is no template
	remote      *proxmox.Resource           // a template with the name elsewhere
	fetch       []guestRef
}

func (r *run) planTemplates(f *facts, targets []string) templatePlan {
	tp := templatePlan{local: map[string]proxmox.Resource{}, dups: map[string][]int{}, nonTemplate: map[string]proxmox.Resource{}}
	if f.vmsErr != nil {
		return tp
	}
	name := r.p.Template
	var all []proxmox.Resource
	for _, g := range f.vms {
		if g.Type == "qemu" && g.Name == name {
			all = append(all, g)
		}
	}
	needRemote := false
	for _, h := range targets {
		for _, g := range all {
			switch {
			case g.Node != h:
			case g.Template == 0:
				tp.nonTemplate[h] = g
			case tp.local[h].Name == "":
				tp.local[h] = g
				tp.fetch = append(tp.fetch, guestRef{h, int(g.VMID)})
			default:
				tp.dups[h] = append(tp.dups[h], int(g.VMID))
			}
		}
		if tp.local[h].Name == "" {
			needRemote = true
		}
	}
	if needRemote {
		// Prefer a template on a target host: its config is read anyway.
		for _, g := range all {
			if g.Template != 0 && (tp.remote == nil || slices.Contains(targets, g.Node) && !slices.Contains(targets, tp.remote.Node)) {
				tp.remote = &g
			}
		}
		if tp.remote != nil && tp.local[tp.remote.Node].Name == "" {
			tp.fetch = append(tp.fetch, guestRef{tp.remote.Node, int(tp.remote.VMID)})
		}
	}
	return tp
}

// templates reports, per target host, whether a template with the lab's
// hardware can be cloned there.
func (r *run) templates(f *facts, tp templatePlan, targets []string) {
	name := r.p.Template
	create := fmt.Sprintf("provision template -i %s", r.file)
	for _, h := range targets {
		if f.vmsErr != nil {
			r.fail(CheckTemplate, h, fmt.Sprintf("cannot list the cluster's guests: %v", f.vmsErr), "grant the token VM.Audit on / (see the privileges check)")
			continue
		}
		minDisk, minVM := r.smallestDisk(h)
		if t, ok := tp.local[h]; ok {
			cfg, err := f.config(h, int(t.VMID))
			if err != nil {
				r.fail(CheckTemplate, h, fmt.Sprintf("cannot read template %s (VMID %d): %v", name, t.VMID, err), "grant the token VM.Audit on / (see the privileges check)")
				continue
			}
			where := fmt.Sprintf("template %s (VMID %d)", name, t.VMID)
			if d := tp.dups[h]; len(d) > 0 {
				r.warn(CheckTemplate, h, fmt.Sprintf("%s; more templates with this name on %s: %v (the provider picks any one)", where, h, d),
					"rename or remove the extra templates: qm set <vmid> --name <other-name>")
			}
			r.hardwareResult(h, where, int(t.VMID), h, cfg, minDisk, minVM)
			continue
		}
		if g, ok := tp.nonTemplate[h]; ok {
			r.fail(CheckTemplate, h, fmt.Sprintf("VM %d %q on %s is not a template", g.VMID, name, h),
				fmt.Sprintf("if it is the prepared cloud image: qm template %d (on %s); otherwise remove or rename it and run %s", g.VMID, h, create))
			continue
		}
		if tp.remote != nil {
			cfg, err := f.config(tp.remote.Node, int(tp.remote.VMID))
			if err == nil {
				disk := proxmox.ParseProperty(cfg[r.hw.DiskSlot]).Storage()
				if r.sharedOn(f, disk, h) {
					where := fmt.Sprintf("template %s (VMID %d on %s, shared storage %s)", name, tp.remote.VMID, tp.remote.Node, disk)
					r.hardwareResult(h, where, int(tp.remote.VMID), tp.remote.Node, cfg, minDisk, minVM)
					continue
				}
				r.fail(CheckTemplate, h, fmt.Sprintf("no template %s on %s; the one on %s (VMID %d) uses local storage %s, so it cannot be cloned to %s", name, h, tp.remote.Node, tp.remote.VMID, disk, h),
					create+"   (makes one per host)")
				continue
			}
		}
		r.fail(CheckTemplate, h, fmt.Sprintf("no template named %s on %s (proxmox.template)", name, h), create)
	}
}

// sharedOn says whether storage id is shared and usable on host.
func (r *run) sharedOn(f *facts, id, host string) bool {
	if f.storErr != nil || id == "" {
		return false
	}
	for _, s := range f.storages {
		if s.Storage != id {
			continue
		}
		if s.Shared == 0 && !slices.Contains([]string{"rbd", "cephfs", "nfs", "cifs", "glusterfs", "iscsi", "pbs"}, s.Type) {
			return false
		}
		if s.Nodes == "" {
			return true
		}
		return slices.Contains(strings.Split(s.Nodes, ","), host)
	}
	return false
}

// smallestDisk is the smallest disk of the inventory VMs on host.
func (r *run) smallestDisk(host string) (int64, string) {
	var min int64 = -1
	var who string
	for _, n := range r.inv.Nodes {
		if n.Kind != inventory.KindVM || n.Host != host {
			continue
		}
		b, err := proxmox.ParseSize(n.Disk)
		if err == nil && (min < 0 || b < min) {
			min, who = b, n.Name
		}
	}
	return min, who
}

func (r *run) hardwareResult(host, where string, vmid int, onNode string, cfg proxmox.VMConfig, minDisk int64, minVM string) {
	fails, warns, fixes := compareHardware(cfg, r.hw, vmid, minDisk, minVM)
	recreate := fmt.Sprintf("or remove it (qm destroy %d on %s) and run provision template -i %s", vmid, onNode, r.file)
	switch {
	case len(fails) > 0:
		fixes = append(fixes, recreate)
		r.fail(CheckTemplate, host, where+" differs from the hardware terraform/ declares:\n"+strings.Join(fails, "\n"), strings.Join(fixes, "\n"))
	case len(warns) > 0:
		r.warn(CheckTemplate, host, where+" has the lab hardware, but:\n"+strings.Join(warns, "\n"), strings.Join(fixes, "\n"))
	default:
		r.pass(CheckTemplate, host, "%s has the lab hardware", where)
	}
}

// compareHardware compares a template's config with the hardware the
// Terraform module declares for every clone. fails are differences the
// provider would act on (deleting or replacing hardware); warns are
// harmless ones; fixes are qm commands.
func compareHardware(cfg proxmox.VMConfig, hw proxmox.Hardware, vmid int, minDisk int64, minVM string) (fails, warns, fixes []string) {
	get := func(k, def string) string {
		if v, ok := cfg[k]; ok && v != "" {
			return v
		}
		return def
	}
	qmSet := func(opt, val string) string { return fmt.Sprintf("qm set %d --%s %s", vmid, opt, val) }

	if cfg["template"] != "1" {
		fails = append(fails, "it is not marked as a template (template: 1)")
		fixes = append(fixes, fmt.Sprintf("qm template %d", vmid))
	}
	if v := get("scsihw", "lsi"); v != hw.SCSIHW {
		fails = append(fails, fmt.Sprintf("scsihw is %s, the module declares %s (clones would change controller)", v, hw.SCSIHW))
		fixes = append(fixes, qmSet("scsihw", hw.SCSIHW))
	}
	if v := get("bios", "seabios"); v != hw.BIOS {
		fails = append(fails, fmt.Sprintf("bios is %s, the module declares %s", v, hw.BIOS))
		fixes = append(fixes, qmSet("bios", hw.BIOS))
	}
	// The boot disk.
	disk, hasDisk := cfg[hw.DiskSlot]
	dp := proxmox.ParseProperty(disk)
	switch {
	case !hasDisk:
		fails = append(fails, fmt.Sprintf("no disk in %s, the slot the module declares for the boot disk", hw.DiskSlot))
	case dp.IsCloudInit() || dp.IsCDROM():
		fails = append(fails, fmt.Sprintf("%s is a CD-ROM (%s), not the boot disk", hw.DiskSlot, disk))
	default:
		if st := dp.Storage(); st != hw.DiskStorage {
			fails = append(fails, fmt.Sprintf("%s is on storage %s, the module declares %s (every clone's disk would be moved)", hw.DiskSlot, st, hw.DiskStorage))
		}
		if sz, err := proxmox.ParseSize(dp.Opts["size"]); err == nil && minDisk >= 0 && sz > minDisk {
			fails = append(fails, fmt.Sprintf("%s is %s, larger than %s's disk (%s): a smaller size replaces the disk with an empty one", hw.DiskSlot, dp.Opts["size"], minVM, proxmox.FormatSize(minDisk)))
			fixes = append(fixes, fmt.Sprintf("raise proxmox.vms[].disk to at least %s", dp.Opts["size"]))
		}
	}
	// The cloud-init drive.
	ci, hasCI := cfg[hw.CloudInitSlot]
	cp := proxmox.ParseProperty(ci)
	switch {
	case !hasCI || !cp.IsCloudInit():
		what := "nothing"
		if hasCI {
			what = ci
		}
		fails = append(fails, fmt.Sprintf("%s holds %s, the module declares the cloud-init drive there", hw.CloudInitSlot, what))
		fixes = append(fixes, qmSet(hw.CloudInitSlot, hw.CloudInitStorage+":cloudinit"))
	case cp.Storage() != hw.CloudInitStorage:
		fails = append(fails, fmt.Sprintf("the cloud-init drive is on %s, the module declares %s", cp.Storage(), hw.CloudInitStorage))
		fixes = append(fixes, fmt.Sprintf("qm set %d --delete %s && %s", vmid, hw.CloudInitSlot, qmSet(hw.CloudInitSlot, hw.CloudInitStorage+":cloudinit")))
	}
	// Every other drive would be deleted from every clone.
	for _, k := range cfg.Keys() {
		if !proxmox.IsDiskSlot(k) || k == hw.DiskSlot || k == hw.CloudInitSlot {
			continue
		}
		p := proxmox.ParseProperty(cfg[k])
		if p.IsCloudInit() {
			fails = append(fails, fmt.Sprintf("a second cloud-init drive in %s (%s): the module declares it in %s", k, cfg[k], hw.CloudInitSlot))
			fixes = append(fixes, fmt.Sprintf("qm set %d --delete %s", vmid, k))
		} else if p.IsCDROM() {
			warns = append(warns, fmt.Sprintf("CD-ROM %s (%s) is not declared: the provider removes it from every clone", k, cfg[k]))
		} else {
			fails = append(fails, fmt.Sprintf("undeclared disk %s (%s): the provider deletes it from every clone", k, cfg[k]))
			fixes = append(fixes, fmt.Sprintf("qm set %d --delete %s", vmid, k))
		}
	}
	if v := get("serial0", ""); v != hw.Serial0 {
		fails = append(fails, fmt.Sprintf("serial0 is %q, the module declares %s", v, hw.Serial0))
		fixes = append(fixes, qmSet("serial0", hw.Serial0))
	}
	if v := get("vga", "std"); v != hw.VGA && !strings.HasPrefix(v, "type="+hw.VGA) {
		fails = append(fails, fmt.Sprintf("vga is %s, the module declares %s (the console is the serial port)", v, hw.VGA))
		fixes = append(fixes, qmSet("vga", hw.VGA))
	}
	if order := bootOrder(get("boot", "")); len(order) == 0 || order[0] != hw.DiskSlot {
		fails = append(fails, fmt.Sprintf("boot is %q, the module declares %s (boot from %s first)", get("boot", ""), hw.Boot, hw.DiskSlot))
		fixes = append(fixes, qmSet("boot", hw.Boot))
	}
	// The module sets these on every clone, so a difference is harmless.
	if a := proxmox.ParseProperty(get("agent", "0")); hw.Agent && a.Value != "1" && a.Opts["enabled"] != "1" && !(a.Key == "enabled" && a.Value == "1") {
		warns = append(warns, "the guest agent is off (clones turn it on; the image must have qemu-guest-agent)")
		fixes = append(fixes, qmSet("agent", "1"))
	}
	if n := proxmox.ParseProperty(get("net0", "")); n.Key != hw.NetModel || n.Opts["bridge"] != hw.Bridge {
		warns = append(warns, fmt.Sprintf("net0 is %q; clones get %s (terraform/ sets it)", get("net0", ""), hw.Net0()))
	}
	if v := get("ostype", "other"); v != hw.OSType {
		warns = append(warns, fmt.Sprintf("ostype is %s; clones get %s", v, hw.OSType))
	}
	return fails, warns, fixes
}

// bootOrder parses "order=scsi0;ide2;net0" (and the legacy "cdn" form).
func bootOrder(boot string) []string {
	p := proxmox.ParseProperty(boot)
	if p.Key == "order" {
		return strings.Split(p.Value, ";")
	}
	if v, ok := p.Opts["order"]; ok {
		return strings.Split(v, ";")
	}
	return nil
}
