package proxmox

import (
	"strconv"

	"github.com/fhlab/provision/internal/inventory"
)

// Hardware is the lab's cloud-init template hardware: what `provision template` creates, what preflight checks,
// and what terraform/ declares for every clone (undeclared template hardware is deleted by the provider).
type Hardware struct {
	SCSIHW           string // scsihw: the disk controller
	BIOS             string // bios
	Boot             string // boot, e.g. "order=scsi0"
	DiskSlot         string // the boot disk's slot, e.g. "scsi0"
	DiskStorage      string // the storage the boot disk lives on
	CloudInitSlot    string // the cloud-init drive's slot, e.g. "ide2"
	CloudInitStorage string // the storage the cloud-init drive lives on
	Serial0          string // serial0, e.g. "socket"
	VGA              string // vga, e.g. "serial0"
	NetModel         string // net0's model, e.g. "virtio"
	Bridge           string // net0's bridge
	OSType           string // ostype
	Agent            bool   // agent: the QEMU guest agent is enabled
	Memory           int    // MiB
	Cores            int
}

// LabHardware is the hardware of the lab's template for the inventory's
// proxmox section: a virtio-scsi-single controller, SeaBIOS, boot from scsi0
// on p.Storage, a cloud-init drive on ide2 (same storage), a serial console
// as the display, a virtio NIC on p.Bridge, Linux 2.6+ guest type, the guest
// agent on, 2048 MiB and 2 cores.
func LabHardware(p *inventory.Proxmox) Hardware {
	return Hardware{
		SCSIHW:           "virtio-scsi-single",
		BIOS:             "seabios",
		Boot:             "order=scsi0",
		DiskSlot:         "scsi0",
		DiskStorage:      p.Storage,
		CloudInitSlot:    "ide2",
		CloudInitStorage: p.Storage,
		Serial0:          "socket",
		VGA:              "serial0",
		NetModel:         "virtio",
		Bridge:           p.Bridge,
		OSType:           "l26",
		Agent:            true,
		Memory:           2048,
		Cores:            2,
	}
}

// agentValue is the agent option as PVE stores it.
func (h Hardware) agentValue() string {
	if h.Agent {
		return "1"
	}
	return "0"
}

// Net0 is the net0 property string a new VM gets (PVE assigns the MAC).
func (h Hardware) Net0() string { return h.NetModel + ",bridge=" + h.Bridge }

// memoryValue and coresValue are the options as PVE stores them.
func (h Hardware) memoryValue() string { return strconv.Itoa(h.Memory) }
func (h Hardware) coresValue() string  { return strconv.Itoa(h.Cores) }
