package rootfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FirmwareFiles must be in <root>/boot/firmware for a Raspberry Pi 4 to
// start: the GPU firmware and the board's device tree.
var FirmwareFiles = []string{"start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"}

// Kernel is an installed kernel: its version and the paths of its image and
// initramfs, relative to the root.
type Kernel struct {
	Version, Image, Initrd string
}

// Kernels lists the kernels installed in the tree at root, newest version
// last.
func Kernels(root string) ([]Kernel, error) {
	matches, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return nil, err
	}
	var ks []Kernel
	for _, m := range matches {
		v := strings.TrimPrefix(filepath.Base(m), "vmlinuz-")
		ks = append(ks, Kernel{Version: v, Image: "boot/vmlinuz-" + v, Initrd: "boot/initrd.img-" + v})
	}
	slices.SortFunc(ks, func(a, b Kernel) int { return CompareVersions(a.Version, b.Version) })
	return ks, nil
}

// Verify checks a built tree: a kernel with its initramfs, the Pi firmware
// in /boot/firmware, and every module in mods either built into that kernel
// or shipped as a module (a misspelt name would silently leave the
// initramfs without it).
func Verify(root string, mods []string) error {
	ks, err := Kernels(root)
	if err != nil {
		return err
	}
	if len(ks) == 0 {
		return fmt.Errorf("no kernel in %s/boot (linux-image-* not installed?)", root)
	}
	for _, k := range ks {
		if fi, err := os.Stat(filepath.Join(root, k.Initrd)); err != nil || fi.Size() == 0 {
			return fmt.Errorf("kernel %s has no initramfs %s", k.Version, k.Initrd)
		}
		known, err := kernelModules(root, k.Version)
		if err != nil {
			return err
		}
		var missing []string
		for _, m := range mods {
			if !known[modName(m)] {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("kernel %s has no module %s (neither built in nor in modules.dep): check the initramfs module list", k.Version, strings.Join(missing, ", "))
		}
	}
	for _, f := range FirmwareFiles {
		if _, err := os.Stat(filepath.Join(root, "boot", "firmware", f)); err != nil {
			return fmt.Errorf("no Raspberry Pi firmware file boot/firmware/%s (raspi-firmware not installed, or its kernel hook did not run)", f)
		}
	}
	return nil
}

// modName normalises a module name as modprobe does ('-' and '_' are the
// same).
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// kernelModules reads modules.builtin and modules.dep of kernel version v.
func kernelModules(root, v string) (map[string]bool, error) {
	known := map[string]bool{}
	for _, f := range []string{"modules.builtin", "modules.dep"} {
		p := filepath.Join(root, "lib", "modules", v, f)
		fh, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", v, err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			path, _, _ := strings.Cut(sc.Text(), ":")
			base := filepath.Base(strings.TrimSpace(path))
			if i := strings.Index(base, ".ko"); i > 0 {
				known[modName(base[:i])] = true
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("kernel %s: read %s: %w", v, f, err)
		}
	}
	return known, nil
}
