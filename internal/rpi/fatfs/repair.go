package fatfs

import (
	"encoding/binary"
	"fmt"
	"io"
)

// ReaderWriterAt is a disk or image file: read and written in place.
type ReaderWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// Repair fixes, in the FAT32 file system at byte offset start of rw, the two
// things go-diskfs leaves that fsck.fat -n reports as errors: the FSInfo
// free-cluster count is not updated, and a directory it creates directly
// under the root gets the root's cluster number in its ".." entry, where
// FAT32 wants 0.
func Repair(rw ReaderWriterAt, start int64) error {
	g, err := readGeometry(rw, start)
	if err != nil {
		return err
	}
	fat, err := g.readFAT(rw)
	if err != nil {
		return err
	}
	if err := writeFSInfo(rw, g, fat); err != nil {
		return err
	}
	return fixDotDot(rw, g, fat)
}

// writeFSInfo counts the free clusters in the first FAT and writes the count
// and the first free cluster into the FSInfo sector and its backup.
func writeFSInfo(rw ReaderWriterAt, g geometry, fat fatTable) error {
	free, next := uint32(0), uint32(0xFFFFFFFF)
	for c := uint32(2); int64(c) < g.clusters+2; c++ {
		if fat.next(c) == 0 {
			free++
			if next == 0xFFFFFFFF {
				next = c
			}
		}
	}
	for _, s := range []int64{g.fsinfo, g.backupBoot + g.fsinfo} {
		if g.fsinfo == 0 || g.fsinfo == 0xFFFF || s == 0 || s == 0xFFFF {
			continue
		}
		off := g.start + s*g.bytesPerSector
		sec := make([]byte, 512)
		if _, err := rw.ReadAt(sec, off); err != nil {
			return fmt.Errorf("read FSInfo: %w", err)
		}
		if binary.LittleEndian.Uint32(sec[0:]) != 0x41615252 || binary.LittleEndian.Uint32(sec[484:]) != 0x61417272 {
			continue
		}
		binary.LittleEndian.PutUint32(sec[488:], free)
		binary.LittleEndian.PutUint32(sec[492:], next)
		if _, err := rw.WriteAt(sec[488:496], off+488); err != nil {
			return fmt.Errorf("write FSInfo: %w", err)
		}
	}
	return nil
}

// fixDotDot sets the ".." entry of every directory in the root to cluster 0.
func fixDotDot(rw ReaderWriterAt, g geometry, fat fatTable) error {
	csize := g.clusterBytes()
	buf := make([]byte, csize)
	seen := map[uint32]bool{}
	for c := g.rootCluster; c >= 2 && c < 0x0FFFFFF8; c = fat.next(c) {
		if seen[c] {
			return fmt.Errorf("root directory: cluster %d is in its chain twice", c)
		}
		seen[c] = true
		if _, err := rw.ReadAt(buf, g.clusterOffset(c)); err != nil {
			return fmt.Errorf("read root directory: %w", err)
		}
		for i := int64(0); i+32 <= csize; i += 32 {
			d := buf[i : i+32]
			if d[0] == 0 {
				return nil // end of directory
			}
			if d[0] == 0xE5 || d[0] == '.' || d[11] == 0x0F || d[11]&0x10 == 0 {
				continue
			}
			sub := firstCluster(d)
			if sub < 2 || int64(sub) >= g.clusters+2 {
				continue
			}
			at := g.clusterOffset(sub) + 32
			dd := make([]byte, 32)
			if _, err := rw.ReadAt(dd, at); err != nil {
				return fmt.Errorf("read directory: %w", err)
			}
			if dd[0] != '.' || dd[1] != '.' || dd[2] != ' ' || firstCluster(dd) == 0 {
				continue
			}
			binary.LittleEndian.PutUint16(dd[20:], 0)
			binary.LittleEndian.PutUint16(dd[26:], 0)
			if _, err := rw.WriteAt(dd, at); err != nil {
				return fmt.Errorf("write directory: %w", err)
			}
		}
	}
	return nil
}
