package fatfs

import (
	"encoding/binary"
	"fmt"
	"time"
)

// SetTimes sets the create, access and modify times of every directory
// entry of the FAT32 file system at byte offset start of rw to t. go-diskfs
// stamps new entries (also "." and ".." and the volume label) with the time
// of the write unless SOURCE_DATE_EPOCH is set in the process environment;
// this makes the file system the same bytes for the same files, whatever the
// environment and clock.
func SetTimes(rw ReaderWriterAt, start int64, t time.Time) error {
	g, err := readGeometry(rw, start)
	if err != nil {
		return fmt.Errorf("fix FAT times: %w", err)
	}
	if g.bytesPerSector != 512 {
		return fmt.Errorf("fix FAT times: %d-byte sectors, want 512", g.bytesPerSector)
	}
	fat, err := g.readFAT(rw)
	if err != nil {
		return err
	}
	date, tm := dateTime(t)
	seen := map[uint32]bool{}
	var walkDir func(first uint32) error
	walkDir = func(first uint32) error {
		for c := first; c >= 2 && c < 0x0FFFFFF7; c = fat.next(c) {
			if seen[c] {
				return fmt.Errorf("fix FAT times: cluster %d is in two chains", c)
			}
			seen[c] = true
			buf := make([]byte, g.clusterBytes())
			off := g.clusterOffset(c)
			if _, err := rw.ReadAt(buf, off); err != nil {
				return err
			}
			var subdirs []uint32
			for i := 0; i+32 <= len(buf); i += 32 {
				e := buf[i : i+32]
				if e[0] == 0 {
					break
				}
				if e[0] == 0xE5 || e[11] == 0x0F { // deleted, long-name slot
					continue
				}
				e[13] = 0 // creation time, tenths of a second
				binary.LittleEndian.PutUint16(e[14:16], tm)
				binary.LittleEndian.PutUint16(e[16:18], date)
				binary.LittleEndian.PutUint16(e[18:20], date)
				binary.LittleEndian.PutUint16(e[22:24], tm)
				binary.LittleEndian.PutUint16(e[24:26], date)
				if e[11]&0x10 != 0 && e[0] != '.' {
					subdirs = append(subdirs, firstCluster(e))
				}
			}
			if _, err := rw.WriteAt(buf, off); err != nil {
				return err
			}
			for _, s := range subdirs {
				if err := walkDir(s); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walkDir(g.rootCluster)
}

// dateTime is t in FAT's date and time format (local time as written; t is
// used as UTC).
func dateTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	y := max(t.Year()-1980, 0)
	date = uint16(y<<9 | int(t.Month())<<5 | t.Day())
	tm = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	return date, tm
}
