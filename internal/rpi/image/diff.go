package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/rpi/fatfs"
)

// diffBlock is the unit Diff compares images in.
const diffBlock = 4096

// maxDiffNamed caps how many differing blocks of a file system Diff asks
// debugfs about; past it, the blocks are only counted.
const maxDiffNamed = 50000

// DiffReport says where two images differ: which area of the disk, and
// within a file system which files' data, which inodes (and which of their
// fields), and which metadata.
type DiffReport struct {
	A, B         string
	SizeA, SizeB int64
	Blocks       int64 // differing blocks of diffBlock bytes (over the shorter image)
	Areas        []DiffArea
}

// Identical says the two images are the same bytes.
func (r *DiffReport) Identical() bool { return r.SizeA == r.SizeB && r.Blocks == 0 }

// DiffArea is one region of the disk (the partition table and the gaps, a
// partition, what follows the partitions) and what differs in it.
type DiffArea struct {
	Name   string // "partition table and gaps", "partition 1 (FAT32)", ...
	Blocks int64
	First  int64 // byte offset of the first differing block
	// Files are the paths whose data differs, with the differing bytes
	// (counted in the file system's blocks, or sectors for FAT);
	// directories count as files.
	Files map[string]int64
	// Inodes are ext4 inodes that differ, by path, with the fields that do.
	Inodes map[string][]string
	// Meta counts the other differing bytes by what they hold.
	Meta map[string]int64
}

func newArea(name string) *DiffArea {
	return &DiffArea{Name: name, First: -1, Files: map[string]int64{}, Inodes: map[string][]string{}, Meta: map[string]int64{}}
}

func (a *DiffArea) add(off int64) {
	if a.First < 0 {
		a.First = off
	}
	a.Blocks++
}

// Diff compares two image files block by block and explains every block
// that differs, using the partition table of a: for an ext4 partition,
// debugfs names the files whose blocks differ and the inode fields that
// differ; for a FAT32 partition, the files are found from its directory
// tree. It reads both images once and writes nothing.
func Diff(ctx context.Context, a, b string) (*DiffReport, error) {
	fa, err := os.Open(a)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	r := &DiffReport{A: a, B: b}
	for _, x := range []struct {
		f *os.File
		n *int64
	}{{fa, &r.SizeA}, {fb, &r.SizeB}} {
		st, err := x.f.Stat()
		if err != nil {
			return nil, err
		}
		*x.n = st.Size()
	}
	offs, err := differingBlocks(ctx, fa, fb, min(r.SizeA, r.SizeB))
	if err != nil {
		return nil, err
	}
	r.Blocks = int64(len(offs))
	if len(offs) == 0 {
		return r, nil
	}
	var parts []Partition
	if m, err := readMBR(fa, r.SizeA, a); err == nil {
		parts = m.Partitions
	}
	byArea := map[string]*DiffArea{}
	perPart := map[int][]int64{}
	var order []string
	area := func(name string) *DiffArea {
		if byArea[name] == nil {
			byArea[name] = newArea(name)
			order = append(order, name)
		}
		return byArea[name]
	}
	for _, off := range offs {
		i := slices.IndexFunc(parts, func(p Partition) bool { return off >= p.Start && off < p.End() })
		switch {
		case i >= 0:
			perPart[i] = append(perPart[i], off)
		case len(parts) > 0 && off >= slices.MaxFunc(parts, func(p, q Partition) int { return int(p.End() - q.End()) }).End():
			area("after the partitions").add(off)
		default:
			area("partition table and gaps").add(off)
		}
	}
	for i, p := range parts {
		in := perPart[i]
		if len(in) == 0 {
			continue
		}
		var ar *DiffArea
		if fatfs.IsFAT32(fa, p.Start) {
			ar = area(fmt.Sprintf("partition %d (FAT32)", p.Number))
		} else {
			ar = area(fmt.Sprintf("partition %d (ext4)", p.Number))
		}
		for _, off := range in {
			ar.add(off)
		}
		if fatfs.IsFAT32(fa, p.Start) {
			err = diffFAT(fa, fb, p, in, ar)
		} else {
			err = diffExt4(ctx, a, b, fa, fb, p, in, ar)
		}
		if err != nil {
			return nil, fmt.Errorf("compare %s of %s and %s: %w", ar.Name, a, b, err)
		}
	}
	for _, n := range order {
		r.Areas = append(r.Areas, *byArea[n])
	}
	return r, nil
}

// differingBlocks returns the offsets of the blocks that differ in the
// first n bytes of a and b.
func differingBlocks(ctx context.Context, a, b io.ReaderAt, n int64) ([]int64, error) {
	const chunk = 4 << 20
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	var out []int64
	for off := int64(0); off < n; off += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := min(chunk, n-off)
		if _, err := a.ReadAt(ba[:l], off); err != nil && err != io.EOF {
			return nil, err
		}
		if _, err := b.ReadAt(bb[:l], off); err != nil && err != io.EOF {
			return nil, err
		}
		if bytes.Equal(ba[:l], bb[:l]) {
			continue
		}
		for i := int64(0); i < l; i += diffBlock {
			e := min(i+diffBlock, l)
			if !bytes.Equal(ba[i:e], bb[i:e]) {
				out = append(out, off+i)
			}
		}
	}
	return out, nil
}

// refine splits the differing diffBlock-sized blocks at offs into the
// differing units of a file system (unit bytes, aligned to start) and
// returns their offsets, in order.
func refine(a, b io.ReaderAt, offs []int64, start, unit int64) ([]int64, error) {
	var out []int64
	x, y := make([]byte, unit), make([]byte, unit)
	for _, off := range offs {
		first := start + (off-start)/unit*unit
		for u := first; u < off+diffBlock; u += unit {
			if len(out) > 0 && out[len(out)-1] >= u {
				continue // a unit bigger than a block: compared already
			}
			if _, err := a.ReadAt(x, u); err != nil && err != io.EOF {
				return nil, err
			}
			if _, err := b.ReadAt(y, u); err != nil && err != io.EOF {
				return nil, err
			}
			if !bytes.Equal(x, y) {
				out = append(out, u)
			}
		}
	}
	return out, nil
}

// diffFAT names the files of a FAT32 partition whose data sectors differ
// (in either image); the rest is the boot sector, FATs and directories.
func diffFAT(fa, fb io.ReaderAt, p Partition, offs []int64, ar *DiffArea) error {
	type extent struct {
		off, end int64
		path     string
	}
	var exts []extent
	for _, f := range []io.ReaderAt{fa, fb} {
		files, err := fatfs.Index(f, p.Start)
		if err != nil {
			continue // that image's file system is not readable: its sectors stay metadata
		}
		for _, file := range files {
			for _, e := range file.Extents {
				exts = append(exts, extent{e.Off, e.Off + e.Len, file.Path})
			}
		}
	}
	slices.SortFunc(exts, func(x, y extent) int { return int(x.off - y.off) })
	sectors, err := refine(fa, fb, offs, p.Start, sectorSize)
	if err != nil {
		return err
	}
	for _, s := range sectors {
		i, _ := slices.BinarySearchFunc(exts, s+1, func(e extent, t int64) int { return int(e.off - t) })
		if i > 0 && s < exts[i-1].end {
			ar.Files[exts[i-1].path] += sectorSize
		} else {
			ar.Meta["boot sector, FATs or directories"] += sectorSize
		}
	}
	return nil
}

// ext4Layout is what dumpe2fs says about where an ext4 file system keeps
// its metadata.
type ext4Layout struct {
	blockSize, inodeSize, inodesPerGroup int64
	meta                                 []metaRange // superblocks, descriptors, bitmaps
	tables                               []metaRange // inode tables, group in .group
}

type metaRange struct {
	what        string
	first, last int64 // blocks
	group       int64
}

var (
	reGroup = regexp.MustCompile(`^Group (\d+):`)
	reAt    = regexp.MustCompile(`(Primary superblock|Backup superblock|Group descriptors|Reserved GDT blocks|Block bitmap|Inode bitmap|Inode table) at (\d+)(?:-(\d+))?`)
)

func readExt4Layout(ctx context.Context, e ext4) (ext4Layout, error) {
	out, err := e.dumpe2fs(ctx)
	if err != nil {
		return ext4Layout{}, err
	}
	sb := superblock(out)
	l := ext4Layout{blockSize: sb.num("Block size"), inodeSize: sb.num("Inode size"), inodesPerGroup: sb.num("Inodes per group")}
	group := int64(-1)
	for line := range strings.Lines(out) {
		if m := reGroup.FindStringSubmatch(line); m != nil {
			group, _ = strconv.ParseInt(m[1], 10, 64)
		}
		for _, m := range reAt.FindAllStringSubmatch(line, -1) {
			first, _ := strconv.ParseInt(m[2], 10, 64)
			last := first
			if m[3] != "" {
				last, _ = strconv.ParseInt(m[3], 10, 64)
			}
			r := metaRange{what: strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(m[1], "Primary "), "Backup ")), first: first, last: last, group: group}
			if m[1] == "Inode table" {
				l.tables = append(l.tables, r)
			} else {
				l.meta = append(l.meta, r)
			}
		}
	}
	if l.blockSize == 0 || l.inodeSize == 0 || l.inodesPerGroup == 0 {
		return l, fmt.Errorf("dumpe2fs %s: no block size, inode size or inodes per group in its output", e.spec())
	}
	return l, nil
}

// inodeFields are the ext4 inode fields Diff names (offset, length, name),
// from the kernel's struct ext4_inode.
var inodeFields = []struct {
	off, n int
	name   string
}{
	{0x00, 2, "mode"}, {0x02, 2, "uid"}, {0x04, 4, "size"}, {0x08, 4, "atime"}, {0x0c, 4, "ctime"},
	{0x10, 4, "mtime"}, {0x14, 4, "dtime"}, {0x18, 2, "gid"}, {0x1a, 2, "links"}, {0x1c, 4, "blocks"},
	{0x20, 4, "flags"}, {0x24, 4, "version"}, {0x28, 60, "block map or extents"}, {0x64, 4, "generation"},
	{0x68, 4, "xattr block"}, {0x6c, 4, "size"}, {0x74, 2, "blocks"}, {0x76, 2, "xattr block"},
	{0x78, 2, "uid"}, {0x7a, 2, "gid"}, {0x7c, 2, "checksum"}, {0x80, 2, "extra size"},
	{0x82, 2, "checksum"}, {0x84, 4, "ctime"}, {0x88, 4, "mtime"}, {0x8c, 4, "atime"},
	{0x90, 4, "crtime"}, {0x94, 4, "crtime"}, {0x98, 4, "version"}, {0x9c, 4, "project id"},
}

// inodeDiff names the fields in which two copies of an inode differ; bytes
// past the fixed fields are in-inode extended attributes.
func inodeDiff(x, y []byte) []string {
	var out []string
	for _, f := range inodeFields {
		if f.off+f.n > len(x) {
			break
		}
		if !bytes.Equal(x[f.off:f.off+f.n], y[f.off:f.off+f.n]) && !slices.Contains(out, f.name) {
			out = append(out, f.name)
		}
	}
	if len(x) > 0xa0 && !bytes.Equal(x[0xa0:], y[0xa0:]) {
		out = append(out, "in-inode xattrs")
	}
	return out
}

// reservedInodes are the ext4 inodes with no path.
var reservedInodes = map[int64]string{1: "<bad blocks inode>", 2: "/", 5: "<boot loader inode>", 7: "<resize inode: reserved descriptor blocks>", 8: "<journal>"}

// diffExt4 explains the differing blocks of an ext4 partition: metadata by
// kind, inode-table blocks by the inodes (and fields) that differ, the
// rest by the files whose data they hold (debugfs icheck, then ncheck).
func diffExt4(ctx context.Context, a, b string, fa, fb io.ReaderAt, p Partition, offs []int64, ar *DiffArea) error {
	ea, eb := ext4{Image: a, Offset: p.Start}, ext4{Image: b, Offset: p.Start}
	l, err := readExt4Layout(ctx, ea)
	if err != nil {
		ar.Meta["not readable as ext4"] += int64(len(offs)) * diffBlock
		return nil
	}
	blocks, err := refine(fa, fb, offs, p.Start, l.blockSize)
	if err != nil {
		return err
	}
	in := func(rs []metaRange, blk int64) int {
		return slices.IndexFunc(rs, func(r metaRange) bool { return blk >= r.first && blk <= r.last })
	}
	inodeFieldsOf := map[int64][]string{}
	var data []int64 // block numbers to look up
	for _, off := range blocks {
		blk := (off - p.Start) / l.blockSize
		if i := in(l.tables, blk); i >= 0 {
			t := l.tables[i]
			per := l.blockSize / l.inodeSize
			x, y := make([]byte, l.blockSize), make([]byte, l.blockSize)
			if _, err := fa.ReadAt(x, off); err != nil {
				return err
			}
			if _, err := fb.ReadAt(y, off); err != nil {
				return err
			}
			for s := range per {
				xi, yi := x[s*l.inodeSize:(s+1)*l.inodeSize], y[s*l.inodeSize:(s+1)*l.inodeSize]
				if !bytes.Equal(xi, yi) {
					ino := t.group*l.inodesPerGroup + (blk-t.first)*per + s + 1
					inodeFieldsOf[ino] = inodeDiff(xi, yi)
				}
			}
			continue
		}
		if i := in(l.meta, blk); i >= 0 {
			ar.Meta[l.meta[i].what] += l.blockSize
			continue
		}
		if len(data) < maxDiffNamed {
			data = append(data, blk)
		} else {
			ar.Meta["data blocks not looked up (too many)"] += l.blockSize
		}
	}
	owners := map[int64][]int64{} // block -> inodes owning it in either image
	for _, e := range []ext4{ea, eb} {
		got, err := icheck(ctx, e, data)
		if err != nil {
			return err
		}
		for blk, ino := range got {
			if !slices.Contains(owners[blk], ino) {
				owners[blk] = append(owners[blk], ino)
			}
		}
	}
	var inos []int64
	for ino := range inodeFieldsOf {
		inos = append(inos, ino)
	}
	for _, set := range owners {
		inos = append(inos, set...)
	}
	names, err := ncheck(ctx, ea, inos)
	if err != nil {
		return err
	}
	nameOf := func(ino int64) string {
		if n, ok := names[ino]; ok {
			return n
		}
		if n, ok := reservedInodes[ino]; ok {
			return n
		}
		return fmt.Sprintf("<inode %d, not linked in %s>", ino, a)
	}
	for _, blk := range data {
		if len(owners[blk]) == 0 {
			ar.Meta["blocks in no file (free space)"] += l.blockSize
		}
		for _, ino := range owners[blk] {
			ar.Files[nameOf(ino)] += l.blockSize
		}
	}
	for ino, fields := range inodeFieldsOf {
		ar.Inodes[nameOf(ino)] = fields
	}
	return nil
}

// icheck asks debugfs which inode owns each block (blocks owned by none are
// left out).
func icheck(ctx context.Context, e ext4, blocks []int64) (map[int64]int64, error) {
	out := map[int64]int64{}
	for part := range slices.Chunk(blocks, 500) {
		var sb strings.Builder
		sb.WriteString("icheck")
		for _, b := range part {
			fmt.Fprintf(&sb, " %d", b)
		}
		res, err := e.debugfs(ctx, false, sb.String()+"\n")
		if err != nil {
			return nil, err
		}
		for line := range strings.Lines(string(res)) {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			blk, err1 := strconv.ParseInt(f[0], 10, 64)
			ino, err2 := strconv.ParseInt(f[1], 10, 64)
			if err1 == nil && err2 == nil {
				out[blk] = ino
			}
		}
	}
	return out, nil
}

// ncheck asks debugfs for a path of each inode.
func ncheck(ctx context.Context, e ext4, inodes []int64) (map[int64]string, error) {
	slices.Sort(inodes)
	inodes = slices.Compact(inodes)
	out := map[int64]string{}
	for part := range slices.Chunk(inodes, 500) {
		var sb strings.Builder
		sb.WriteString("ncheck")
		for _, i := range part {
			fmt.Fprintf(&sb, " %d", i)
		}
		res, err := e.debugfs(ctx, false, sb.String()+"\n")
		if err != nil {
			return nil, err
		}
		for line := range strings.Lines(string(res)) {
			ino, path, ok := strings.Cut(strings.TrimRight(line, "\n"), "\t")
			n, err := strconv.ParseInt(strings.TrimSpace(ino), 10, 64)
			if ok && err == nil && out[n] == "" {
				out[n] = path
			}
		}
	}
	return out, nil
}
