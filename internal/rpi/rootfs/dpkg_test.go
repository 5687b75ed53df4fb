package rootfs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestInstalledPackages(t *testing.T) {
	root := t.TempDir()
	status := `Package: zram-tools
Status: install ok installed
Priority: optional
Architecture: all
Version: 0.3.3.1-1
Description: utilities for working with zram
 zram is a Linux kernel module that allows you to set up compressed
 Package: not-a-package

Package: docker.io
Status: install ok installed
Architecture: arm64
Version: 20.10.24+dfsg1-1+deb12u1+b2

Package: removed-one
Status: deinstall ok config-files
Architecture: arm64
Version: 1.0
`
	if err := os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := InstalledPackages(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{{"docker.io", "20.10.24+dfsg1-1+deb12u1+b2", "arm64"}, {"zram-tools", "0.3.3.1-1", "all"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := InstalledPackages(t.TempDir()); err == nil {
		t.Error("a tree without a dpkg database gives no error")
	}
}
