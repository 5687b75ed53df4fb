package image

import (
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/rpi/fatfs"
)

// TestDiff: a copy of an image is identical; after changing a file's data
// on the FAT partition, a file's data on the ext4 partition and an inode's
// mtime (debugfs), Diff names exactly those files, the inode's fields, and
// nothing else.
func TestDiff(t *testing.T) {
	needImageTools(t)
	dir := t.TempDir()
	a := makeBase(t, dir, flavours()["raspios-trixie"])
	b := filepath.Join(dir, "b.img")
	copyFile(t, a, b)
	ctx := context.Background()

	r, err := Diff(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Identical() || len(r.Areas) != 0 {
		t.Fatalf("a copy differs: %+v", r)
	}

	m, err := ReadMBR(b)
	if err != nil {
		t.Fatal(err)
	}
	boot, root := m.Partitions[0], m.Partitions[1]
	f, err := os.OpenFile(b, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// FAT: overwrite the first byte of cmdline.txt in place.
	files, err := fatfs.Index(f, boot.Start)
	if err != nil {
		t.Fatal(err)
	}
	cmdline := files["cmdline.txt"]
	if cmdline == nil {
		t.Fatalf("no cmdline.txt in %v", slices.Collect(maps.Keys(files)))
	}
	flipByte(t, f, cmdline.Extents[0].Off)
	// ext4: overwrite the first byte of /etc/os-release's first block.
	e := ext4{Image: b, Offset: root.Start}
	out, err := e.debugfs(ctx, false, "bmap /etc/os-release 0\n")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(out)) // "debugfs: bmap ..." echoed, then the block
	blk, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		t.Fatalf("bmap: %q", out)
	}
	l, err := readExt4Layout(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, f, root.Start+blk*l.blockSize)
	// ext4: a new mtime on /etc/hostname.
	if _, err := e.debugfs(ctx, true, "set_inode_field /etc/hostname mtime 20200101000000\n"); err != nil {
		t.Fatal(err)
	}

	r, err = Diff(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Identical() {
		t.Fatal("the changed copy is reported identical")
	}
	got := map[string]DiffArea{}
	for _, ar := range r.Areas {
		got[ar.Name] = ar
	}
	fat, ok := got["partition 1 (FAT32)"]
	if !ok || fat.Blocks != 1 || fat.Files["cmdline.txt"] != sectorSize || len(fat.Meta) != 0 {
		t.Errorf("FAT area: %+v", fat)
	}
	ex, ok := got["partition 2 (ext4)"]
	if !ok || ex.Files["/etc/os-release"] != l.blockSize || len(ex.Files) != 1 || len(ex.Meta) != 0 {
		t.Errorf("ext4 files: %+v", ex)
	}
	if f := ex.Inodes["/etc/hostname"]; !slices.Contains(f, "mtime") || !slices.Contains(f, "checksum") || len(ex.Inodes) != 1 {
		t.Errorf("ext4 inodes: %v", ex.Inodes)
	}
	if len(r.Areas) != 2 {
		t.Errorf("areas: %+v", r.Areas)
	}
}

func flipByte(t *testing.T, f *os.File, off int64) {
	t.Helper()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
