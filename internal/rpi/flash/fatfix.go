package flash

import (
	"encoding/binary"
	"fmt"
	"io"
)

// go-diskfs (v1.9.4) leaves two things in a FAT32 filesystem it changed
// that fsck.fat -n reports as errors: the FSInfo free-cluster count is not
// updated, and a directory it creates directly under the root gets the
// root's cluster number in its ".." entry, where FAT32 wants 0. fixFAT32
// repairs both in place, so the card's boot partition checks clean.

type fat32Geom struct {
	start          int64 // partition offset in bytes
	bytesPerSector int64
	secPerCluster  int64
	reserved       int64
	fats           int64
	fatSectors     int64
	clusters       int64
	rootCluster    uint32
	fsinfo         int64 // sector
}

func (g fat32Geom) clusterOffset(c uint32) int64 {
	data := g.reserved + g.fats*g.fatSectors
	return g.start + (data+(int64(c)-2)*g.secPerCluster)*g.bytesPerSector
}

func readFAT32Geom(rw io.ReaderAt, partition int) (fat32Geom, error) {
	var g fat32Geom
	mbr := make([]byte, 512)
	if _, err := rw.ReadAt(mbr, 0); err != nil {
		return g, err
	}
	e := mbr[446+16*(partition-1):]
	g.start = int64(binary.LittleEndian.Uint32(e[8:])) * 512
	bs := make([]byte, 512)
	if _, err := rw.ReadAt(bs, g.start); err != nil {
		return g, err
	}
	g.bytesPerSector = int64(binary.LittleEndian.Uint16(bs[11:]))
	g.secPerCluster = int64(bs[13])
	g.reserved = int64(binary.LittleEndian.Uint16(bs[14:]))
	g.fats = int64(bs[16])
	total := int64(binary.LittleEndian.Uint32(bs[32:]))
	g.fatSectors = int64(binary.LittleEndian.Uint32(bs[36:]))
	g.rootCluster = binary.LittleEndian.Uint32(bs[44:])
	g.fsinfo = int64(binary.LittleEndian.Uint16(bs[48:]))
	if g.bytesPerSector == 0 || g.secPerCluster == 0 || g.fatSectors == 0 || binary.LittleEndian.Uint16(bs[22:]) != 0 {
		return g, fmt.Errorf("partition %d is not FAT32", partition)
	}
	g.clusters = (total - g.reserved - g.fats*g.fatSectors) / g.secPerCluster
	return g, nil
}

type readerWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

func fixFAT32(rw readerWriterAt, partition int) error {
	g, err := readFAT32Geom(rw, partition)
	if err != nil {
		return err
	}
	fat := make([]byte, (g.clusters+2)*4)
	if _, err := rw.ReadAt(fat, g.start+g.reserved*g.bytesPerSector); err != nil {
		return fmt.Errorf("read FAT: %w", err)
	}
	entry := func(c uint32) uint32 { return binary.LittleEndian.Uint32(fat[c*4:]) & 0x0FFFFFFF }
	var free uint32
	for c := uint32(2); int64(c) < g.clusters+2; c++ {
		if entry(c) == 0 {
			free++
		}
	}
	fsinfo := make([]byte, 512)
	off := g.start + g.fsinfo*g.bytesPerSector
	if _, err := rw.ReadAt(fsinfo, off); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(fsinfo[0:]) == 0x41615252 && binary.LittleEndian.Uint32(fsinfo[484:]) == 0x61417272 {
		binary.LittleEndian.PutUint32(fsinfo[488:], free)
		binary.LittleEndian.PutUint32(fsinfo[492:], 0xFFFFFFFF) // next free: unknown
		if _, err := rw.WriteAt(fsinfo, off); err != nil {
			return fmt.Errorf("write FSInfo: %w", err)
		}
	}
	// The root directory's entries, following its cluster chain.
	csize := g.secPerCluster * g.bytesPerSector
	buf := make([]byte, csize)
	for c, n := g.rootCluster, 0; c >= 2 && c < 0x0FFFFFF8 && int64(n) <= g.clusters; c, n = entry(c), n+1 {
		if _, err := rw.ReadAt(buf, g.clusterOffset(c)); err != nil {
			return err
		}
		for i := int64(0); i+32 <= csize; i += 32 {
			d := buf[i : i+32]
			if d[0] == 0 {
				return nil // end of directory
			}
			if d[0] == 0xE5 || d[0] == '.' || d[11] == 0x0F || d[11]&0x10 == 0 {
				continue
			}
			sub := uint32(binary.LittleEndian.Uint16(d[20:]))<<16 | uint32(binary.LittleEndian.Uint16(d[26:]))
			if sub < 2 || int64(sub) >= g.clusters+2 {
				continue
			}
			dots := make([]byte, 64)
			at := g.clusterOffset(sub)
			if _, err := rw.ReadAt(dots, at); err != nil {
				return err
			}
			dd := dots[32:64]
			if string(dd[0:2]) != ".." {
				continue
			}
			if uint32(binary.LittleEndian.Uint16(dd[20:]))<<16|uint32(binary.LittleEndian.Uint16(dd[26:])) == g.rootCluster {
				binary.LittleEndian.PutUint16(dd[20:], 0)
				binary.LittleEndian.PutUint16(dd[26:], 0)
				if _, err := rw.WriteAt(dd, at+32); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
