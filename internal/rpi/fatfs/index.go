package fatfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// Limits of Index, against a corrupt or hostile file system.
const (
	maxIndexFiles = 65536
	maxDirBytes   = 4 << 20
	maxDepth      = 16
)

// Extent is a run of a file's bytes: Len bytes at byte Off of the disk.
type Extent struct{ Off, Len int64 }

// IndexedFile is one regular file of a FAT32 file system, located on the
// disk: its data can be read with ReadAt straight from the disk, by any
// number of readers at once, without go-diskfs.
type IndexedFile struct {
	Path    string // as stored (long name if any), "/" separated, no leading "/"
	Size    int64
	Extents []Extent
	disk    io.ReaderAt
}

// ReadAt reads the file's bytes at off (io.ReaderAt).
func (f *IndexedFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset", f.Path)
	}
	if off >= f.Size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := f.Size - off; int64(want) > rest {
		want = int(rest)
	}
	n := 0
	pos := int64(0) // file offset of the current extent
	for _, e := range f.Extents {
		if n == want {
			break
		}
		if off+int64(n) >= pos+e.Len {
			pos += e.Len
			continue
		}
		in := off + int64(n) - pos
		chunk := min(int64(want-n), e.Len-in)
		m, err := f.disk.ReadAt(p[n:n+int(chunk)], e.Off+in)
		n += m
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == chunk) {
			return n, fmt.Errorf("read %s: %w", f.Path, err)
		}
		pos += e.Len
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Index reads the directory tree of the FAT32 file system at byte offset
// start of disk and locates every regular file: long names (VFAT) are
// decoded, keys are lower-case paths ("overlays/vc4-kms-v3d.dtbo"), since
// FAT looks names up without regard to case. Nothing is written. A cluster
// chain that loops or leaves the file system, or a file larger than its
// chain, is an error naming the file.
func Index(disk io.ReaderAt, start int64) (map[string]*IndexedFile, error) {
	g, err := readGeometry(disk, start)
	if err != nil {
		return nil, err
	}
	if g.clusters <= 0 || g.clusters > 0x0FFFFFF5 {
		return nil, fmt.Errorf("FAT32 boot sector: %d clusters: not a valid FAT32 file system", g.clusters)
	}
	fat, err := g.readFAT(disk)
	if err != nil {
		return nil, err
	}
	ix := &indexer{g: g, fat: fat, disk: disk, files: map[string]*IndexedFile{}}
	if err := ix.dir("", g.rootCluster, 0); err != nil {
		return nil, err
	}
	return ix.files, nil
}

type indexer struct {
	g     geometry
	fat   fatTable
	disk  io.ReaderAt
	files map[string]*IndexedFile
}

// chain is the cluster chain from first, checked.
func (ix *indexer) chain(first uint32, what string) ([]uint32, error) {
	var out []uint32
	for c := first; c < 0x0FFFFFF8; c = ix.fat.next(c) {
		if c < 2 || int64(c) >= ix.g.clusters+2 {
			return nil, fmt.Errorf("%s: cluster %d is outside the file system (the FAT is corrupt)", what, c)
		}
		if int64(len(out)) > ix.g.clusters {
			return nil, fmt.Errorf("%s: its cluster chain loops (the FAT is corrupt)", what)
		}
		out = append(out, c)
	}
	return out, nil
}

func (ix *indexer) extents(chain []uint32, size int64) []Extent {
	cb := ix.g.clusterBytes()
	var out []Extent
	for _, c := range chain {
		if size <= 0 {
			break
		}
		n := min(cb, size)
		off := ix.g.clusterOffset(c)
		if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == off {
			out[k-1].Len += n
		} else {
			out = append(out, Extent{Off: off, Len: n})
		}
		size -= n
	}
	return out
}

func (ix *indexer) dir(prefix string, first uint32, depth int) error {
	what := "directory /" + prefix
	if depth > maxDepth {
		return fmt.Errorf("%s: nested more than %d deep", what, maxDepth)
	}
	chain, err := ix.chain(first, what)
	if err != nil {
		return err
	}
	cb := ix.g.clusterBytes()
	if int64(len(chain))*cb > maxDirBytes {
		return fmt.Errorf("%s: larger than %d bytes", what, maxDirBytes)
	}
	data := make([]byte, int64(len(chain))*cb)
	pos := 0
	for _, e := range ix.extents(chain, int64(len(data))) {
		if _, err := ix.disk.ReadAt(data[pos:pos+int(e.Len)], e.Off); err != nil {
			return fmt.Errorf("read %s: %w", what, err)
		}
		pos += int(e.Len)
	}
	var lfn []uint16
	var lfnSum byte
	for i := 0; i+32 <= len(data); i += 32 {
		d := data[i : i+32]
		if d[0] == 0 {
			break
		}
		if d[0] == 0xE5 {
			lfn = nil
			continue
		}
		if d[11]&0x3F == 0x0F { // a long-name slot: 13 UTF-16 units
			seq := int(d[0] & 0x1F)
			if d[0]&0x40 != 0 {
				lfn = make([]uint16, 13*seq)
				lfnSum = d[13]
			}
			if seq < 1 || lfn == nil || 13*seq > len(lfn) || d[13] != lfnSum {
				lfn = nil
				continue
			}
			u := lfn[13*(seq-1):]
			for k, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				u[k] = binary.LittleEndian.Uint16(d[o:])
			}
			continue
		}
		long := lfn
		lfn = nil
		if d[11]&0x08 != 0 || d[0] == '.' { // volume label, "." and ".."
			continue
		}
		name := shortName(d)
		if long != nil && checksum(d[:11]) == lfnSum {
			if n := decodeLFN(long); n != "" {
				name = n
			}
		}
		if name == "" || strings.ContainsAny(name, "/\\\x00") {
			continue
		}
		p := prefix + name
		fc := firstCluster(d)
		if d[11]&0x10 != 0 {
			if fc < 2 {
				continue
			}
			if err := ix.dir(p+"/", fc, depth+1); err != nil {
				return err
			}
			continue
		}
		size := int64(binary.LittleEndian.Uint32(d[28:]))
		f := &IndexedFile{Path: p, Size: size, disk: ix.disk}
		if size > 0 {
			chain, err := ix.chain(fc, "file /"+p)
			if err != nil {
				return err
			}
			if int64(len(chain))*cb < size {
				return fmt.Errorf("file /%s: %d bytes but its cluster chain holds %d (the file system is corrupt)", p, size, int64(len(chain))*cb)
			}
			f.Extents = ix.extents(chain, size)
		}
		if len(ix.files) >= maxIndexFiles {
			return fmt.Errorf("more than %d files", maxIndexFiles)
		}
		ix.files[strings.ToLower(p)] = f
	}
	return nil
}

// shortName is an 8.3 entry's name, lower-cased where the entry says so
// (byte 12: 0x08 base, 0x10 extension, as Windows NT writes it).
func shortName(d []byte) string {
	base := strings.TrimRight(string(d[0:8]), " ")
	ext := strings.TrimRight(string(d[8:11]), " ")
	if base != "" && base[0] == 0x05 {
		base = "\xe5" + base[1:]
	}
	if d[12]&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if d[12]&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

func decodeLFN(u []uint16) string {
	for i, c := range u {
		if c == 0 || c == 0xFFFF {
			u = u[:i]
			break
		}
	}
	return string(utf16.Decode(u))
}

// checksum is the short name's checksum that its long-name slots carry.
func checksum(name []byte) byte {
	var s byte
	for _, c := range name {
		s = (s>>1 | s<<7) + c
	}
	return s
}
