package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Labels of a Debian-built image (Debian's raspi images use the same).
const (
	DebianBootLabel = "RASPIFIRM"
	DebianRootLabel = "RASPIROOT"
)

// AssembleOptions says what Assemble writes.
type AssembleOptions struct {
	// Root is the root file system tree (made as root: owners are kept),
	// with the Pi firmware, kernel and initramfs in Root/boot/firmware.
	Root   string
	Output string // the image file to write (replaced)
	bakeOptions
	DiskID uint32 // MBR disk identifier
	UUID   string // ext4 UUID and hash seed
	VolID  uint32 // FAT volume ID
}

// Assemble writes an MBR image from a root file system tree without mount or
// loop device: partition 1 FAT32 (RASPIFIRM) at 8 MiB with the tree's
// boot/firmware, config.txt and cmdline.txt, written with go-diskfs;
// partition 2 ext4 (RASPIROOT) made by mke2fs -d into a file of its own,
// baked with debugfs, then copied in sparsely. cmdline.txt and /etc/fstab
// name the partitions by PARTUUID (disk ID o.DiskID). The same tree and
// options give the same bytes.
func Assemble(ctx context.Context, o AssembleOptions) (Layout, error) {
	fw := filepath.Join(o.Root, "boot", "firmware")
	if _, err := os.Stat(filepath.Join(fw, "start4.elf")); err != nil {
		return Layout{}, fmt.Errorf("assemble %s: the root tree has no boot/firmware/start4.elf (is raspi-firmware installed?)", o.Root)
	}
	kernel, initrd, err := kernelFiles(o.Root)
	if err != nil {
		return Layout{}, fmt.Errorf("assemble %s: %w", o.Root, err)
	}
	treeSize, err := duTree(o.Root)
	if err != nil {
		return Layout{}, fmt.Errorf("assemble %s: %w", o.Root, err)
	}
	bootSize := parseSize(o.Def.BootSize, 512*mib)
	rootSize := parseSize(o.Def.RootSize, alignUp(treeSize+treeSize/5+256*mib, 4*mib))
	if rootSize < treeSize+treeSize/20 {
		return Layout{}, fmt.Errorf("assemble %s: rootSize %s is smaller than the tree (%s)", o.Root, o.Def.RootSize, HumanBytes(treeSize))
	}
	m := MBR{DiskID: o.DiskID, Partitions: []Partition{
		{Number: 1, Type: typeFAT32LBA, Start: 8 * mib, Size: bootSize, Label: DebianBootLabel},
		{Number: 2, Type: typeLinux, Start: 8*mib + bootSize, Size: rootSize, Label: DebianRootLabel},
	}}
	boot, rootPart := m.Partitions[0], m.Partitions[1]
	d := bootConfigData{Kernel: kernel, Initramfs: initrd, DiskID: fmt.Sprintf("%08x", o.DiskID),
		RootPARTUUID: m.PartUUID(2), BootPARTUUID: m.PartUUID(1)}

	// The root file system, in a file of its own.
	rootFile := filepath.Join(o.Tmp, "root.ext4")
	if err := os.WriteFile(rootFile, nil, 0o600); err != nil {
		return Layout{}, err
	}
	defer os.Remove(rootFile)
	if err := os.Truncate(rootFile, rootSize); err != nil {
		return Layout{}, err
	}
	if err := mkfs(ctx, rootFile, rootSize, o.Root, DebianRootLabel, o.UUID, o.Epoch); err != nil {
		return Layout{}, fmt.Errorf("assemble: %w", err)
	}
	root := ext4{Image: rootFile, Epoch: o.Epoch}
	if err := clampTimes(ctx, root, o.Root, o.Epoch); err != nil {
		return Layout{}, fmt.Errorf("assemble: %w", err)
	}
	ov := append(Overlay{}, o.Lab...)
	ov = append(ov, Entry{Path: "/etc/fstab", Kind: KindFile, Mode: 0o644, Data: []byte(fmt.Sprintf(
		"# Written by provision: the partitions of this disk (disk identifier %08x).\n"+
			"PARTUUID=%s  /               ext4  defaults,noatime  0  1\n"+
			"PARTUUID=%s  /boot/firmware  vfat  defaults          0  2\n", o.DiskID, m.PartUUID(2), m.PartUUID(1)))})
	users, err := userOverlay(ctx, root, o.User, o.Keys)
	if err != nil {
		return Layout{}, fmt.Errorf("assemble: ssh.user %s: %w", o.User, err)
	}
	ov = append(ov, users...)
	ov = append(ov, sshEnable(ctx, root)...)
	if err := applyOverlay(ctx, root, ov, o.Tmp); err != nil {
		return Layout{}, fmt.Errorf("assemble: root file system: %w", err)
	}

	// The image.
	tmp := o.Output + ".tmp"
	img, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Layout{}, err
	}
	ok := false
	defer func() {
		img.Close()
		if !ok {
			os.Remove(tmp)
		}
	}()
	if err := img.Truncate(rootPart.End()); err != nil {
		return Layout{}, err
	}
	if err := writeMBR(img, m); err != nil {
		return Layout{}, err
	}
	fat, err := createFAT(img, boot, DebianBootLabel, o.VolID)
	if err != nil {
		return Layout{}, err
	}
	if _, err := fat.copyTree(fw); err != nil {
		return Layout{}, fmt.Errorf("assemble: boot partition: %w", err)
	}
	for _, k := range []string{kernel, initrd} {
		if !fat.exists(k) {
			data, err := os.ReadFile(filepath.Join(o.Root, "boot", k))
			if err != nil {
				return Layout{}, fmt.Errorf("assemble: %w", err)
			}
			if err := fat.writeFile(k, data); err != nil {
				return Layout{}, err
			}
		}
	}
	cfg, err := debianConfig(o.Def, d)
	if err != nil {
		return Layout{}, err
	}
	cmdline, err := renderBootTemplate(o.Def, o.Def.Boot.Cmdline, d)
	if err != nil {
		return Layout{}, err
	}
	line := withTokens(strings.TrimSpace(string(cmdline)), cgroupTokens...)
	if err := fat.writeFile("config.txt", cfg); err != nil {
		return Layout{}, err
	}
	if err := fat.writeFile("cmdline.txt", []byte(line+"\n")); err != nil {
		return Layout{}, err
	}
	if err := fixFATTimes(img, boot, time.Unix(o.Epoch, 0)); err != nil {
		return Layout{}, err
	}
	rf, err := os.Open(rootFile)
	if err != nil {
		return Layout{}, err
	}
	defer rf.Close()
	if err := copySparse(ctx, img, rootPart.Start, rf, rootSize); err != nil {
		return Layout{}, err
	}
	if err := img.Sync(); err != nil {
		return Layout{}, err
	}
	if err := img.Close(); err != nil {
		return Layout{}, err
	}
	if err := os.Rename(tmp, o.Output); err != nil {
		return Layout{}, err
	}
	ok = true
	// Read back what a Pi will see.
	f, err := os.Open(o.Output)
	if err != nil {
		return Layout{}, err
	}
	defer f.Close()
	return detect(ctx, f, o.Output)
}

// kernelFiles finds the newest vmlinuz-* and initrd.img-* of the tree, in
// boot/firmware or boot.
func kernelFiles(root string) (kernel, initrd string, err error) {
	find := func(prefix string) string {
		for _, dir := range []string{filepath.Join(root, "boot", "firmware"), filepath.Join(root, "boot")} {
			m, _ := filepath.Glob(filepath.Join(dir, prefix+"*"))
			sort.Strings(m)
			for i := len(m) - 1; i >= 0; i-- {
				if st, err := os.Stat(m[i]); err == nil && st.Mode().IsRegular() {
					return filepath.Base(m[i])
				}
			}
		}
		return ""
	}
	kernel, initrd = find("vmlinuz-"), find("initrd.img-")
	switch {
	case kernel == "":
		return "", "", errors.New("no kernel (boot/vmlinuz-*) in the root tree")
	case initrd == "":
		return "", "", errors.New("no initramfs (boot/initrd.img-*) in the root tree")
	}
	return kernel, initrd, nil
}

// duTree is the space the tree takes, counting each file in whole blocks.
func duTree(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n += blockSize
		if d.Type().IsRegular() {
			st, err := d.Info()
			if err != nil {
				return err
			}
			n += alignUp(st.Size(), blockSize)
		}
		return nil
	})
	return n, err
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }
