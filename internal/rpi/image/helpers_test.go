package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/templates"
)

// need returns the path of a tool, skipping the test without it (failing
// under CI=true).
func need(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, e := os.Stat(filepath.Join(dir, tool)); e == nil {
				return filepath.Join(dir, tool)
			}
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: apt-get install %s (scripts/install-deps.sh)", tool, pkg)
		}
		t.Skipf("%s not found: apt-get install %s", tool, pkg)
	}
	return p
}

func needImageTools(t *testing.T) {
	t.Helper()
	need(t, "mke2fs", "e2fsprogs")
	need(t, "debugfs", "e2fsprogs")
	need(t, "dumpe2fs", "e2fsprogs")
	need(t, "e2fsck", "e2fsprogs")
	need(t, "mkfs.vfat", "dosfstools")
	need(t, "fsck.fat", "dosfstools")
	need(t, "mcopy", "mtools")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeTree writes files (path → content; a trailing / makes a directory)
// under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func dpkgStatus(pkgs ...string) string {
	var b strings.Builder
	for _, p := range pkgs {
		name, ver, _ := strings.Cut(p, "=")
		fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: optional\nArchitecture: arm64\nVersion: %s\nDescription: %s\n a test package\n\n", name, ver, name)
	}
	b.WriteString("Package: removed-thing\nStatus: deinstall ok config-files\nArchitecture: arm64\nVersion: 1.0\n\n")
	return b.String()
}

// rootTree is a small Debian-like root file system.
func rootTree(osRelease string, pkgs ...string) map[string]string {
	return map[string]string{
		"etc/os-release":                 osRelease,
		"etc/passwd":                     "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
		"etc/group":                      "root:x:0:\nadm:x:4:\nsudo:x:27:\nshadow:x:42:\ndocker:x:995:\n",
		"etc/shadow":                     "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
		"etc/gshadow":                    "root:*::\nadm:*::\nsudo:*::\nshadow:*::\ndocker:!::\n",
		"etc/hostname":                   "raspberrypi\n",
		"etc/machine-id":                 "0123456789abcdef0123456789abcdef\n",
		"etc/docker/key.json":            "{\"kid\":\"SAME-ON-EVERY-CLONE\"}\n",
		"var/lib/dpkg/status":            dpkgStatus(pkgs...),
		"lib/systemd/system/ssh.service": "[Unit]\nDescription=OpenBSD Secure Shell server\n",
		"etc/systemd/system/":            "",
		"home/":                          "",
		"usr/local/sbin/":                "",
	}
}

// baseSpec describes a synthetic base image shaped like a flavour.
type baseSpec struct {
	bootLabel, rootLabel string
	diskID               uint32
	bootFiles            map[string]string // on the FAT; %ROOT% in cmdline.txt
	root                 map[string]string // root tree; %BOOT%/%ROOT% in etc/fstab
	rootMiB              int64
}

// makeBase builds a base image with the stock tools only (mkfs.vfat
// --offset, mcopy, mke2fs -d -E offset), so the tests do not check
// provision's code with itself.
func makeBase(t *testing.T, dir string, s baseSpec) string {
	t.Helper()
	img := filepath.Join(dir, "base.img")
	bootStart, bootMiB := int64(8*mib), int64(64)
	rootStart := bootStart + bootMiB*mib
	if s.rootMiB == 0 {
		s.rootMiB = 48
	}
	size := rootStart + s.rootMiB*mib
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	m := MBR{DiskID: s.diskID, Partitions: []Partition{
		{Number: 1, Type: typeFAT32LBA, Start: bootStart, Size: bootMiB * mib},
		{Number: 2, Type: typeLinux, Start: rootStart, Size: s.rootMiB * mib},
	}}
	// sfdisk would do too; the table format is trivial and checked by
	// fsck below through the offsets.
	if err := writeMBR(f, m); err != nil {
		t.Fatal(err)
	}
	f.Close()
	subst := strings.NewReplacer("%BOOT%", m.PartUUID(1), "%ROOT%", m.PartUUID(2))
	run(t, need(t, "mkfs.vfat", "dosfstools"), "-F", "32", "-s", "1", "-n", s.bootLabel, "--offset", fmt.Sprint(bootStart/512), img, fmt.Sprint(bootMiB*1024))
	bootDir := filepath.Join(dir, "bootfiles")
	files := map[string]string{}
	for k, v := range s.bootFiles {
		files[k] = subst.Replace(v)
	}
	writeTree(t, bootDir, files)
	for name := range files {
		run(t, "mcopy", "-i", fmt.Sprintf("%s@@%d", img, bootStart), "-o", filepath.Join(bootDir, name), "::/"+name)
	}
	rootDir := filepath.Join(dir, "rootfiles")
	files = map[string]string{}
	for k, v := range s.root {
		files[k] = subst.Replace(v)
	}
	writeTree(t, rootDir, files)
	run(t, need(t, "mke2fs", "e2fsprogs"), "-q", "-F", "-t", "ext4", "-L", s.rootLabel, "-E", fmt.Sprintf("offset=%d,root_owner=0:0", rootStart), "-d", rootDir, img, fmt.Sprintf("%dk", s.rootMiB*1024))
	return img
}

// flavours are synthetic bases shaped like each supported image.
func flavours() map[string]baseSpec {
	fw := map[string]string{"start4.elf": "firmware placeholder\n", "fixup4.dat": "fixup\n", "bcm2711-rpi-4-b.dtb": "dtb\n", "kernel8.img": "kernel\n"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	rpiFstab := "proc /proc proc defaults 0 0\nPARTUUID=%BOOT% /boot/firmware vfat defaults 0 2\nPARTUUID=%ROOT% / ext4 defaults,noatime 0 1\n"
	return map[string]baseSpec{
		"raspios-trixie": {
			bootLabel: "bootfs", rootLabel: "rootfs", diskID: 0x295ac2ff,
			bootFiles: with(fw, "config.txt", "[all]\nauto_initramfs=1\n", "cmdline.txt", "console=serial0,115200 console=tty1 root=PARTUUID=%ROOT% rootfstype=ext4 fsck.repair=yes rootwait\n",
				"user-data", "#cloud-config\n", "meta-data", "dsmode: local\ninstance_id: rpios-image\n", "network-config", "# example\n"),
			root: with(rootTree("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_CODENAME=trixie\n",
				"cloud-init=25.1.4-1+rpt1", "docker.io=26.1.5+dfsg1-9", "raspberrypi-sys-mods=20250918", "linux-image-rpi-v8=1:6.12.47-1+rpt1"), "etc/fstab", rpiFstab),
		},
		"raspios-bookworm": {
			bootLabel: "bootfs", rootLabel: "rootfs", diskID: 0x4e2c1a33,
			bootFiles: with(fw, "config.txt", "[all]\n", "cmdline.txt", "console=serial0,115200 console=tty1 root=PARTUUID=%ROOT% rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"),
			root: with(rootTree("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n",
				"docker.io=20.10.24+dfsg1-1+b3", "raspberrypi-sys-mods=20240618", "linux-image-rpi-v8=1:6.6.31-1+rpt1"), "etc/fstab", rpiFstab),
		},
		"ubuntu": {
			bootLabel: "system-boot", rootLabel: "writable", diskID: 0x7a1b2c3d,
			bootFiles: with(fw, "config.txt", "[all]\nkernel=vmlinuz\ncmdline=cmdline.txt\ninitramfs initrd.img followkernel\n", "vmlinuz", "kernel\n", "initrd.img", "initrd\n",
				"cmdline.txt", "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc\n",
				"user-data", "#cloud-config\n", "meta-data", "dsmode: local\ninstance_id: cloud-image\n", "network-config", "version: 2\n"),
			root: with(rootTree("PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\nVERSION_CODENAME=noble\n",
				"cloud-init=24.2-0ubuntu1", "docker.io=24.0.7-0ubuntu4", "linux-image-raspi=6.8.0.1010.11"),
				"etc/fstab", "LABEL=writable / ext4 defaults 0 1\nLABEL=system-boot /boot/firmware vfat defaults 0 1\n"),
		},
		"debian-raspi": {
			bootLabel: "RASPIFIRM", rootLabel: "RASPIROOT", diskID: 0x1d2e3f40,
			bootFiles: with(fw, "config.txt", "[all]\narm_64bit=1\nkernel=vmlinuz-6.1.0-26-arm64\n", "cmdline.txt", "console=tty0 console=ttyS1,115200 root=LABEL=RASPIROOT rw fsck.repair=yes net.ifnames=0 rootwait\n", "sysconf.txt", "#hostname=\n"),
			root: with(rootTree("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n",
				"cloud-init=22.4.2-1+deb12u1", "docker.io=20.10.24+dfsg1-1+deb12u1", "raspi-firmware=1.20220830+ds-1", "linux-image-arm64=6.1.115-1"),
				"etc/fstab", "LABEL=RASPIROOT / ext4 rw 0 1\nLABEL=RASPIFIRM /boot/firmware vfat rw 0 2\n"),
		},
	}
}

const testInventory = `apiVersion: provision/v1
kind: Lab
metadata: {name: test-lab}
network: {cidr: 192.168.10.0/23, gateway: 192.168.10.1, dns: [192.168.10.1], ntp: [192.168.10.1]}
ssh:
  user: provision
  authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3mIzxp6Yw6z1s8m0b1f0ZC8qW2l2Hn0JXQZ3x7a9P admin@lab"]
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 16, managers: 1}
pis:
  image: %IMAGE%
  racks:
    - {name: m1, count: 1, boot: sd, ipStart: 192.168.10.200, role: manager}
    - {name: r1, count: %COUNT%, boot: sd, ipStart: 192.168.11.1}
`

// testLab writes an inventory with 1 + count Pis booting image and loads it.
func testLab(t testing.TB, dir, image string, count int) *inventory.Inventory {
	t.Helper()
	text := strings.NewReplacer("%IMAGE%", image, "%COUNT%", fmt.Sprint(count)).Replace(testInventory)
	p := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func testRenderer(t testing.TB) *render.Renderer {
	t.Helper()
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fsckAll checks both file systems of an image with the stock tools.
func fsckAll(t *testing.T, img string, l Layout) {
	t.Helper()
	// fsck.fat has no offset option: check a copy of the partition.
	part := filepath.Join(t.TempDir(), "boot.vfat")
	extract(t, img, l.Boot, part)
	out, err := exec.Command(need(t, "fsck.fat", "dosfstools"), "-n", part).CombinedOutput()
	if err != nil {
		t.Errorf("fsck.fat -n (partition %d): %v\n%s", l.Boot.Number, err, out)
	}
	out, err = exec.Command(need(t, "e2fsck", "e2fsprogs"), "-fn", fmt.Sprintf("%s?offset=%d", img, l.Root.Start)).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn (partition %d): %v\n%s", l.Root.Number, err, out)
	}
}

func extract(t *testing.T, img string, p Partition, out string) {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	buf := make([]byte, p.Size)
	if _, err := src.ReadAt(buf, p.Start); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Write(buf); err != nil {
		t.Fatal(err)
	}
}

// mtype reads a file from the FAT partition with mtools (not go-diskfs).
func mtype(t *testing.T, img string, p Partition, name string) []byte {
	t.Helper()
	cmd := exec.Command("mtype", "-i", fmt.Sprintf("%s@@%d", img, p.Start), "::/"+name)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mtype %s: %v", name, err)
	}
	return out
}

// ext4Cat reads a file from the root partition with debugfs.
func ext4Cat(t *testing.T, img string, p Partition, name string) []byte {
	t.Helper()
	b, ok, err := ext4{Image: img, Offset: p.Start}.cat(context.Background(), name)
	if err != nil || !ok {
		t.Fatalf("read %s from the root file system: ok=%v %v", name, ok, err)
	}
	return b
}

func fileSum(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(b)
}
