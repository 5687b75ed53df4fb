package flash

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
)

// skipOrFail skips an integration test that cannot run here, and fails it
// under CI, where everything it needs must be installed.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root for loop devices")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %s (scripts/install-deps.sh)", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Layout of the synthetic Pi image: MBR, FAT32 boot partition at 4 MiB,
// ext4 root after it, holes in between and in both filesystems.
const (
	testImageSize = 96 << 20
	bootStart     = 4 << 20
	bootSize      = 40 << 20
	rootStart     = bootStart + bootSize
)

// makeImage builds a sparse Pi-shaped image and its bmap in dir.
func makeImage(t *testing.T, dir string) string {
	t.Helper()
	requireTools(t, "sfdisk", "mkfs.vfat", "mke2fs", "bmaptool")
	img := filepath.Join(dir, "golden.img")
	if f, err := os.Create(img); err != nil {
		t.Fatal(err)
	} else if err := f.Truncate(testImageSize); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	cmd := exec.Command("sfdisk", "--quiet", img)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("label: dos\nlabel-id: 0x295ac2ff\nstart=%d, size=%d, type=c\nstart=%d, type=83\n", bootStart/512, bootSize/512, rootStart/512))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	run(t, "mkfs.vfat", "-F", "32", "-s", "1", "-n", "BOOTFS", "--offset", fmt.Sprint(bootStart/512), img, fmt.Sprint(bootSize/1024))
	d, err := diskfs.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"/config.txt":  "arm_64bit=1\n",
		"/cmdline.txt": "console=serial0,115200 root=PARTUUID=295ac2ff-02 rootwait\n",
		"/meta-data":   "instance-id: golden\n",
	} {
		if err := writeFATFile(fsys, OverlayFile{Path: name, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
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
	run(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", root, "-E", fmt.Sprintf("offset=%d", rootStart), img, fmt.Sprintf("%dk", (testImageSize-rootStart)/1024))
	run(t, "bmaptool", "create", "-o", img+".bmap", img)
	return img
}

// loopDev attaches a sparse file of size bytes as a loop device, detached
// again when the test ends (also when it fails). The file starts with an
// old partition table, as a used card would.
func loopDev(t *testing.T, size int64) (dev, backing string) {
	t.Helper()
	requireTools(t, "losetup")
	f, err := os.CreateTemp(t.TempDir(), "card-*.img")
	if err != nil {
		t.Fatal(err)
	}
	old := make([]byte, 512)
	old[450], old[510], old[511] = 0x83, 0x55, 0xAA
	f.WriteAt(old, 0)
	f.WriteAt(bytes.Repeat([]byte{0xEE}, 1<<20), 8<<20) // stale data in a hole of the image
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

func openTestImage(t *testing.T, img string) *Image {
	t.Helper()
	im, err := OpenImage(context.Background(), img, "", false)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// sameMapped compares every mapped range of the image with the card file
// byte for byte (independently of the flasher's hashing).
func sameMapped(t *testing.T, im *Image, card string, skip func(off int64) bool) {
	t.Helper()
	a, err := os.ReadFile(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(card)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range im.Map.Ranges {
		off, n := r.Offset(im.Map.BlockSize), r.Length(im.Map.BlockSize, im.Size)
		if skip != nil && skip(off) {
			continue
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatalf("read %s of %s: %v", r, card, err)
		}
		if !bytes.Equal(a[off:off+n], b) {
			t.Fatalf("%s of %s differs from the image", r, card)
		}
	}
}

func testOverlay(node string) *Overlay {
	return &Overlay{Node: node, Partition: 1, Files: []OverlayFile{
		{Path: "/meta-data", Data: []byte("instance-id: " + node + "\nlocal-hostname: " + node + "\n")},
		{Path: "/user-data", Data: []byte("#cloud-config\nhostname: " + node + "\n")},
		{Path: "/network-config", Data: []byte("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")},
		{Path: "/seed/extra/notes.txt", Data: bytes.Repeat([]byte("x"), 9000)},
	}}
}

// checkBootPartition reads the overlay back from the card's FAT partition
// through a fresh go-diskfs view and runs fsck.fat -n on a copy of it.
func checkBootPartition(t *testing.T, card string, ov *Overlay) {
	t.Helper()
	requireTools(t, "fsck.fat")
	d, err := diskfs.Open(card, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fsys, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatalf("boot partition of %s: %v", card, err)
	}
	for _, f := range ov.Files {
		got, err := ReadFATFile(fsys, f.Path)
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Fatalf("%s on %s: got %q, %v; want %q", f.Path, card, got, err, f.Data)
		}
	}
	if got, err := ReadFATFile(fsys, "/config.txt"); err != nil || string(got) != "arm_64bit=1\n" {
		t.Fatalf("the image's /config.txt on %s: %q, %v", card, got, err)
	}
	src, err := os.Open(card)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	part := make([]byte, bootSize)
	if _, err := src.ReadAt(part, bootStart); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "boot.vfat")
	os.WriteFile(copyPath, part, 0o600)
	if out, err := exec.Command("fsck.fat", "-n", copyPath).CombinedOutput(); err != nil {
		t.Fatalf("fsck.fat -n on the boot partition of %s: %v\n%s", card, err, out)
	}
}
