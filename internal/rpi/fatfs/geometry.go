package fatfs

import (
	"encoding/binary"
	"fmt"
	"io"
)

// geometry is the layout of a FAT32 file system, read from its boot sector.
type geometry struct {
	start          int64 // file system offset in bytes
	bytesPerSector int64
	secPerCluster  int64
	reserved       int64 // sectors
	fats           int64
	fatSectors     int64
	clusters       int64
	rootCluster    uint32
	fsinfo         int64 // sector
	backupBoot     int64 // sector
}

// readGeometry reads the boot sector of the FAT32 file system at byte
// offset start of r.
func readGeometry(r io.ReaderAt, start int64) (geometry, error) {
	g := geometry{start: start}
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, start); err != nil {
		return g, fmt.Errorf("read FAT boot sector: %w", err)
	}
	g.bytesPerSector = int64(binary.LittleEndian.Uint16(bs[11:]))
	g.secPerCluster = int64(bs[13])
	g.reserved = int64(binary.LittleEndian.Uint16(bs[14:]))
	g.fats = int64(bs[16])
	total := int64(binary.LittleEndian.Uint32(bs[32:]))
	g.fatSectors = int64(binary.LittleEndian.Uint32(bs[36:]))
	g.rootCluster = binary.LittleEndian.Uint32(bs[44:])
	g.fsinfo = int64(binary.LittleEndian.Uint16(bs[48:]))
	g.backupBoot = int64(binary.LittleEndian.Uint16(bs[50:]))
	if g.bytesPerSector == 0 || g.secPerCluster == 0 || g.fatSectors == 0 || binary.LittleEndian.Uint16(bs[22:]) != 0 {
		return g, fmt.Errorf("not a FAT32 boot sector")
	}
	g.clusters = (total - g.reserved - g.fats*g.fatSectors) / g.secPerCluster
	return g, nil
}

// IsFAT32 reports whether the file system at byte offset start of r is
// FAT32 (16-bit sectors-per-FAT field 0, 32-bit one set).
func IsFAT32(r io.ReaderAt, start int64) bool {
	var bs [512]byte
	if _, err := r.ReadAt(bs[:], start); err != nil {
		return false
	}
	return binary.LittleEndian.Uint16(bs[22:24]) == 0 && binary.LittleEndian.Uint32(bs[36:40]) != 0
}

func (g geometry) fatOffset() int64 { return g.start + g.reserved*g.bytesPerSector }

func (g geometry) clusterBytes() int64 { return g.secPerCluster * g.bytesPerSector }

func (g geometry) clusterOffset(c uint32) int64 {
	data := g.reserved + g.fats*g.fatSectors
	return g.start + (data+(int64(c)-2)*g.secPerCluster)*g.bytesPerSector
}

// readFAT reads the first FAT's entries for clusters 0 .. clusters+1.
func (g geometry) readFAT(r io.ReaderAt) (fatTable, error) {
	fat := make([]byte, (g.clusters+2)*4)
	if _, err := r.ReadAt(fat, g.fatOffset()); err != nil {
		return nil, fmt.Errorf("read FAT: %w", err)
	}
	return fat, nil
}

type fatTable []byte

func (f fatTable) next(c uint32) uint32 {
	if int(c)*4+4 > len(f) {
		return 0x0FFFFFFF
	}
	return binary.LittleEndian.Uint32(f[c*4:]) & 0x0FFFFFFF
}

// firstCluster is the first cluster of a 32-byte directory entry.
func firstCluster(d []byte) uint32 {
	return uint32(binary.LittleEndian.Uint16(d[20:]))<<16 | uint32(binary.LittleEndian.Uint16(d[26:]))
}

// PartitionStart is the byte offset of MBR partition n (1-based) of r.
func PartitionStart(r io.ReaderAt, n int) (int64, error) {
	if n < 1 || n > 4 {
		return 0, fmt.Errorf("partition %d: not a primary MBR partition", n)
	}
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return 0, fmt.Errorf("read the partition table: %w", err)
	}
	e := mbr[446+16*(n-1):]
	return int64(binary.LittleEndian.Uint32(e[8:])) * 512, nil
}
