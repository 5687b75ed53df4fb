// Package pvetest seeds the Proxmox API simulator (internal/pvesim) like a
// cluster that is ready for an inventory, for the tests of the client,
// preflight and template, and for bench/preflight.
package pvetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/preflight"
	"github.com/fhlab/provision/internal/proxmox"
	"github.com/fhlab/provision/internal/pvesim"
)

// Sizes of the seeded storages, per node.
const (
	LocalTotal = int64(100) << 30
	LocalUsed  = int64(10) << 30
	VMTotal    = int64(2) << 40
	VMUsed     = int64(100) << 30
)

// Seed is what Cluster builds.
type Seed struct {
	// Templates seeds the lab template (proxmox.LabHardware) on every node,
	// VMID TemplateBase+i for node i.
	Templates    bool
	TemplateBase int // default 9000
}

// Cluster seeds sim with the inventory's nodes (online), the storages a
// fresh PVE install has — local (dir: iso, vztmpl, backup, import,
// snippets) and proxmox.storage (lvmthin: images, rootdir) — plus
// proxmox.snippetsStorage if it is another one, and a token without
// privilege separation whose user has every privilege provision needs on /.
func Cluster(sim *pvesim.Sim, inv *inventory.Inventory, tokenID, secret string, seed Seed) error {
	p := inv.Lab.Proxmox
	if p == nil {
		return fmt.Errorf("pvetest: the inventory has no proxmox section")
	}
	var nodes []string
	for _, n := range p.Nodes {
		sim.AddNode(n.Name, true)
		nodes = append(nodes, n.Name)
	}
	sim.AddStorage(pvesim.Storage{ID: "local", Type: "dir", Content: []string{"iso", "vztmpl", "backup", "import", "snippets"},
		Total: LocalTotal, Used: LocalUsed, Path: "/var/lib/vz"})
	if p.Storage != "local" {
		sim.AddStorage(pvesim.Storage{ID: p.Storage, Type: "lvmthin", Content: []string{"images", "rootdir"}, Total: VMTotal, Used: VMUsed})
	}
	if s := p.SnippetsStorage; s != "local" && s != p.Storage {
		sim.AddStorage(pvesim.Storage{ID: s, Type: "dir", Content: []string{"snippets"}, Shared: true, Total: LocalTotal, Used: LocalUsed,
			Path: strings.TrimSuffix(p.SnippetsDir, "/snippets")})
	}
	user, _, ok := strings.Cut(tokenID, "!")
	if !ok {
		return fmt.Errorf("pvetest: token ID %q: want user@realm!name", tokenID)
	}
	sim.AddUser(user, map[string][]string{"/": preflight.RequiredPrivileges()})
	sim.AddToken(tokenID, secret, false, nil)
	if !seed.Templates {
		return nil
	}
	base := seed.TemplateBase
	if base == 0 {
		base = 9000
	}
	hw := proxmox.LabHardware(p)
	for i, n := range nodes {
		vmid := base + i
		if err := sim.AddVM(pvesim.VM{Node: n, VMID: vmid, Name: p.Template, Template: true, Config: TemplateConfig(hw, vmid)}); err != nil {
			return err
		}
		sim.AddVolume(n, hw.DiskStorage, fmt.Sprintf("%s:base-%d-disk-0", hw.DiskStorage, vmid), 3<<30)
	}
	return nil
}

// TemplateConfig is the config PVE shows for a template with the lab
// hardware, as `provision template` makes it.
func TemplateConfig(hw proxmox.Hardware, vmid int) map[string]string {
	id := strconv.Itoa(vmid)
	agent := "0"
	if hw.Agent {
		agent = "1"
	}
	return map[string]string{
		"scsihw": hw.SCSIHW, "bios": hw.BIOS, "boot": hw.Boot,
		hw.DiskSlot:      hw.DiskStorage + ":base-" + id + "-disk-0,size=3G",
		hw.CloudInitSlot: hw.CloudInitStorage + ":vm-" + id + "-cloudinit,media=cdrom",
		"serial0":        hw.Serial0, "vga": hw.VGA, "agent": agent, "ostype": hw.OSType,
		"net0":   fmt.Sprintf("%s=BC:24:11:%02X:%02X:%02X,bridge=%s", hw.NetModel, vmid>>16&0xff, vmid>>8&0xff, vmid&0xff, hw.Bridge),
		"memory": strconv.Itoa(hw.Memory), "cores": strconv.Itoa(hw.Cores),
	}
}

// Server is a seeded simulator served over HTTPS on loopback.
type Server struct {
	Sim    *pvesim.Sim
	URL    string // ends in /api2/json
	CAFile string
	close  func() error
}

// Close stops the server and the simulator's tasks.
func (s *Server) Close() error {
	err := s.close()
	s.Sim.Close()
	return err
}

// Serve serves sim over HTTPS on 127.0.0.1 (a free port).
func Serve(ctx context.Context, sim *pvesim.Sim) (*Server, error) {
	srv, err := sim.Listen(ctx, "127.0.0.1:0", true)
	if err != nil {
		return nil, err
	}
	return &Server{Sim: sim, URL: srv.URL, CAFile: srv.CAFile, close: srv.Close}, nil
}
