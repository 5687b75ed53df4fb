package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/fhlab/provision/internal/rpi/rootfs"
)

// Flavour is the kind of Raspberry Pi image, recognised from the image.
type Flavour string

// The flavours provision knows.
const (
	RaspiOSBookworm Flavour = "raspios-bookworm" // first boot through firstrun.sh
	RaspiOSTrixie   Flavour = "raspios-trixie"   // cloud-init seed files on bootfs
	Ubuntu          Flavour = "ubuntu"           // system-boot / writable, cloud-init
	DebianRaspi     Flavour = "debian-raspi"     // RASPIFIRM / RASPIROOT
)

// Seed formats: how a Pi of that image gets its identity at first boot.
const (
	SeedNoCloud  = "nocloud"  // user-data, meta-data, network-config on the boot partition
	SeedFirstrun = "firstrun" // firstrun.sh on the boot partition, run by systemd.run=
)

// Layout is what provision found in an image.
type Layout struct {
	Flavour   Flavour           `json:"flavour"`
	Seed      string            `json:"seed"`
	MBR       MBR               `json:"-"`
	DiskID    string            `json:"diskID"`
	Boot      Partition         `json:"boot"`
	Root      Partition         `json:"root"`
	OSRelease map[string]string `json:"osRelease"`
	CloudInit bool              `json:"cloudInit"`
	// Cmdline is the boot partition's cmdline.txt (one line, no newline).
	Cmdline string `json:"cmdline"`
}

// SeedCmdlineTokens is what a seed appends to cmdline.txt for instance id.
func (l Layout) SeedCmdlineTokens(instanceID string) []string {
	switch l.Seed {
	case SeedFirstrun:
		return []string{"systemd.run=/boot/firstrun.sh", "systemd.run_success_action=reboot", "systemd.unit=kernel-command-line.target"}
	default:
		return []string{"ds=nocloud;s=file:///boot/firmware/;i=" + instanceID}
	}
}

// detect reads the partition table, the boot partition and the root file
// system's /etc/os-release and dpkg database, and says which flavour the
// image is. Anything that is not a Raspberry Pi image is an error saying
// why. Nothing is written.
func detect(ctx context.Context, img *os.File, name string) (Layout, error) {
	st, err := img.Stat()
	if err != nil {
		return Layout{}, err
	}
	m, err := readMBR(img, st.Size(), name)
	if err != nil {
		return Layout{}, err
	}
	l := Layout{MBR: m, DiskID: fmt.Sprintf("%08x", m.DiskID)}
	var haveBoot, haveRoot bool
	for _, p := range m.Partitions {
		switch {
		case p.isFAT() && !haveBoot:
			l.Boot, haveBoot = p, true
		case p.Type == typeLinux && haveBoot && !haveRoot:
			l.Root, haveRoot = p, true
		}
	}
	if !haveBoot {
		return Layout{}, fmt.Errorf("%s: not a Raspberry Pi image: no FAT boot partition (MBR type 0c) in the partition table", name)
	}
	if !haveRoot {
		return Layout{}, fmt.Errorf("%s: not a Raspberry Pi image: no Linux root partition (MBR type 83) after the boot partition", name)
	}
	fat, err := openFAT(img, l.Boot)
	if err != nil {
		return Layout{}, fmt.Errorf("%s: not a Raspberry Pi image: %w", name, err)
	}
	l.Boot.Label = fat.label
	var missing []string
	for _, f := range []string{"config.txt", "cmdline.txt"} {
		if !fat.exists(f) {
			missing = append(missing, f)
		}
	}
	if !fat.exists("start4.elf") && !fat.exists("start.elf") {
		missing = append(missing, "start4.elf")
	}
	if len(missing) > 0 {
		return Layout{}, fmt.Errorf("%s: not a Raspberry Pi image: the boot partition (label %q) has no %s", name, l.Boot.Label, strings.Join(missing, ", "))
	}
	cmdline, err := fat.readFile("cmdline.txt")
	if err != nil {
		return Layout{}, fmt.Errorf("%s: %w", name, err)
	}
	l.Cmdline = strings.TrimSpace(strings.SplitN(string(cmdline), "\n", 2)[0])

	root := ext4{Image: name, Offset: l.Root.Start}
	fi, err := root.info(ctx)
	if err != nil {
		return Layout{}, fmt.Errorf("%s: not a Raspberry Pi image: partition %d: %w", name, l.Root.Number, err)
	}
	l.Root.Label = fi.Label
	osr, ok, err := root.cat(ctx, "/etc/os-release")
	if err != nil {
		return Layout{}, fmt.Errorf("%s: read /etc/os-release: %w", name, err)
	}
	if !ok {
		if osr, ok, err = root.cat(ctx, "/usr/lib/os-release"); err != nil || !ok {
			return Layout{}, fmt.Errorf("%s: not a Raspberry Pi image: the root file system (label %q) has no /etc/os-release", name, l.Root.Label)
		}
	}
	l.OSRelease = parseOSRelease(osr)
	status, _, err := root.cat(ctx, "/var/lib/dpkg/status")
	if err != nil {
		return Layout{}, fmt.Errorf("%s: read the dpkg database: %w", name, err)
	}
	pkgs, err := rootfs.ParseStatus(bytes.NewReader(status))
	if err != nil {
		return Layout{}, fmt.Errorf("%s: read the dpkg database: %w", name, err)
	}
	has := func(name string) bool {
		return slices.ContainsFunc(pkgs, func(p Package) bool { return p.Name == name })
	}
	l.CloudInit = has("cloud-init")
	sysMods := has("raspberrypi-sys-mods")

	id, codename := l.OSRelease["ID"], l.OSRelease["VERSION_CODENAME"]
	switch {
	case l.Boot.Label == "system-boot" || l.Root.Label == "writable" || id == "ubuntu":
		l.Flavour = Ubuntu
	case l.Boot.Label == "RASPIFIRM" || l.Root.Label == "RASPIROOT":
		l.Flavour = DebianRaspi
	case l.Boot.Label == "bootfs" || l.Root.Label == "rootfs" || id == "raspbian" || sysMods:
		switch codename {
		case "bookworm":
			l.Flavour = RaspiOSBookworm
		case "trixie":
			l.Flavour = RaspiOSTrixie
		default:
			return Layout{}, fmt.Errorf("%s: Raspberry Pi OS %q (VERSION_CODENAME in /etc/os-release) is not supported: provision knows bookworm and trixie", name, codename)
		}
	default:
		return Layout{}, fmt.Errorf("%s: not a supported Raspberry Pi image: boot label %q, root label %q, os-release ID %q (provision knows Raspberry Pi OS bootfs/rootfs, Ubuntu system-boot/writable, Debian RASPIFIRM/RASPIROOT)", name, l.Boot.Label, l.Root.Label, id)
	}
	switch {
	case l.CloudInit:
		l.Seed = SeedNoCloud
	case l.Flavour == RaspiOSBookworm || l.Flavour == RaspiOSTrixie:
		l.Seed = SeedFirstrun
	default:
		return Layout{}, fmt.Errorf("%s: %s image without cloud-init (not in /var/lib/dpkg/status): provision cannot give its Pis their identity", name, l.Flavour)
	}
	if err := checkRootRefs(ctx, l, root, name); err != nil {
		return Layout{}, err
	}
	return l, nil
}

var partuuidRE = regexp.MustCompile(`^PARTUUID=([0-9a-fA-F]{8})-([0-9]{2})$`)

// checkRootRefs checks that cmdline.txt's root= and /etc/fstab's / and
// /boot/firmware name this disk's partitions: by PARTUUID (disk identifier
// and number) or by LABEL.
func checkRootRefs(ctx context.Context, l Layout, root ext4, name string) error {
	check := func(where, ref string, p Partition) error {
		if m := partuuidRE.FindStringSubmatch(ref); m != nil {
			if want := l.MBR.PartUUID(p.Number); strings.ToLower(m[1])+"-"+m[2] != want {
				return fmt.Errorf("%s: %s names %s but partition %d of this disk is PARTUUID=%s: the image would not boot", name, where, ref, p.Number, want)
			}
			return nil
		}
		if lab, ok := strings.CutPrefix(ref, "LABEL="); ok && lab != p.Label {
			return fmt.Errorf("%s: %s names %s but partition %d is labelled %q: the image would not boot", name, where, ref, p.Number, p.Label)
		}
		return nil
	}
	for _, tok := range strings.Fields(l.Cmdline) {
		if ref, ok := strings.CutPrefix(tok, "root="); ok {
			if err := check("cmdline.txt root=", ref, l.Root); err != nil {
				return err
			}
		}
	}
	fstab, ok, err := root.cat(ctx, "/etc/fstab")
	if err != nil || !ok {
		return err
	}
	for _, e := range parseFstab(fstab) {
		switch e.mount {
		case "/":
			if err := check("/etc/fstab (/)", e.dev, l.Root); err != nil {
				return err
			}
		case "/boot/firmware", "/boot":
			if err := check("/etc/fstab ("+e.mount+")", e.dev, l.Boot); err != nil {
				return err
			}
		}
	}
	return nil
}

type fstabEntry struct{ dev, mount, typ string }

func parseFstab(b []byte) []fstabEntry {
	var out []fstabEntry
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		out = append(out, fstabEntry{f[0], f[1], f[2]})
	}
	return out
}

func parseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		m[k] = strings.Trim(v, `"'`)
	}
	return m
}

// Package is one installed package of the image's dpkg database.
type Package = rootfs.Package
