package image

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// EntryKind is what an overlay entry does to the root file system.
type EntryKind string

// Entry kinds.
const (
	KindFile    EntryKind = "file"
	KindDir     EntryKind = "dir"
	KindSymlink EntryKind = "symlink"
	KindRemove  EntryKind = "remove" // a file or symlink, if present
)

// Entry is one change to the root file system.
type Entry struct {
	Path   string      `json:"path"`
	Kind   EntryKind   `json:"kind"`
	Mode   fs.FileMode `json:"mode,omitempty"` // permission bits
	UID    int         `json:"uid"`
	GID    int         `json:"gid"`
	Data   []byte      `json:"-"`
	Target string      `json:"target,omitempty"`
}

// Overlay is the ordered list of changes baked into a root file system.
type Overlay []Entry

// blocks is a generous estimate of the file system blocks and inodes the
// overlay needs: every file rounded up to whole blocks, one block per
// directory, and one block per file for extent and directory growth.
func (ov Overlay) blocks(blockSize int64) (blocks, inodes int64) {
	for _, e := range ov {
		switch e.Kind {
		case KindFile:
			blocks += (int64(len(e.Data))+blockSize-1)/blockSize + 1
			inodes++
		case KindDir, KindSymlink:
			blocks++
			inodes++
		}
	}
	return blocks, inodes
}

// applyOverlay writes ov into the ext4 file system e with one debugfs run:
// missing parent directories are made (root-owned, 0755), existing files
// are replaced, modes and owners set with sif. It first checks that the
// file system has room; then it reads every path back and checks its type,
// mode and owner. tmp is a directory for the files debugfs copies in.
func applyOverlay(ctx context.Context, e ext4, ov Overlay, tmp string) error {
	info, err := e.info(ctx)
	if err != nil {
		return err
	}
	need, inodes := ov.blocks(info.BlockSize)
	// Keep 1% of the file system and 64 blocks free for the first boot.
	spare := info.Blocks/100 + 64
	if need+spare > info.FreeBlocks || inodes > info.FreeInodes {
		return fmt.Errorf("root file system too small for the overlay: it needs %s (%d files), the file system has %s free of %s; give the image more space",
			HumanBytes((need+spare)*info.BlockSize), inodes, HumanBytes(info.FreeBlocks*info.BlockSize), HumanBytes(info.Blocks*info.BlockSize))
	}

	paths := map[string]bool{}
	for _, en := range ov {
		for p := en.Path; p != "" && p != "/"; p = parentDir(p) {
			paths[p] = true
		}
	}
	list := make([]string, 0, len(paths))
	for p := range paths {
		list = append(list, p)
	}
	sort.Strings(list)
	have, err := e.stat(ctx, list...)
	if err != nil {
		return err
	}
	exists := func(p string) string { return have[p].Type }

	var script strings.Builder
	mkdirs := func(p string) {
		var parents []string
		for d := parentDir(p); d != ""; d = parentDir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			d := parents[i]
			switch exists(d) {
			case "":
				fmt.Fprintf(&script, "mkdir %s\nsif %s mode 040755\nsif %s uid 0\nsif %s gid 0\n", quoteArg(d), quoteArg(d), quoteArg(d), quoteArg(d))
				have[d] = inode{Type: "directory"}
			}
		}
	}
	// replace makes path's parents and removes a file or symlink at path,
	// so that provision can write one there ("provision <does> there").
	replace := func(path, does string) error {
		mkdirs(path)
		switch exists(path) {
		case "":
		case "regular", "symlink":
			fmt.Fprintf(&script, "rm %s\n", quoteArg(path))
		default:
			return fmt.Errorf("overlay: %s is a %s in the image; provision %s there", path, exists(path), does)
		}
		return nil
	}
	for i, en := range ov {
		p := quoteArg(en.Path)
		if !strings.HasPrefix(en.Path, "/") || cleanPath(en.Path) != en.Path {
			return fmt.Errorf("overlay entry %s: not a clean absolute path", en.Path)
		}
		switch en.Kind {
		case KindDir:
			mkdirs(en.Path)
			switch exists(en.Path) {
			case "":
				fmt.Fprintf(&script, "mkdir %s\n", p)
			case "directory":
			default:
				return fmt.Errorf("overlay: %s is a %s in the image, not a directory", en.Path, exists(en.Path))
			}
			fmt.Fprintf(&script, "sif %s mode 0%o\nsif %s uid %d\nsif %s gid %d\n", p, 0o40000|uint32(en.Mode.Perm()), p, en.UID, p, en.GID)
			have[en.Path] = inode{Type: "directory"}
		case KindFile:
			if err := replace(en.Path, "writes a file"); err != nil {
				return err
			}
			src := filepath.Join(tmp, strconv.Itoa(i))
			if err := os.WriteFile(src, en.Data, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(&script, "write %s %s\nsif %s mode 0%o\nsif %s uid %d\nsif %s gid %d\n", quoteArg(src), p, p, 0o100000|uint32(en.Mode.Perm()), p, en.UID, p, en.GID)
			have[en.Path] = inode{Type: "regular"}
		case KindSymlink:
			if err := replace(en.Path, "makes a symlink"); err != nil {
				return err
			}
			fmt.Fprintf(&script, "symlink %s %s\n", p, quoteArg(en.Target))
			have[en.Path] = inode{Type: "symlink"}
		case KindRemove:
			switch exists(en.Path) {
			case "regular", "symlink":
				fmt.Fprintf(&script, "rm %s\n", p)
				have[en.Path] = inode{}
			}
		default:
			return fmt.Errorf("overlay entry %s: unknown kind %q", en.Path, en.Kind)
		}
	}
	if _, err := e.debugfs(ctx, true, script.String()); err != nil {
		return fmt.Errorf("write the overlay: %w", err)
	}
	return checkOverlay(ctx, e, ov)
}

// checkOverlay reads every entry back: type, mode, owner, size, target.
func checkOverlay(ctx context.Context, e ext4, ov Overlay) error {
	list := make([]string, 0, len(ov))
	for _, en := range ov {
		list = append(list, en.Path)
	}
	got, err := e.stat(ctx, list...)
	if err != nil {
		return err
	}
	// The last entry for a path wins.
	final := map[string]Entry{}
	for _, en := range ov {
		final[en.Path] = en
	}
	for p, en := range final {
		in := got[p]
		want := map[EntryKind]string{KindFile: "regular", KindDir: "directory", KindSymlink: "symlink", KindRemove: ""}[en.Kind]
		switch {
		case in.Type != want:
			return fmt.Errorf("overlay check: %s is %q, want %q", p, in.Type, want)
		case en.Kind == KindFile && (in.Mode != uint32(en.Mode.Perm()) || in.UID != en.UID || in.GID != en.GID || in.Size != int64(len(en.Data))):
			return fmt.Errorf("overlay check: %s has mode %o uid %d gid %d size %d, want %o %d %d %d", p, in.Mode, in.UID, in.GID, in.Size, en.Mode.Perm(), en.UID, en.GID, len(en.Data))
		case en.Kind == KindSymlink && in.Target != en.Target:
			return fmt.Errorf("overlay check: %s points to %q, want %q", p, in.Target, en.Target)
		}
	}
	return nil
}
