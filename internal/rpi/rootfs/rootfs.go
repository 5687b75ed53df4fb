// Package rootfs builds the Debian root filesystem of a Raspberry Pi golden
// image: an arm64 tree made by mmdebstrap from Debian's packages, under
// qemu-user emulation when the host is not arm64, with the kernel, a small
// initramfs and the Pi firmware (Debian's raspi-firmware, in /boot/firmware).
//
// The image assembly (MBR, FAT32, ext4) and everything per lab (host tuning,
// SSH user, seeds) happen afterwards, elsewhere; Build only adds what makes
// sense at build time: no apt lists or caches, no machine-id, SSH host keys
// or docker engine identity, a fixed placeholder hostname, and cloud-init
// pinned to the NoCloud datasource so that no metadata service is probed.
package rootfs

import (
	"log/slog"
)

// Options says what Build makes. Empty fields take the defaults below.
type Options struct {
	// Dir is the root filesystem to create; it must not exist or be empty.
	Dir string
	// Suite is the Debian release (DefaultSuite).
	Suite string
	// Mirror is the Debian mirror (DefaultMirror).
	Mirror string
	// Arch is the Debian architecture of the tree (DefaultArch).
	Arch string
	// Components are the archive areas (DefaultComponents); raspi-firmware
	// lives in non-free-firmware.
	Components []string
	// Packages are installed besides BasePackages.
	Packages []string
	// InitramfsModules are put in the initramfs besides InitramfsModules
	// (the package-level list): the initramfs is built with MODULES=list.
	InitramfsModules []string
	// SourceDateEpoch, when not 0, is exported as SOURCE_DATE_EPOCH and is
	// the newest modification time left in the tree, so that two builds
	// from the same mirror content give the same files.
	SourceDateEpoch int64
	// Log receives the builder's messages and mmdebstrap's output (debug);
	// nil discards them.
	Log *slog.Logger
	// Progress, when set, is told about each step as it starts.
	Progress func(format string, args ...any)

	// Hostname is the placeholder in /etc/hostname until cloud-init sets
	// the node's own (DefaultHostname).
	Hostname string
	// Keyring is the OpenPGP keyring the mirror is checked with; empty
	// means DebianKeyring when that file exists (hosts other than Debian,
	// e.g. an Ubuntu CI runner, do not trust Debian's keys by default),
	// else apt's default.
	Keyring string
}

// Defaults.
const (
	DefaultSuite    = "bookworm"
	DefaultMirror   = "http://deb.debian.org/debian"
	DefaultArch     = "arm64"
	DefaultHostname = "debian-pi"
	// DebianKeyring is where debian-archive-keyring installs Debian's keys.
	DebianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
)

// DefaultComponents are the archive areas when Options.Components is empty.
func DefaultComponents() []string { return []string{"main", "non-free-firmware"} }

// BasePackages are installed into every tree: what a golden Pi node needs
// to boot from an SD card, USB or NBD, apply its cloud-init seed and run
// Docker. mmdebstrap installs no Recommends, so the tools the host tuning
// and first boot call are listed too.
func BasePackages() []string {
	return []string{
		// boot: init, devices, the kernel and the Pi's firmware
		"systemd", "systemd-sysv", "udev", "dbus", "kmod",
		"linux-image-arm64", "raspi-firmware",
		// a netbooted Pi's root: nbd-client in the initramfs (its own hook,
		// which adds every network driver and took over 10 minutes under
		// emulation, is replaced by a lean one: initramfsHook)
		"nbd-client",
		// first boot: cloud-init with its NoCloud seed, netplan for
		// network-config, and what growpart/resize_rootfs run
		"cloud-init", "netplan.io", "systemd-resolved", "cloud-guest-utils",
		"fdisk", "e2fsprogs", "dosfstools", "tzdata", "ca-certificates",
		// the node's job and its tuning
		"docker.io", "apparmor", "openssh-server", "sudo", "zram-tools",
		"ipvsadm", "chrony", "iproute2", "procps",
	}
}

// InitramfsModules are the kernel modules the initramfs carries (with their
// dependencies) so that the root filesystem is found on
//   - a Raspberry Pi 4's SD card: emmc2 is sdhci-iproc, whose card supplies
//     are a fixed and a GPIO regulator (modules in Debian's kernel: without
//     them the controller waits for its regulators forever),
//   - a USB disk: the VL805 xHCI controller needs reset-raspberrypi to load
//     its firmware; usb-storage/uas disks are SCSI disks (sd_mod),
//   - NBD over the Pi 4's Ethernet (bcmgenet with its PHY and MDIO bus),
//   - virtio disks of qemu's "virt" machine (the smoke boot).
//
// Debian's arm64 kernel builds in the BCM2711 clocks, pinctrl, firmware
// interface, power domains, PCIe host and the mmc core; Verify checks that
// every name here is a module or built in.
func InitramfsModules() []string {
	return []string{
		// filesystems: the root, and the firmware partition for fsck
		"ext4", "crc32c_generic", "vfat", "nls_cp437", "nls_ascii",
		// Pi 4: SD card
		"sdhci-iproc", "mmc_block", "fixed", "gpio-regulator",
		// Pi 4: USB mass storage
		"reset-raspberrypi", "xhci-pci", "usb-storage", "uas", "sd_mod",
		// Pi 4: Ethernet for an NBD root
		"genet", "broadcom", "mdio-bcm-unimac", "nbd",
		// qemu virt
		"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_scsi",
	}
}
