package netboot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fhlab/provision/internal/rpi/fatfs"
	"github.com/fhlab/provision/internal/rpi/image"
)

// BootImage is the golden image's FAT boot partition, served in place: the
// image file is opened read-only and every file located once (fatfs.Index),
// so a block is one pread from the image, by any number of transfers at
// once. Nothing is extracted and nothing is written.
type BootImage struct {
	Path   string
	Layout image.Layout
	files  map[string]*fatfs.IndexedFile
	f      *os.File
	mapped []byte // the image file mapped read-only, when it could be
}

// OpenBootImage checks that path is a Raspberry Pi image provision knows
// (image.Inspect: partition table, boot and root file systems) and indexes
// its boot partition. tmp is for the scratch files Inspect may need.
func OpenBootImage(ctx context.Context, path, tmp string) (*BootImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("golden image: %w", err)
	}
	ok := false
	var mapped []byte
	defer func() {
		if !ok {
			f.Close()
			if mapped != nil {
				unix.Munmap(mapped)
			}
		}
	}()
	head := make([]byte, 6)
	if n, _ := f.ReadAt(head, 0); n == 6 && string(head) == "\xfd7zXZ\x00" {
		return nil, fmt.Errorf("golden image %s: compressed (xz): netboot serves a raw image; unpack it first (xz -dk)", path)
	}
	l, err := image.Inspect(ctx, path, tmp)
	if err != nil {
		return nil, fmt.Errorf("golden image: %w", err)
	}
	if !fatfs.IsFAT32(f, l.Boot.Start) {
		return nil, fmt.Errorf("golden image %s: boot partition %d is not FAT32: netboot serves FAT32 boot partitions", path, l.Boot.Number)
	}
	// Blocks are copied from a read-only mapping of the image (the page
	// cache itself): no system call per block. The golden image is never
	// changed in place (a new build is a new file).
	var disk io.ReaderAt = f
	if st, err := f.Stat(); err == nil && st.Size() > 0 && int64(int(st.Size())) == st.Size() {
		if m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED); err == nil {
			mapped, disk = m, bytes.NewReader(m)
		}
	}
	files, err := fatfs.Index(disk, l.Boot.Start)
	if err != nil {
		return nil, fmt.Errorf("golden image %s: boot partition %d: %w", path, l.Boot.Number, err)
	}
	for _, need := range []string{"start4.elf", "config.txt", "cmdline.txt"} {
		if files[need] == nil {
			return nil, fmt.Errorf("golden image %s: the boot partition has no %s: a Pi 4 cannot netboot from it", path, need)
		}
	}
	ok = true
	return &BootImage{Path: path, Layout: l, files: files, f: f, mapped: mapped}, nil
}

// Close unmaps and closes the image file; nothing may read it after.
func (b *BootImage) Close() error {
	if b.mapped != nil {
		unix.Munmap(b.mapped)
		b.mapped = nil
	}
	return b.f.Close()
}

// Lookup finds file p (a relative path; case does not matter, as on FAT).
func (b *BootImage) Lookup(p string) (*fatfs.IndexedFile, bool) {
	f, ok := b.files[strings.ToLower(p)]
	return f, ok
}

// ReadFile reads a whole (small) file of the boot partition.
func (b *BootImage) ReadFile(p string) ([]byte, error) {
	f, ok := b.Lookup(p)
	if !ok {
		return nil, fmt.Errorf("golden image %s: no %s on the boot partition", b.Path, p)
	}
	if f.Size > 1<<20 {
		return nil, fmt.Errorf("golden image %s: %s is %d bytes, too large for a boot configuration file", b.Path, p, f.Size)
	}
	data := make([]byte, f.Size)
	if _, err := f.ReadAt(data, 0); err != nil && f.Size > 0 {
		return nil, fmt.Errorf("golden image %s: %w", b.Path, err)
	}
	return data, nil
}

// Files lists the boot partition's files (their stored paths), for tests
// and the bench.
func (b *BootImage) Files() []string {
	out := make([]string, 0, len(b.files))
	for _, f := range b.files {
		out = append(out, f.Path)
	}
	return out
}
