package rootfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Package is one installed Debian package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"architecture"`
}

// InstalledPackages reads the dpkg database of the tree at root and
// returns the installed packages sorted by name (what a manifest lists).
func InstalledPackages(root string) ([]Package, error) {
	p := filepath.Join(root, "var", "lib", "dpkg", "status")
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pkgs, err := ParseStatus(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return pkgs, nil
}

// ParseStatus reads a dpkg status file and returns the installed packages
// sorted by name and architecture.
func ParseStatus(r io.Reader) ([]Package, error) {
	var (
		pkgs      []Package
		cur       Package
		installed bool
	)
	flush := func() {
		if cur.Name != "" && installed {
			pkgs = append(pkgs, cur)
		}
		cur, installed = Package{}, false
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			cur.Name = v
		case "Version":
			cur.Version = v
		case "Architecture":
			cur.Arch = v
		case "Status":
			installed = strings.HasSuffix(v, " installed")
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(pkgs, func(a, b Package) int { return strings.Compare(a.Name+":"+a.Arch, b.Name+":"+b.Arch) })
	return pkgs, nil
}
