package image

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/fhlab/provision/internal/rpi/fatfs"
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

func (f *fatFS) exists(p string) bool { return fatfs.Exists(f.fs, p) }

func (f *fatFS) readFile(p string) ([]byte, error) {
	data, err := fatfs.ReadFile(f.fs, p)
	if err != nil {
		return nil, fmt.Errorf("read %s from the boot partition: %w", p, err)
	}
	return data, nil
}

// writeFile replaces or creates p with data, making parent directories.
func (f *fatFS) writeFile(p string, data []byte) error {
	if err := fatfs.WriteFile(f.fs, p, data); err != nil {
		return fmt.Errorf("write %s to the boot partition: %w", fatPath(p), err)
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

// fixFATTimes sets the times of every directory entry of the FAT32 file
// system in partition p to t (see fatfs.SetTimes) and repairs what go-diskfs
// left wrong in it (fatfs.Repair).
func fixFATTimes(img *os.File, p Partition, t time.Time) error {
	if err := fatfs.SetTimes(img, p.Start, t); err != nil {
		return err
	}
	return fatfs.Repair(img, p.Start)
}

// updateFSInfo repairs a FAT32 partition after go-diskfs wrote to it: its
// FSInfo free-cluster count and the ".." entries of top-level directories.
func updateFSInfo(img *os.File, p Partition) error {
	if !fatfs.IsFAT32(img, p.Start) {
		return nil
	}
	return fatfs.Repair(img, p.Start)
}
