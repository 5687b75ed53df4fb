package preflight

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/proxmox"
)

// labTemplate is a template config as PVE renders one made by provision
// template.
func labTemplate() proxmox.VMConfig {
	return proxmox.VMConfig{
		"template": "1", "name": "debian-12-cloudinit", "scsihw": "virtio-scsi-single", "bios": "seabios",
		"boot": "order=scsi0", "scsi0": "local-lvm:base-9000-disk-0,size=3G",
		"ide2": "local-lvm:vm-9000-cloudinit,media=cdrom", "serial0": "socket", "vga": "serial0",
		"agent": "1", "ostype": "l26", "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "memory": "2048", "cores": "2",
	}
}

func TestCompareHardware(t *testing.T) {
	hw := proxmox.LabHardware(&inventory.Proxmox{Storage: "local-lvm", Bridge: "vmbr0"})
	const gib = int64(1) << 30
	tests := []struct {
		name      string
		change    func(proxmox.VMConfig)
		minDisk   int64
		wantFail  []string // substrings, one per expected failure
		wantWarn  []string
		wantFixes []string
	}{
		{name: "lab hardware", change: func(proxmox.VMConfig) {}, minDisk: 8 * gib},
		{name: "scsihw unset is lsi", change: func(c proxmox.VMConfig) { delete(c, "scsihw") },
			wantFail: []string{"scsihw is lsi"}, wantFixes: []string{"qm set 9000 --scsihw virtio-scsi-single"}},
		{name: "OVMF", change: func(c proxmox.VMConfig) { c["bios"] = "ovmf" },
			wantFail: []string{"bios is ovmf"}, wantFixes: []string{"qm set 9000 --bios seabios"}},
		{name: "boot disk in virtio0", change: func(c proxmox.VMConfig) {
			c["virtio0"] = c["scsi0"]
			delete(c, "scsi0")
			c["boot"] = "order=virtio0"
		}, wantFail: []string{"no disk in scsi0", "undeclared disk virtio0", "boot is \"order=virtio0\""}},
		{name: "cloud-init drive missing", change: func(c proxmox.VMConfig) { delete(c, "ide2") },
			wantFail: []string{"ide2 holds nothing"}, wantFixes: []string{"qm set 9000 --ide2 local-lvm:cloudinit"}},
		{name: "cloud-init drive in ide0", change: func(c proxmox.VMConfig) { c["ide0"] = c["ide2"]; delete(c, "ide2") },
			wantFail: []string{"ide2 holds nothing", "second cloud-init drive in ide0"}},
		{name: "cloud-init drive on other storage", change: func(c proxmox.VMConfig) { c["ide2"] = "local:9000/vm-9000-cloudinit.qcow2,media=cdrom" },
			wantFail: []string{"cloud-init drive is on local"}},
		{name: "extra data disk", change: func(c proxmox.VMConfig) { c["scsi1"] = "local-lvm:base-9000-disk-1,size=10G" },
			wantFail: []string{"undeclared disk scsi1"}, wantFixes: []string{"qm set 9000 --delete scsi1"}},
		{name: "extra cdrom only warns", change: func(c proxmox.VMConfig) { c["ide0"] = "none,media=cdrom" },
			wantWarn: []string{"CD-ROM ide0"}},
		{name: "no serial console", change: func(c proxmox.VMConfig) { delete(c, "serial0"); delete(c, "vga") },
			wantFail: []string{"serial0 is \"\"", "vga is std"}},
		{name: "disk on other storage", change: func(c proxmox.VMConfig) { c["scsi0"] = "ceph:base-9000-disk-0,size=3G" },
			wantFail: []string{"scsi0 is on storage ceph"}},
		{name: "template disk bigger than a VM's", change: func(c proxmox.VMConfig) { c["scsi0"] = "local-lvm:base-9000-disk-0,size=32G" }, minDisk: 16 * gib,
			wantFail: []string{"scsi0 is 32G, larger than vm-1's disk (16.0 GiB)"}},
		{name: "not a template", change: func(c proxmox.VMConfig) { delete(c, "template") },
			wantFail: []string{"not marked as a template"}, wantFixes: []string{"qm template 9000"}},
		{name: "agent off and other bridge warn", change: func(c proxmox.VMConfig) {
			c["agent"] = "enabled=0"
			c["net0"] = "virtio=BC:24:11:00:00:01,bridge=vmbr1"
		}, wantWarn: []string{"guest agent is off", "net0 is"}},
		{name: "agent as property string", change: func(c proxmox.VMConfig) { c["agent"] = "enabled=1,fstrim_cloned_disks=1" }},
		{name: "boot order with more devices", change: func(c proxmox.VMConfig) { c["boot"] = "order=scsi0;ide2;net0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := labTemplate()
			tt.change(cfg)
			min := tt.minDisk
			if min == 0 {
				min = 8 * gib
			}
			fails, warns, fixes := compareHardware(cfg, hw, 9000, min, "vm-1")
			check := func(kind string, got, want []string) {
				t.Helper()
				if len(got) != len(want) {
					t.Errorf("%s: got %d %q, want %d %q", kind, len(got), got, len(want), want)
					return
				}
				for i := range want {
					if !strings.Contains(got[i], want[i]) {
						t.Errorf("%s[%d]: got %q, want it to contain %q", kind, i, got[i], want[i])
					}
				}
			}
			check("failures", fails, tt.wantFail)
			check("warnings", warns, tt.wantWarn)
			for _, f := range tt.wantFixes {
				if !strings.Contains(strings.Join(fixes, "\n"), f) {
					t.Errorf("fixes %q: want %q", fixes, f)
				}
			}
		})
	}
}

func TestGuestIPs(t *testing.T) {
	got := guestIPs(proxmox.VMConfig{
		"ipconfig0": "ip=198.51.100.11/24,gw=198.51.100.1",
		"ipconfig1": "ip=dhcp",
		"net0":      "name=eth0,bridge=vmbr0,ip=198.51.100.40/24,gw=198.51.100.1", // a container
		"net1":      "virtio=BC:24:11:00:00:01,bridge=vmbr0",
		"name":      "ip=10.0.0.1",
	})
	if len(got) != 2 || got[mustAddr(t, "198.51.100.11")] != "ipconfig0" || got[mustAddr(t, "198.51.100.40")] != "net0" {
		t.Errorf("got %v", got)
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
