package smoke

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fhlab/provision/internal/rpi/rootfs"
)

// RootFS is where the root filesystem lies in a disk image.
type RootFS struct {
	// Offset is the byte offset of the ext4 filesystem in the image.
	Offset int64
	// Partition is the MBR partition number (1-4), or 0 for an image that
	// is one bare filesystem.
	Partition int
}

// Device is the root device of the image attached as the first virtio
// disk of qemu's virt machine.
func (r RootFS) Device() string {
	if r.Partition == 0 {
		return "/dev/vda"
	}
	return fmt.Sprintf("/dev/vda%d", r.Partition)
}

// ext4Magic is at byte 1080 of an ext2/3/4 filesystem (superblock at 1024,
// s_magic at 56).
const ext4Magic = 0xEF53

// FindRootFS finds the ext4 root filesystem of img: the first Linux (0x83)
// MBR partition holding one, or the whole file when it is a bare ext4
// filesystem.
func FindRootFS(img string) (RootFS, error) {
	f, err := os.Open(img)
	if err != nil {
		return RootFS{}, err
	}
	defer f.Close()
	if ok, err := isExt4(f, 0); err != nil {
		return RootFS{}, fmt.Errorf("read %s: %w", img, err)
	} else if ok {
		return RootFS{}, nil
	}
	mbr := make([]byte, 512)
	if _, err := io.ReadFull(f, mbr); err != nil {
		return RootFS{}, fmt.Errorf("read the partition table of %s: %w", img, err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return RootFS{}, fmt.Errorf("%s is neither an ext4 filesystem nor a disk with an MBR partition table", img)
	}
	for i := range 4 {
		e := mbr[446+16*i : 446+16*(i+1)]
		if e[4] != 0x83 {
			continue
		}
		off := int64(binary.LittleEndian.Uint32(e[8:12])) * 512
		ok, err := isExt4(f, off)
		if err != nil {
			return RootFS{}, fmt.Errorf("read partition %d of %s: %w", i+1, img, err)
		}
		if ok {
			return RootFS{Offset: off, Partition: i + 1}, nil
		}
	}
	return RootFS{}, fmt.Errorf("%s has no Linux (0x83) partition with an ext4 filesystem", img)
}

func isExt4(f *os.File, off int64) (bool, error) {
	b := make([]byte, 2)
	if _, err := f.ReadAt(b, off+1024+56); err == io.EOF {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return binary.LittleEndian.Uint16(b) == ext4Magic, nil
}

// Spec addresses the filesystem at r in img for e2fsprogs (debugfs,
// e2fsck): the file itself, or IMG?offset=N.
func (r RootFS) Spec(img string) string {
	if r.Offset == 0 {
		return img
	}
	return fmt.Sprintf("%s?offset=%d", img, r.Offset)
}

// BootFiles are the kernel and initramfs copied out of an image.
type BootFiles struct {
	Version, Kernel, Initrd string
}

// ExtractBoot copies the newest kernel and its initramfs from /boot of the
// root filesystem r in img into dir, with debugfs (read-only, no mount).
func ExtractBoot(ctx context.Context, img string, r RootFS, dir string) (BootFiles, error) {
	spec := r.Spec(img)
	out, err := debugfs(ctx, spec, "ls -p /boot")
	if err != nil {
		return BootFiles{}, err
	}
	// ls -p prints /inode/mode/uid/gid/name/size/ per entry.
	var versions []string
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Split(strings.Trim(line, "/"), "/")
		if len(fields) >= 5 {
			if v, ok := strings.CutPrefix(fields[4], "vmlinuz-"); ok {
				versions = append(versions, v)
			}
		}
	}
	if len(versions) == 0 {
		return BootFiles{}, fmt.Errorf("%s: no /boot/vmlinuz-* in the root filesystem", img)
	}
	slices.SortFunc(versions, rootfs.CompareVersions)
	v := versions[len(versions)-1]
	b := BootFiles{Version: v, Kernel: filepath.Join(dir, "vmlinuz-"+v), Initrd: filepath.Join(dir, "initrd.img-"+v)}
	for src, dst := range map[string]string{"/boot/vmlinuz-" + v: b.Kernel, "/boot/initrd.img-" + v: b.Initrd} {
		if _, err := debugfs(ctx, spec, fmt.Sprintf("dump %s %s", src, dst)); err != nil {
			return BootFiles{}, err
		}
		if fi, err := os.Stat(dst); err != nil || fi.Size() == 0 {
			return BootFiles{}, fmt.Errorf("%s: could not copy %s out of the root filesystem", img, src)
		}
	}
	return b, nil
}

func debugfs(ctx context.Context, spec, request string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "debugfs", "-R", request, spec)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debugfs -R %q %s: %w: %s", request, spec, err, bytes.TrimSpace(stderr.Bytes()))
	}
	// debugfs reports a failed request on stderr and still exits 0.
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(line, "debugfs ") || strings.TrimSpace(line) == "" {
			continue
		}
		return "", fmt.Errorf("debugfs -R %q %s: %s", request, spec, strings.TrimSpace(line))
	}
	return stdout.String(), nil
}
