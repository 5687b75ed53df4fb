// Package flashtest makes what the flash tests write and check: a sparse
// Pi-shaped image with its bmap, loop devices over sparse files (detached
// when the test ends), and a check of a card's boot partition.
package flashtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
)

// SkipOrFail skips an integration test that cannot run here, and fails it
// under CI, where everything it needs must be installed.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireTools needs root and each tool on PATH.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root for loop devices")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			SkipOrFail(t, "needs %s (scripts/install-deps.sh)", tool)
		}
	}
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Layout of the synthetic Pi image: MBR (disk id 295ac2ff), FAT32 boot
// partition at 4 MiB, ext4 root after it; holes in between and in both.
const (
	ImageSize = 96 << 20
	BootStart = 4 << 20
	BootSize  = 40 << 20
	RootStart = BootStart + BootSize
)

// BootFiles are the files the image's boot partition starts with.
var BootFiles = map[string]string{
	"/config.txt":  "arm_64bit=1\n",
	"/cmdline.txt": "console=serial0,115200 root=PARTUUID=295ac2ff-02 rootwait\n",
	"/meta-data":   "instance-id: golden\n",
}

// MakeImage builds dir/golden.img (sparse) and golden.img.bmap with
// `bmaptool create`.
func MakeImage(t testing.TB, dir string) string {
	t.Helper()
	RequireTools(t, "sfdisk", "mkfs.vfat", "mke2fs", "bmaptool")
	img := filepath.Join(dir, "golden.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(ImageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command("sfdisk", "--quiet", img)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("label: dos\nlabel-id: 0x295ac2ff\nstart=%d, size=%d, type=c\nstart=%d, type=83\n", BootStart/512, BootSize/512, RootStart/512))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	Run(t, "mkfs.vfat", "-F", "32", "-s", "1", "-n", "BOOTFS", "--offset", fmt.Sprint(BootStart/512), img, fmt.Sprint(BootSize/1024))
	d, err := diskfs.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range BootFiles {
		w, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(data))
		w.Close()
	}
	d.Close()
	root := filepath.Join(dir, "rootfs")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("golden\n"), 0o644)
	for i := range 3 {
		b := make([]byte, 3<<20+i*4096+123)
		rand.Read(b)
		os.WriteFile(filepath.Join(root, fmt.Sprintf("data%d.bin", i)), b, 0o644)
	}
	Run(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", root, "-E", fmt.Sprintf("offset=%d", RootStart), img, fmt.Sprintf("%dk", (ImageSize-RootStart)/1024))
	Run(t, "bmaptool", "create", "-o", img+".bmap", img)
	return img
}

// LoopDev attaches a sparse file of size bytes as a loop device, detached
// again when the test ends (also when it fails). The file starts with an
// old partition table, as a used card would, and 0xEE bytes at 8 MiB (a
// hole of the image).
func LoopDev(t testing.TB, size int64) (dev, backing string) {
	t.Helper()
	RequireTools(t, "losetup")
	f, err := os.CreateTemp(t.TempDir(), "card-*.img")
	if err != nil {
		t.Fatal(err)
	}
	old := make([]byte, 512)
	old[450], old[510], old[511] = 0x83, 0x55, 0xAA
	f.WriteAt(old, 0)
	f.WriteAt(bytes.Repeat([]byte{0xEE}, 1<<20), 8<<20)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("losetup", "-f", "--show", f.Name()).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v\n%s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v\n%s", dev, err, out)
		}
	})
	return dev, f.Name()
}

// CheckBootPartition reads want back from the card's (or image file's)
// FAT partition through a fresh go-diskfs view, checks the image's own
// boot files are still there, and runs fsck.fat -n on a copy of the
// partition.
func CheckBootPartition(t testing.TB, card string, want map[string][]byte) {
	t.Helper()
	RequireTools(t, "fsck.fat")
	d, err := diskfs.Open(card, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fsys, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatalf("boot partition of %s: %v", card, err)
	}
	read := func(p string) ([]byte, error) {
		r, err := fsys.OpenFile(path.Clean("/"+p), os.O_RDONLY)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	for p, data := range want {
		got, err := read(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s on %s: got %q, %v; want %q", p, card, got, err, data)
		}
	}
	if got, err := read("/config.txt"); err != nil || string(got) != BootFiles["/config.txt"] {
		t.Fatalf("the image's /config.txt on %s: %q, %v", card, got, err)
	}
	src, err := os.Open(card)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	part := make([]byte, BootSize)
	if _, err := src.ReadAt(part, BootStart); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "boot.vfat")
	os.WriteFile(copyPath, part, 0o600)
	if out, err := exec.Command("fsck.fat", "-n", copyPath).CombinedOutput(); err != nil {
		t.Fatalf("fsck.fat -n on the boot partition of %s: %v\n%s", card, err, out)
	}
}

// LoopDevPartitioned attaches a sparse copy of img and adds its partitions
// (partx -a, which works where the kernel's own scan of loop devices is
// off), so they appear as DEVpN; detached when the test ends.
func LoopDevPartitioned(t testing.TB, img string) string {
	t.Helper()
	RequireTools(t, "losetup", "cp", "partx")
	cp := filepath.Join(t.TempDir(), "card.img")
	Run(t, "cp", "--sparse=always", img, cp)
	out, err := exec.Command("losetup", "-f", "--show", cp).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v\n%s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		exec.Command("partx", "-d", dev).Run()
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v\n%s", dev, err, out)
		}
	})
	Run(t, "partx", "-a", dev)
	return dev
}
