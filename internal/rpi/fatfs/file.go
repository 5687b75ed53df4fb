package fatfs

import (
	"fmt"
	"io"
	"os"
	"path"

	"github.com/diskfs/go-diskfs/filesystem"
)

// ReadFile reads file p (absolute or relative to the root) of fsys.
func ReadFile(fsys filesystem.FileSystem, p string) ([]byte, error) {
	r, err := fsys.OpenFile(path.Clean("/"+p), os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// Exists reports whether file p of fsys can be opened.
func Exists(fsys filesystem.FileSystem, p string) bool {
	// go-diskfs's Stat and ReadDir want io/fs paths, OpenFile and Remove
	// absolute ones: stay with the latter.
	fh, err := fsys.OpenFile(path.Clean("/"+p), os.O_RDONLY)
	if err != nil {
		return false
	}
	fh.Close()
	return true
}

// WriteFile replaces or creates file p of fsys with data, making its parent
// directories.
func WriteFile(fsys filesystem.FileSystem, p string, data []byte) error {
	p = path.Clean("/" + p)
	if dir := path.Dir(p); dir != "/" {
		if err := fsys.Mkdir(dir); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
	}
	// Truncate rather than remove: go-diskfs's Remove leaves the file's
	// clusters allocated (fsck.fat: "Reclaimed 2 unused clusters").
	w, err := fsys.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
