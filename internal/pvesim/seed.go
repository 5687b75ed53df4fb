package pvesim

import (
	"fmt"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
)

// LabTokenPrivileges returns the privileges SeedFromInventory gives the
// token's user on "/": the Telmate provider's minimum set plus what
// `provision template` needs for download-url (Datastore.AllocateTemplate;
// Sys.Audit and Sys.Modify are already in the set) and VM.GuestAgent.Audit,
// which PVE 9 wants for agent/network-get-interfaces (the provider's
// minimum set lacks it). Each call returns a new slice.
func LabTokenPrivileges() []string {
	return []string{
		"Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit", "Pool.Allocate", "Pool.Audit",
		"Sys.Audit", "Sys.Console", "Sys.Modify", "VM.Allocate", "VM.Audit", "VM.Clone", "VM.Config.CDROM",
		"VM.Config.Cloudinit", "VM.Config.CPU", "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory",
		"VM.Config.Network", "VM.Config.Options", "VM.GuestAgent.Audit", "VM.Migrate", "VM.PowerMgmt",
	}
}

// TemplateVMIDBase is the first VMID SeedFromInventory gives a template;
// node i gets the i-th free VMID from here (skipping the inventory's VMs).
const TemplateVMIDBase = 9000

// Storage sizes SeedFromInventory gives every node.
const (
	SeedLocalTotal = int64(100) << 30 // "local" (dir)
	SeedLocalUsed  = int64(8) << 30
	SeedVMTotal    = int64(1) << 40 // inventory's VM storage (lvmthin)
	TemplateDisk   = int64(3) << 30 // the template's imported disk (Debian genericcloud: 3 GiB)
)

// SeedOptions tune Seed.
type SeedOptions struct {
	TokenID, Secret string
	Privsep         bool
	// SkipTemplates leaves the templates out, as before `provision template`.
	SkipTemplates bool
}

// SeedFromInventory seeds a lab from an inventory's proxmox section:
// every node online; on each node the storages "local" (dir: iso, vztmpl,
// backup, import, snippets; /var/lib/vz), the inventory's storage
// (lvmthin: images, rootdir) and, if different, its snippets storage
// (dir: snippets); the template inv.Proxmox.Template on every node with
// the lab template hardware (TemplateConfig) at VMIDs from
// TemplateVMIDBase; the token (not privilege-separated) for a user with
// LabTokenPrivileges on "/".
func SeedFromInventory(s *Sim, inv *inventory.Inventory, tokenID, secret string) error {
	return Seed(s, inv, SeedOptions{TokenID: tokenID, Secret: secret})
}

// Seed is SeedFromInventory with options.
func Seed(s *Sim, inv *inventory.Inventory, o SeedOptions) error {
	p := inv.Lab.Proxmox
	if p == nil {
		return fmt.Errorf("pvesim: seed from %s: the inventory has no proxmox section", inv.File)
	}
	if o.TokenID != "" && !strings.Contains(o.TokenID, "!") {
		return fmt.Errorf("pvesim: seed from %s: token id %q is not user@realm!name", inv.File, o.TokenID)
	}
	var names []string
	for _, n := range p.Nodes {
		s.AddNode(n.Name, true)
		names = append(names, n.Name)
	}
	localContent := []string{"backup", "import", "iso", "snippets", "vztmpl"}
	vmStorage := p.Storage
	if vmStorage == "local" {
		localContent = append(localContent, "images", "rootdir")
	}
	s.AddStorage(Storage{ID: "local", Type: "dir", Content: localContent, Path: "/var/lib/vz",
		Total: SeedLocalTotal, Used: SeedLocalUsed})
	if vmStorage != "local" {
		s.AddStorage(Storage{ID: vmStorage, Type: "lvmthin", Content: []string{"images", "rootdir"}, Total: SeedVMTotal})
	}
	if ss := p.SnippetsStorage; ss != "" && ss != "local" && ss != vmStorage {
		s.AddStorage(Storage{ID: ss, Type: "dir", Content: []string{"snippets"}, Path: "/mnt/pve/" + ss,
			Total: SeedLocalTotal})
	}
	if o.TokenID != "" {
		userid, _, _ := strings.Cut(o.TokenID, "!")
		s.AddUser(userid, map[string][]string{"/": LabTokenPrivileges()})
		s.AddToken(o.TokenID, o.Secret, o.Privsep, map[string][]string{"/": LabTokenPrivileges()})
	}
	if o.SkipTemplates || p.Template == "" {
		return nil
	}
	taken := map[int]bool{}
	for _, n := range inv.Nodes {
		if n.VMID != 0 {
			taken[n.VMID] = true
		}
	}
	id := TemplateVMIDBase
	for _, node := range names {
		for taken[id] {
			id++
		}
		taken[id] = true
		if err := AddTemplate(s, node, id, p.Template, vmStorage, p.Bridge); err != nil {
			return fmt.Errorf("pvesim: seed from %s: %w", inv.File, err)
		}
	}
	return nil
}

// TemplateConfig is the lab template's config as PVE stores it after
// `provision template` (the hardware terraform/ declares): SCSI disk on
// virtio-scsi-single imported as base-<id>-disk-0 (3 GiB), cloud-init on
// ide2, serial console as display, guest agent, virtio NIC on bridge.
func TemplateConfig(vmid int, name, storage, bridge, mac string) map[string]string {
	return map[string]string{
		"name":     name,
		"scsihw":   "virtio-scsi-single",
		"bios":     "seabios",
		"boot":     "order=scsi0",
		"scsi0":    fmt.Sprintf("%s:base-%d-disk-0,size=3G", storage, vmid),
		"ide2":     fmt.Sprintf("%s:vm-%d-cloudinit,media=cdrom", storage, vmid),
		"serial0":  "socket",
		"vga":      "serial0",
		"agent":    "1",
		"ostype":   "l26",
		"net0":     fmt.Sprintf("virtio=%s,bridge=%s", mac, bridge),
		"template": "1",
		"memory":   "2048",
		"cores":    "2",
	}
}

// AddTemplate puts a lab template (TemplateConfig) and its volumes on a node.
func AddTemplate(s *Sim, node string, vmid int, name, storage, bridge string) error {
	if err := s.AddVM(VM{Node: node, VMID: vmid, Config: TemplateConfig(vmid, name, storage, bridge, newMAC())}); err != nil {
		return err
	}
	s.AddVolume(node, storage, fmt.Sprintf("%s:base-%d-disk-0", storage, vmid), TemplateDisk)
	s.AddVolume(node, storage, fmt.Sprintf("%s:vm-%d-cloudinit", storage, vmid), 4<<20)
	return nil
}
