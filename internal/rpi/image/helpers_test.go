package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/testtool"
	"github.com/fhlab/provision/templates"
)

// need returns the path of a tool, skipping the test without it (failing
// under CI=true).
func need(t *testing.T, tool, pkg string) string {
	t.Helper()
	return testtool.Need(t, tool, pkg)
}

func needImageTools(t *testing.T) {
	t.Helper()
	need(t, "mke2fs", "e2fsprogs")
	need(t, "debugfs", "e2fsprogs")
	need(t, "dumpe2fs", "e2fsprogs")
	need(t, "e2fsck", "e2fsprogs")
	need(t, "mkfs.vfat", "dosfstools")
	need(t, "fsck.fat", "dosfstools")
	need(t, "mcopy", "mtools")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeBase builds a synthetic base image with the stock tools.
func makeBase(t *testing.T, dir string, s imagetest.BaseSpec) string {
	t.Helper()
	need(t, "mkfs.vfat", "dosfstools")
	need(t, "mcopy", "mtools")
	img, err := imagetest.MakeBase(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func flavours() map[string]imagetest.BaseSpec { return imagetest.Flavours() }

func rootTree(osRelease string, pkgs ...string) map[string]string {
	return imagetest.RootTree(osRelease, pkgs...)
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := imagetest.WriteTree(dir, files); err != nil {
		t.Fatal(err)
	}
}

const testInventory = `apiVersion: provision/v1
kind: Lab
metadata: {name: test-lab}
network: {cidr: 192.168.10.0/23, gateway: 192.168.10.1, dns: [192.168.10.1], ntp: [192.168.10.1]}
ssh:
  user: provision
  authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3mIzxp6Yw6z1s8m0b1f0ZC8qW2l2Hn0JXQZ3x7a9P admin@lab"]
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 16, managers: 1}
pis:
  image: %IMAGE%
  racks:
    - {name: m1, count: 1, boot: sd, ipStart: 192.168.10.200, role: manager}
    - {name: r1, count: %COUNT%, boot: sd, ipStart: 192.168.11.1}
`

// testLab writes an inventory with 1 + count Pis booting image and loads it.
func testLab(t testing.TB, dir, image string, count int) *inventory.Inventory {
	t.Helper()
	text := strings.NewReplacer("%IMAGE%", image, "%COUNT%", fmt.Sprint(count)).Replace(testInventory)
	p := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func testRenderer(t testing.TB) *render.Renderer {
	t.Helper()
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fsckAll checks both file systems of an image with the stock tools.
func fsckAll(t *testing.T, img string, l Layout) {
	t.Helper()
	// fsck.fat has no offset option: check a copy of the partition.
	part := filepath.Join(t.TempDir(), "boot.vfat")
	extract(t, img, l.Boot, part)
	out, err := exec.Command(need(t, "fsck.fat", "dosfstools"), "-n", part).CombinedOutput()
	if err != nil {
		t.Errorf("fsck.fat -n (partition %d): %v\n%s", l.Boot.Number, err, out)
	}
	out, err = exec.Command(need(t, "e2fsck", "e2fsprogs"), "-fn", fmt.Sprintf("%s?offset=%d", img, l.Root.Start)).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn (partition %d): %v\n%s", l.Root.Number, err, out)
	}
}

func extract(t *testing.T, img string, p Partition, out string) {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	// Sparse: a 512 MiB boot partition is mostly zeros.
	w := &sparseWriter{f: dst}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < p.Size; off += int64(len(buf)) {
		n, err := src.ReadAt(buf[:min(int64(len(buf)), p.Size-off)], p.Start+off)
		if err != nil && n == 0 {
			t.Fatal(err)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Truncate(p.Size); err != nil {
		t.Fatal(err)
	}
}

// mtype reads a file from the FAT partition with mtools (not go-diskfs).
func mtype(t *testing.T, img string, p Partition, name string) []byte {
	t.Helper()
	cmd := exec.Command("mtype", "-i", fmt.Sprintf("%s@@%d", img, p.Start), "::/"+name)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mtype %s: %v", name, err)
	}
	return out
}

// ext4Cat reads a file from the root partition with debugfs.
func ext4Cat(t *testing.T, img string, p Partition, name string) []byte {
	t.Helper()
	b, ok, err := ext4{Image: img, Offset: p.Start}.cat(context.Background(), name)
	if err != nil || !ok {
		t.Fatalf("read %s from the root file system: ok=%v %v", name, ok, err)
	}
	return b
}

func fileSum(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(b)
}
