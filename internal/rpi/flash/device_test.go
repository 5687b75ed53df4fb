package flash

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSys builds a sysfs tree: disk sdb (8:16) with partitions sdb1 (8:17)
// and sdb2 (8:18); sdb2 is held by dm-0 (254:0, "vg-root"); disk sdc
// (8:32) with sdc1 (8:33), nothing on it.
func fakeSys(t *testing.T, mountinfo string) System {
	t.Helper()
	root := t.TempDir()
	sys := filepath.Join(root, "sys")
	write := func(p, v string) {
		p = filepath.Join(sys, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, at string) {
		at = filepath.Join(sys, at)
		os.MkdirAll(filepath.Dir(at), 0o755)
		if err := os.Symlink(target, at); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []struct{ disk, dev, p1, p2 string }{{"sdb", "8:16", "8:17", "8:18"}, {"sdc", "8:32", "8:33", ""}} {
		base := "devices/pci0000:00/usb1/" + d.disk
		write(base+"/dev", d.dev)
		write(base+"/size", "31116288")
		write(base+"/removable", "1")
		write(base+"/device/model", "SD/MMC")
		link("../../"+base, "dev/block/"+d.dev)
		write(base+"/"+d.disk+"1/dev", d.p1)
		write(base+"/"+d.disk+"1/partition", "1")
		link("../../"+base+"/"+d.disk+"1", "dev/block/"+d.p1)
		if d.p2 != "" {
			write(base+"/"+d.disk+"2/dev", d.p2)
			write(base+"/"+d.disk+"2/partition", "2")
			link("../../"+base+"/"+d.disk+"2", "dev/block/"+d.p2)
		}
	}
	dm := "devices/virtual/block/dm-0"
	write(dm+"/dev", "254:0")
	write(dm+"/dm/name", "vg-root")
	link("../../../../pci0000:00/usb1/sdb/sdb2", dm+"/slaves/sdb2")
	link("../../"+dm, "dev/block/254:0")
	link("../"+dm, "block/dm-0")
	link("../../../../../virtual/block/dm-0", "devices/pci0000:00/usb1/sdb/sdb2/holders/dm-0")
	mi := filepath.Join(root, "mountinfo")
	os.WriteFile(mi, []byte(mountinfo), 0o644)
	sw := filepath.Join(root, "swaps")
	os.WriteFile(sw, []byte("Filename\tType\tSize\tUsed\tPriority\n"), 0o644)
	return System{Sys: sys, MountInfo: mi, Swaps: sw}
}

func TestCheckWithSysfs(t *testing.T) {
	sdb := &Device{Path: "/dev/sdb", Name: "sdb", Dev: "8:16", Size: 16 << 30, Removable: true,
		Partitions: []Partition{{Name: "sdb1", Dev: "8:17"}, {Name: "sdb2", Dev: "8:18"}}}
	sdc := &Device{Path: "/dev/sdc", Name: "sdc", Dev: "8:32", Size: 16 << 30, Removable: true,
		Partitions: []Partition{{Name: "sdc1", Dev: "8:33"}}}
	const proc = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
	for _, tc := range []struct {
		name      string
		mountinfo string
		dev       *Device
		need      int64
		opt       CheckOptions
		want      string // "" = allowed
	}{
		{"root on LVM over a partition of the disk", "25 1 254:0 / / rw - ext4 /dev/mapper/vg-root rw\n" + proc, sdb, 0, CheckOptions{}, "holds the root filesystem"},
		{"held by device-mapper", "25 1 8:2 / / rw - ext4 /dev/sda2 rw\n" + proc, sdb, 0, CheckOptions{}, "sdb2 is held by dm-0 (vg-root)"},
		{"a partition mounted", "25 1 8:2 / / rw - ext4 /dev/sda2 rw\n40 25 8:33 / /media/my\\040card rw - vfat /dev/sdc1 rw\n", sdc, 0, CheckOptions{}, "sdc1 is mounted on /media/my card"},
		{"free and big enough", "25 1 8:2 / / rw - ext4 /dev/sda2 rw\n" + proc, sdc, 4 << 30, CheckOptions{}, ""},
		{"too small", "25 1 8:2 / / rw - ext4 /dev/sda2 rw\n", sdc, 32 << 30, CheckOptions{}, "holds 16.0 GiB, smaller than the image's 32.0 GiB"},
		{"not removable", "25 1 8:2 / / rw - ext4 /dev/sda2 rw\n", &Device{Path: "/dev/sdc", Name: "sdc", Dev: "8:32", Size: 16 << 30}, 0, CheckOptions{}, "non-removable disk: refused unless --allow-non-removable"},
		{"not removable, allowed", "25 1 8:2 / / rw - ext4 /dev/sda2 rw\n", &Device{Path: "/dev/sdc", Name: "sdc", Dev: "8:32", Size: 16 << 30}, 0, CheckOptions{AllowNonRemovable: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fakeSys(t, tc.mountinfo).Check(tc.dev, tc.need, tc.opt)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
