package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// fatFS is the FAT boot partition of an image, read and written in user
// space with go-diskfs (no mount, no vfat module).
type fatFS struct {
	fs    filesystem.FileSystem
	img   *os.File
	part  Partition
	label string
}

// openFAT reads the FAT file system of partition p of img.
func openFAT(img *os.File, p Partition) (*fatFS, error) {
	b := file.New(img, false)
	var (
		fsys filesystem.FileSystem
		err  error
	)
	fsys, err = fat32.Read(b, p.Size, p.Start, sectorSize)
	if err != nil {
		var err16 error
		if fsys, err16 = fat16.Read(b, p.Size, p.Start, sectorSize); err16 != nil {
			return nil, fmt.Errorf("partition %d is not a FAT file system: %w", p.Number, err)
		}
	}
	return &fatFS{fs: fsys, img: img, part: p, label: fatLabel(img, p, fsys)}, nil
}

// createFAT makes a FAT32 file system filling partition p, labelled label,
// with volume ID volID. go-diskfs in reproducible mode writes volume ID 0;
// the ID is then patched in the boot sector and its backup.
func createFAT(img *os.File, p Partition, label string, volID uint32) (*fatFS, error) {
	fsys, err := fat32.Create(file.New(img, false), p.Size, p.Start, sectorSize, label, true)
	if err != nil {
		return nil, fmt.Errorf("create FAT32 on partition %d: %w", p.Number, err)
	}
	// BS_VolID is at byte 67 of a FAT32 boot sector; the backup boot sector
	// is sector 6 (go-diskfs writes it there).
	var id [4]byte
	binary.LittleEndian.PutUint32(id[:], volID)
	for _, sector := range []int64{0, 6} {
		if _, err := img.WriteAt(id[:], p.Start+sector*sectorSize+67); err != nil {
			return nil, fmt.Errorf("write FAT volume ID: %w", err)
		}
	}
	return &fatFS{fs: fsys, img: img, part: p, label: label}, nil
}

// fatLabel is the volume label: the root directory's label entry, else the
// boot sector's (mkfs.vfat writes both; some tools only the boot sector).
func fatLabel(img *os.File, p Partition, fsys filesystem.FileSystem) string {
	if l := strings.TrimSpace(fsys.Label()); l != "" && l != "NO NAME" {
		return l
	}
	var bs [sectorSize]byte
	if _, err := img.ReadAt(bs[:], p.Start); err != nil {
		return ""
	}
	off := 43 // FAT12/16
	if binary.LittleEndian.Uint16(bs[22:24]) == 0 {
		off = 71 // FAT32: sectors per FAT in the 32-bit field
	}
	l := strings.TrimSpace(string(bs[off : off+11]))
	if l == "NO NAME" {
		return ""
	}
	return l
}

func (f *fatFS) exists(p string) bool {
	// go-diskfs's Stat and ReadDir want io/fs paths, OpenFile and Remove
	// absolute ones: stay with the latter.
	fh, err := f.fs.OpenFile(fatPath(p), os.O_RDONLY)
	if err != nil {
		return false
	}
	fh.Close()
	return true
}

func (f *fatFS) readFile(p string) ([]byte, error) {
	fh, err := f.fs.OpenFile(fatPath(p), os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("read %s from the boot partition: %w", p, err)
	}
	defer fh.Close()
	return io.ReadAll(fh)
}

// writeFile replaces or creates p with data, making parent directories.
func (f *fatFS) writeFile(p string, data []byte) error {
	p = fatPath(p)
	if dir := path.Dir(p); dir != "/" {
		if err := f.fs.Mkdir(dir); err != nil {
			return fmt.Errorf("write %s to the boot partition: mkdir %s: %w", p, dir, err)
		}
	}
	// Truncate rather than remove: go-diskfs's Remove leaves the file's
	// clusters allocated (fsck.fat: "Reclaimed 2 unused clusters").
	fh, err := f.fs.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("write %s to the boot partition: %w", p, err)
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return fmt.Errorf("write %s to the boot partition: %w", p, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("write %s to the boot partition: %w", p, err)
	}
	return nil
}

// copyTree copies the regular files under dir (a directory on the host)
// into the FAT root, in name order so the layout is the same every time.
func (f *fatFS) copyTree(dir string) (int, error) {
	n := 0
	var walk func(rel string) error
	walk = func(rel string) error {
		entries, err := os.ReadDir(dir + rel)
		if err != nil {
			return err
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			p := rel + "/" + e.Name()
			switch {
			case e.IsDir():
				if err := f.fs.Mkdir(p); err != nil {
					return fmt.Errorf("mkdir %s on the boot partition: %w", p, err)
				}
				if err := walk(p); err != nil {
					return err
				}
			case e.Type().IsRegular():
				data, err := os.ReadFile(dir + p)
				if err != nil {
					return err
				}
				if err := f.writeFile(p, data); err != nil {
					return err
				}
				n++
			case e.Type()&fs.ModeSymlink != 0:
				// FAT has no symlinks: copy what the link points to.
				data, err := os.ReadFile(dir + p)
				if err != nil {
					return fmt.Errorf("boot file %s: %w", p, err)
				}
				if err := f.writeFile(p, data); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	}
	return n, walk("")
}

func fatPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// fixFATTimes sets the create, access and modify times of every directory
// entry of the FAT32 file system in partition p to t. go-diskfs stamps new
// entries (also "." and ".." and the volume label) with the time of the
// write unless SOURCE_DATE_EPOCH is set in the process environment; this
// makes the boot partition the same bytes for the same files, whatever the
// environment and clock.
func fixFATTimes(img *os.File, p Partition, t time.Time) error {
	var bs [sectorSize]byte
	if _, err := img.ReadAt(bs[:], p.Start); err != nil {
		return err
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:13]))
	spc := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:16]))
	nfats := int64(bs[16])
	fatSectors := int64(binary.LittleEndian.Uint32(bs[36:40]))
	root := binary.LittleEndian.Uint32(bs[44:48])
	if bps != sectorSize || spc == 0 || fatSectors == 0 {
		return errors.New("fix FAT times: not a FAT32 boot sector")
	}
	fatStart := p.Start + reserved*bps
	dataStart := fatStart + nfats*fatSectors*bps
	clusterBytes := spc * bps
	next := func(c uint32) (uint32, error) {
		var e [4]byte
		if _, err := img.ReadAt(e[:], fatStart+int64(c)*4); err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint32(e[:]) & 0x0fffffff, nil
	}
	date, tm := fatDateTime(t)
	seen := map[uint32]bool{}
	var walkDir func(first uint32, inRoot bool) error
	walkDir = func(first uint32, inRoot bool) error {
		for c := first; c >= 2 && c < 0x0ffffff7; {
			if seen[c] {
				return fmt.Errorf("fix FAT times: cluster %d is in two chains", c)
			}
			seen[c] = true
			buf := make([]byte, clusterBytes)
			off := dataStart + int64(c-2)*clusterBytes
			if _, err := img.ReadAt(buf, off); err != nil {
				return err
			}
			var subdirs []uint32
			for i := 0; i+32 <= len(buf); i += 32 {
				e := buf[i : i+32]
				if e[0] == 0 {
					break
				}
				if e[0] == 0xe5 || e[11] == 0x0f { // deleted, long-name slot
					continue
				}
				e[13] = 0 // creation time, tenths of a second
				binary.LittleEndian.PutUint16(e[14:16], tm)
				binary.LittleEndian.PutUint16(e[16:18], date)
				binary.LittleEndian.PutUint16(e[18:20], date)
				binary.LittleEndian.PutUint16(e[22:24], tm)
				binary.LittleEndian.PutUint16(e[24:26], date)
				// ".." of a directory in the root names cluster 0, not the
				// root's cluster (go-diskfs writes the latter; fsck.fat
				// fixes it).
				if inRoot && e[0] == '.' && e[1] == '.' && e[2] == ' ' {
					binary.LittleEndian.PutUint16(e[20:22], 0)
					binary.LittleEndian.PutUint16(e[26:28], 0)
				}
				if e[11]&0x10 != 0 && e[0] != '.' {
					cl := uint32(binary.LittleEndian.Uint16(e[20:22]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:28]))
					subdirs = append(subdirs, cl)
				}
			}
			if _, err := img.WriteAt(buf, off); err != nil {
				return err
			}
			for _, s := range subdirs {
				if err := walkDir(s, first == root); err != nil {
					return err
				}
			}
			var err error
			if c, err = next(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walkDir(root, false); err != nil {
		return err
	}
	return writeFSInfo(img, p, fatStart, fatSectors*bps, bs)
}

// writeFSInfo counts the free clusters in the first FAT and writes the count
// and the next free cluster into the FSInfo sector and its backup (go-diskfs
// leaves them "unknown", which fsck.fat reports).
func writeFSInfo(img *os.File, p Partition, fatStart, fatBytes int64, bs [sectorSize]byte) error {
	total := uint32(binary.LittleEndian.Uint32(bs[32:36]))
	reserved := uint32(binary.LittleEndian.Uint16(bs[14:16]))
	nfats := uint32(bs[16])
	fatSectors := binary.LittleEndian.Uint32(bs[36:40])
	spc := uint32(bs[13])
	clusters := (total - reserved - nfats*fatSectors) / spc
	fat := make([]byte, fatBytes)
	if _, err := img.ReadAt(fat, fatStart); err != nil {
		return err
	}
	free, next := uint32(0), uint32(0xffffffff)
	for c := uint32(2); c < clusters+2 && int(c)*4+4 <= len(fat); c++ {
		if binary.LittleEndian.Uint32(fat[c*4:])&0x0fffffff == 0 {
			free++
			if next == 0xffffffff {
				next = c
			}
		}
	}
	fsinfo := int64(binary.LittleEndian.Uint16(bs[48:50]))
	backup := int64(binary.LittleEndian.Uint16(bs[50:52]))
	var v [8]byte
	binary.LittleEndian.PutUint32(v[0:4], free)
	binary.LittleEndian.PutUint32(v[4:8], next)
	for _, s := range []int64{fsinfo, backup + fsinfo} {
		if s == 0 || s == 0xffff {
			continue
		}
		var sig [4]byte
		if _, err := img.ReadAt(sig[:], p.Start+s*sectorSize); err != nil {
			return err
		}
		if string(sig[:]) != "RRaA" {
			continue
		}
		if _, err := img.WriteAt(v[:], p.Start+s*sectorSize+488); err != nil {
			return err
		}
	}
	return nil
}

// fatDateTime is t in FAT's date and time format (local time as written;
// t is used as UTC).
func fatDateTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	y := max(t.Year()-1980, 0)
	date = uint16(y<<9 | int(t.Month())<<5 | t.Day())
	tm = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	return date, tm
}

// updateFSInfo recounts the free clusters of a FAT32 partition into its
// FSInfo sectors after go-diskfs wrote to it.
func updateFSInfo(img *os.File, p Partition) error {
	if !isFAT32(img, p) {
		return nil
	}
	var bs [sectorSize]byte
	if _, err := img.ReadAt(bs[:], p.Start); err != nil {
		return err
	}
	reserved := int64(binary.LittleEndian.Uint16(bs[14:16]))
	fatSectors := int64(binary.LittleEndian.Uint32(bs[36:40]))
	return writeFSInfo(img, p, p.Start+reserved*sectorSize, fatSectors*sectorSize, bs)
}
