// Package imagetest makes small synthetic Raspberry Pi disk images shaped
// like each flavour provision supports (partition types, labels, boot files,
// /etc/os-release, dpkg database), with the stock tools only: an MBR
// written here, mkfs.vfat --offset and mcopy for FAT32, mke2fs -d -E offset
// for ext4. Tests and bench/image use them; no real image can be
// downloaded where they run.
package imagetest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MiB is a mebibyte.
const MiB = 1 << 20

// DpkgStatus is a dpkg status file with the packages (name=version)
// installed, and one removed package.
func DpkgStatus(pkgs ...string) string {
	var b strings.Builder
	for _, p := range pkgs {
		name, ver, _ := strings.Cut(p, "=")
		fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: optional\nArchitecture: arm64\nVersion: %s\nDescription: %s\n a test package\n\n", name, ver, name)
	}
	b.WriteString("Package: removed-thing\nStatus: deinstall ok config-files\nArchitecture: arm64\nVersion: 1.0\n\n")
	return b.String()
}

// RootTree is a small Debian-like root file system.
func RootTree(osRelease string, pkgs ...string) map[string]string {
	return map[string]string{
		"etc/os-release":                 osRelease,
		"etc/passwd":                     "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
		"etc/group":                      "root:x:0:\nadm:x:4:\nsudo:x:27:\nshadow:x:42:\ndocker:x:995:\n",
		"etc/shadow":                     "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
		"etc/gshadow":                    "root:*::\nadm:*::\nsudo:*::\nshadow:*::\ndocker:!::\n",
		"etc/hostname":                   "raspberrypi\n",
		"etc/machine-id":                 "0123456789abcdef0123456789abcdef\n",
		"etc/docker/key.json":            "{\"kid\":\"SAME-ON-EVERY-CLONE\"}\n",
		"var/lib/dpkg/status":            DpkgStatus(pkgs...),
		"lib/systemd/system/ssh.service": "[Unit]\nDescription=OpenBSD Secure Shell server\n",
		"etc/systemd/system/":            "",
		"home/":                          "",
		"usr/local/sbin/":                "",
	}
}

// BaseSpec describes a synthetic base image.
type BaseSpec struct {
	BootLabel, RootLabel string
	DiskID               uint32
	BootFiles            map[string]string // on the FAT; %ROOT%/%BOOT% become PARTUUIDs
	Root                 map[string]string // root tree; the same in etc/fstab
	RootMiB              int64
}

// MakeBase builds dir/base.img from s: an MBR with a 64 MiB FAT32 partition
// at 8 MiB (type 0c) and an ext4 partition after it (type 83).
func MakeBase(dir string, s BaseSpec) (string, error) {
	img := filepath.Join(dir, "base.img")
	bootStart, bootMiB := int64(8*MiB), int64(64)
	rootStart := bootStart + bootMiB*MiB
	if s.RootMiB == 0 {
		s.RootMiB = 48
	}
	size := rootStart + s.RootMiB*MiB
	if err := writeMBR(img, size, s.DiskID, [][3]int64{{0x0c, bootStart, bootMiB * MiB}, {0x83, rootStart, s.RootMiB * MiB}}); err != nil {
		return "", err
	}
	partuuid := func(n int) string { return fmt.Sprintf("%08x-%02d", s.DiskID, n) }
	subst := strings.NewReplacer("%BOOT%", partuuid(1), "%ROOT%", partuuid(2))
	if err := run("mkfs.vfat", "-F", "32", "-s", "1", "-n", s.BootLabel, "--offset", fmt.Sprint(bootStart/512), img, fmt.Sprint(bootMiB*1024)); err != nil {
		return "", err
	}
	bootDir := filepath.Join(dir, "bootfiles")
	files := map[string]string{}
	for k, v := range s.BootFiles {
		files[k] = subst.Replace(v)
	}
	if err := WriteTree(bootDir, files); err != nil {
		return "", err
	}
	for name := range files {
		if err := run("mcopy", "-i", fmt.Sprintf("%s@@%d", img, bootStart), "-o", filepath.Join(bootDir, name), "::/"+name); err != nil {
			return "", err
		}
	}
	rootDir := filepath.Join(dir, "rootfiles")
	files = map[string]string{}
	for k, v := range s.Root {
		files[k] = subst.Replace(v)
	}
	if err := WriteTree(rootDir, files); err != nil {
		return "", err
	}
	if err := run("mke2fs", "-q", "-F", "-t", "ext4", "-L", s.RootLabel, "-E", fmt.Sprintf("offset=%d,root_owner=0:0", rootStart), "-d", rootDir, img, fmt.Sprintf("%dk", s.RootMiB*1024)); err != nil {
		return "", err
	}
	os.RemoveAll(bootDir)
	os.RemoveAll(rootDir)
	return img, nil
}

// writeMBR creates the image file with an MBR: disk identifier at byte
// 440, one entry per partition {type, start, size} (bytes).
func writeMBR(img string, size int64, diskID uint32, parts [][3]int64) error {
	var b [512]byte
	binary.LittleEndian.PutUint32(b[440:444], diskID)
	for i, p := range parts {
		e := b[446+16*i:]
		e[4] = byte(p[0])
		binary.LittleEndian.PutUint32(e[8:12], uint32(p[1]/512))
		binary.LittleEndian.PutUint32(e[12:16], uint32(p[2]/512))
	}
	b[510], b[511] = 0x55, 0xaa
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	if _, err := f.WriteAt(b[:], 0); err != nil {
		return err
	}
	return f.Close()
}

// TrixieDefinition makes a synthetic Raspberry Pi OS Trixie base image in
// dir and an image definition named name for it (dir/<name>.yaml, with a
// config.txt addition), and returns the definition's path.
func TrixieDefinition(dir, name string) (string, error) {
	base, err := MakeBase(dir, Flavours()["raspios-trixie"])
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(base)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	def := name + ".yaml"
	if err := WriteTree(dir, map[string]string{
		def:              fmt.Sprintf("apiVersion: provision/v1\nkind: PiImage\nname: %s\nbase:\n  path: %s\n  sha256: %q\nboot:\n  config: config-add.txt\n", name, filepath.Base(base), hex.EncodeToString(sum[:])),
		"config-add.txt": "gpu_mem=16\n",
	}); err != nil {
		return "", err
	}
	return filepath.Join(dir, def), nil
}

// WriteTree writes files (path → content; a trailing / makes a directory)
// under dir.
func WriteTree(dir string, files map[string]string) error {
	for p, c := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Tools are the programs MakeBase runs.
var Tools = []string{"mkfs.vfat", "mcopy", "mke2fs"}

func run(name string, args ...string) error {
	p, err := exec.LookPath(name)
	if err != nil {
		if _, e := os.Stat("/usr/sbin/" + name); e == nil {
			p = "/usr/sbin/" + name
		} else if _, e := os.Stat("/sbin/" + name); e == nil {
			p = "/sbin/" + name
		} else {
			return fmt.Errorf("%s not found (dosfstools, mtools, e2fsprogs)", name)
		}
	}
	cmd := exec.Command(p, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Flavours are synthetic bases shaped like each supported image, by the
// flavour name provision gives them.
func Flavours() map[string]BaseSpec {
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
	return map[string]BaseSpec{
		"raspios-trixie": {
			BootLabel: "bootfs", RootLabel: "rootfs", DiskID: 0x295ac2ff,
			BootFiles: with(fw, "config.txt", "[all]\nauto_initramfs=1\n", "cmdline.txt", "console=serial0,115200 console=tty1 root=PARTUUID=%ROOT% rootfstype=ext4 fsck.repair=yes rootwait\n",
				"user-data", "#cloud-config\n", "meta-data", "dsmode: local\ninstance_id: rpios-image\n", "network-config", "# example\n"),
			Root: with(RootTree("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_CODENAME=trixie\n",
				"cloud-init=25.1.4-1+rpt1", "docker.io=26.1.5+dfsg1-9", "raspberrypi-sys-mods=20250918", "linux-image-rpi-v8=1:6.12.47-1+rpt1"), "etc/fstab", rpiFstab),
		},
		"raspios-bookworm": {
			BootLabel: "bootfs", RootLabel: "rootfs", DiskID: 0x4e2c1a33,
			BootFiles: with(fw, "config.txt", "[all]\n", "cmdline.txt", "console=serial0,115200 console=tty1 root=PARTUUID=%ROOT% rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"),
			Root: with(RootTree("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n",
				"docker.io=20.10.24+dfsg1-1+b3", "raspberrypi-sys-mods=20240618", "linux-image-rpi-v8=1:6.6.31-1+rpt1"), "etc/fstab", rpiFstab),
		},
		"ubuntu": {
			BootLabel: "system-boot", RootLabel: "writable", DiskID: 0x7a1b2c3d,
			BootFiles: with(fw, "config.txt", "[all]\nkernel=vmlinuz\ncmdline=cmdline.txt\ninitramfs initrd.img followkernel\n", "vmlinuz", "kernel\n", "initrd.img", "initrd\n",
				"cmdline.txt", "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc\n",
				"user-data", "#cloud-config\n", "meta-data", "dsmode: local\ninstance_id: cloud-image\n", "network-config", "version: 2\n"),
			Root: with(RootTree("PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\nVERSION_CODENAME=noble\n",
				"cloud-init=24.2-0ubuntu1", "docker.io=24.0.7-0ubuntu4", "linux-image-raspi=6.8.0.1010.11"),
				"etc/fstab", "LABEL=writable / ext4 defaults 0 1\nLABEL=system-boot /boot/firmware vfat defaults 0 1\n"),
		},
		"debian-raspi": {
			BootLabel: "RASPIFIRM", RootLabel: "RASPIROOT", DiskID: 0x1d2e3f40,
			BootFiles: with(fw, "config.txt", "[all]\narm_64bit=1\nkernel=vmlinuz-6.1.0-26-arm64\n", "cmdline.txt", "console=tty0 console=ttyS1,115200 root=LABEL=RASPIROOT rw fsck.repair=yes net.ifnames=0 rootwait\n", "sysconf.txt", "#hostname=\n"),
			Root: with(RootTree("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n",
				"cloud-init=22.4.2-1+deb12u1", "docker.io=20.10.24+dfsg1-1+deb12u1", "raspi-firmware=1.20220830+ds-1", "linux-image-arm64=6.1.115-1"),
				"etc/fstab", "LABEL=RASPIROOT / ext4 rw 0 1\nLABEL=RASPIFIRM /boot/firmware vfat rw 0 2\n"),
		},
	}
}
