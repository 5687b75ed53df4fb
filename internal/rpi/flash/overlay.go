package flash

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/fhlab/provision/internal/rpi/fatfs"
	"github.com/fhlab/provision/internal/rpi/image"
)

// Overlay is a node's seed: files written into one FAT partition of its
// card after the image.
type Overlay struct {
	Node      string
	Partition int // 1-based MBR partition number; the boot partition is 1
	Files     []OverlayFile
}

// OverlayFile is one file of an overlay; Path is absolute on the partition
// (/user-data, /overlays/x.dtbo). FAT keeps no mode; Mode is kept for
// filesystems that do.
type OverlayFile struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// LoadOverlay reads the seed `provision image seed` wrote for node under
// seeds (<seeds>/<node>/ with its manifest.json): the files, checked
// against the manifest's sha256, and the partition they go to.
func LoadOverlay(seeds, node string) (*Overlay, error) {
	dir := filepath.Join(seeds, node)
	if _, err := os.Stat(filepath.Join(dir, image.SeedManifestName)); errors.Is(err, fs.ErrNotExist) {
		if _, derr := os.Stat(dir); errors.Is(derr, fs.ErrNotExist) {
			return nil, fmt.Errorf("node %s has no seed: %s does not exist (write the seeds first: provision image seed)", node, dir)
		}
		return nil, fmt.Errorf("node %s has no seed: %s has no %s (write the seeds with provision image seed)", node, dir, image.SeedManifestName)
	}
	m, files, err := image.ReadSeed(dir)
	if err != nil {
		return nil, fmt.Errorf("seed of %s: %w", node, err)
	}
	if m.Node != "" && m.Node != node {
		return nil, fmt.Errorf("seed of %s: %s holds the seed of %s", node, dir, m.Node)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("node %s has no seed: %s lists no files", node, dir)
	}
	ov := &Overlay{Node: node, Partition: m.Partition}
	if ov.Partition == 0 {
		ov.Partition = 1
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		ov.Files = append(ov.Files, OverlayFile{Path: p, Data: files[p], Mode: 0o644})
	}
	return ov, nil
}

// openFAT opens the overlay's partition of the card as a FAT filesystem.
func openFAT(t *target, ov *Overlay) (filesystem.FileSystem, error) {
	d, err := diskfs.OpenBackend(file.New(t.f, false), diskfs.WithOpenMode(diskfs.ReadWriteExclusive))
	if err != nil {
		return nil, fmt.Errorf("read partition table of %s: %w", t.path, err)
	}
	fsys, err := d.GetFilesystem(ov.Partition)
	if err != nil {
		return nil, fmt.Errorf("partition %d of %s: %w", ov.Partition, t.path, err)
	}
	switch fsys.Type() {
	case filesystem.TypeFat32, filesystem.TypeFat16, filesystem.TypeFat12:
	default:
		return nil, fmt.Errorf("partition %d of %s is not FAT: the seed goes on the boot partition", ov.Partition, t.path)
	}
	return fsys, nil
}

// applyOverlay writes the overlay's files into the card's FAT partition,
// creating directories, replacing files, and syncs.
func applyOverlay(t *target, ov *Overlay) error {
	fsys, err := openFAT(t, ov)
	if err != nil {
		return err
	}
	for _, f := range ov.Files {
		if err := fatfs.WriteFile(fsys, f.Path, f.Data); err != nil {
			return fmt.Errorf("seed of %s: write %s to partition %d of %s: %w", ov.Node, f.Path, ov.Partition, t.path, err)
		}
	}
	if fsys.Type() == filesystem.TypeFat32 {
		start, err := fatfs.PartitionStart(t.f, ov.Partition)
		if err == nil {
			err = fatfs.Repair(t.f, start)
		}
		if err != nil {
			return fmt.Errorf("seed of %s: partition %d of %s: %w", ov.Node, ov.Partition, t.path, err)
		}
	}
	if err := t.sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.path, err)
	}
	return nil
}

// verifyOverlay drops the card's buffers and reads every overlay file back
// through a fresh view of the filesystem.
func verifyOverlay(t *target, ov *Overlay) error {
	if err := t.dropCache(); err != nil {
		return err
	}
	fsys, err := openFAT(t, ov)
	if err != nil {
		return fmt.Errorf("verify seed: %w", err)
	}
	for _, f := range ov.Files {
		got, err := fatfs.ReadFile(fsys, f.Path)
		if err != nil {
			return fmt.Errorf("verify seed of %s: read %s back from %s: %w", ov.Node, f.Path, t.path, err)
		}
		if !bytes.Equal(got, f.Data) {
			return fmt.Errorf("verify seed of %s: %s on %s reads back %d bytes (sha256 %x), wrote %d (sha256 %x)",
				ov.Node, f.Path, t.path, len(got), sha256.Sum256(got), len(f.Data), sha256.Sum256(f.Data))
		}
	}
	return nil
}

// Paths lists the overlay's file paths, sorted.
func (ov *Overlay) Paths() []string {
	var out []string
	for _, f := range ov.Files {
		out = append(out, f.Path)
	}
	slices.Sort(out)
	return out
}

// String is "node: /meta-data, /user-data".
func (ov *Overlay) String() string { return ov.Node + ": " + strings.Join(ov.Paths(), ", ") }
