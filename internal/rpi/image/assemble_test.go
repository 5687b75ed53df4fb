package image

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/images"
	"github.com/fhlab/provision/internal/rpi/rootfs"
)

func rpiDefs(t testing.TB) fs.FS {
	t.Helper()
	sub, err := fs.Sub(images.FS, "rpi")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// debianTree stands in for the Debian builder's output (internal/rpi/rootfs
// is another component): a root tree shaped like what mmdebstrap makes with
// raspi-firmware and linux-image-arm64, firmware in boot/firmware.
func debianTree(dir string) map[string]string {
	t := rootTree("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n",
		"docker.io=20.10.24+dfsg1-1+deb12u1", "linux-image-6.1.0-57-arm64=6.1.158-1", "linux-image-arm64=6.1.158-1",
		"raspi-firmware=1.20220830+ds-1", "cloud-init=22.4.2-1+deb12u3", "systemd=252.39-1~deb12u1")
	for k, v := range map[string]string{
		"boot/firmware/start4.elf":               "firmware placeholder\n",
		"boot/firmware/fixup4.dat":               "fixup\n",
		"boot/firmware/bcm2711-rpi-4-b.dtb":      "dtb\n",
		"boot/firmware/overlays/disable-bt.dtbo": "overlay\n",
		"boot/firmware/config.txt":               "# raspi-firmware's own, replaced\n",
		"boot/vmlinuz-6.1.0-57-arm64":            strings.Repeat("kernel", 1000),
		"boot/initrd.img-6.1.0-57-arm64":         strings.Repeat("initrd", 1000),
		"usr/bin/dockerd":                        "#!/bin/sh\n",
	} {
		t[k] = v
	}
	return t
}

var epochTime = time.Unix(DefaultEpoch, 0)

func fakeRootfs(t *testing.T) func(context.Context, rootfs.Options) error {
	return func(_ context.Context, o rootfs.Options) error {
		if o.Suite != "bookworm" || o.Arch != "arm64" || len(o.InitramfsModules) == 0 || o.SourceDateEpoch == 0 {
			t.Errorf("rootfs options %+v", o)
		}
		writeTree(t, o.Dir, debianTree(o.Dir))
		// The same times in every tree, as mmdebstrap with SOURCE_DATE_EPOCH.
		return filepath.WalkDir(o.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Chtimes(p, epochTime, epochTime)
		})
	}
}

// TestAssembleDebian builds the debian-pi4 definition (images/rpi) from a
// root tree twice: the images are byte-identical, fsck-clean, their disk ID
// and PARTUUIDs agree, bmaptool copies them, the manifest lists the
// packages.
func TestAssembleDebian(t *testing.T) {
	needImageTools(t)
	dir := t.TempDir()
	inv := testLab(t, dir, "debian-pi4", 2)
	var results []*Result
	for i := range 2 {
		b := newBuilder(t, filepath.Join(dir, string(rune('a'+i))), inv)
		b.Defs = rpiDefs(t)
		b.BuildRoot = fakeRootfs(t)
		res, err := b.Build(context.Background(), "debian-pi4")
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	a, b := results[0], results[1]
	if a.M.SHA256 != b.M.SHA256 || !bytes.Equal(fileSum(t, a.Image), fileSum(t, b.Image)) {
		out, _ := exec.Command("sh", "-c", "cmp -l "+a.Image+" "+b.Image+" | head -40; cmp -l "+a.Image+" "+b.Image+" | wc -l").CombinedOutput()
		t.Fatalf("two builds of the same tree differ: %s vs %s\n%s", a.M.SHA256, b.M.SHA256, out)
	}
	l := a.M.Layout
	if l.Flavour != DebianRaspi || l.Seed != SeedNoCloud || l.Boot.Start != 8*mib || l.Boot.Label != DebianBootLabel || l.Root.Label != DebianRootLabel {
		t.Errorf("layout %+v", l)
	}
	fsckAll(t, a.Image, l)
	cmdline := string(mtype(t, a.Image, l.Boot, "cmdline.txt"))
	if !strings.Contains(cmdline, "root=PARTUUID="+l.DiskID+"-02 ") {
		t.Errorf("cmdline.txt %q does not name root PARTUUID %s-02", cmdline, l.DiskID)
	}
	checkRefs(t, a.Image, l, cmdline)
	cfg := string(mtype(t, a.Image, l.Boot, "config.txt"))
	for _, w := range []string{"kernel=vmlinuz-6.1.0-57-arm64", "initramfs initrd.img-6.1.0-57-arm64 followkernel", "dtoverlay=disable-wifi", "dtoverlay=disable-bt", "arm_64bit=1"} {
		if !strings.Contains(cfg, w) {
			t.Errorf("config.txt lacks %q:\n%s", w, cfg)
		}
	}
	for _, f := range []string{"start4.elf", "overlays/disable-bt.dtbo", "vmlinuz-6.1.0-57-arm64", "initrd.img-6.1.0-57-arm64"} {
		want := debianTree("")["boot/firmware/"+f]
		if want == "" {
			want = debianTree("")["boot/"+f]
		}
		if got := string(mtype(t, a.Image, l.Boot, f)); got != want {
			t.Errorf("boot partition %s: %d bytes, want %d", f, len(got), len(want))
		}
	}
	// Every baked file, read back.
	def := mustDefFS(t, "debian-pi4")
	lab, err := labOverlay(inv, testRenderer(t), def)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range lab {
		if e.Kind == KindFile {
			if got := ext4Cat(t, a.Image, l.Root, e.Path); !bytes.Equal(got, e.Data) {
				t.Errorf("%s: read back other content", e.Path)
			}
		}
	}
	if err := checkOverlay(context.Background(), ext4{Image: a.Image, Offset: l.Root.Start}, lab); err != nil {
		t.Error(err)
	}
	if got := ext4Cat(t, a.Image, l.Root, "/usr/bin/dockerd"); string(got) != "#!/bin/sh\n" {
		t.Errorf("root tree file not copied: %q", got)
	}

	// Manifest: every package, the tuning, the input hash.
	var m Manifest
	if err := json.Unmarshal(fileSum(t, a.Manifest), &m); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, p := range m.Packages {
		names[p.Name] = p.Version
	}
	if names["docker.io"] == "" || names["linux-image-arm64"] == "" || names["removed-thing"] != "" || len(m.Packages) != 6 {
		t.Errorf("manifest packages %v", m.Packages)
	}
	if m.InputHash == "" || m.Tuning.Keepalive.Time == 0 || len(m.Files) == 0 {
		t.Errorf("manifest lacks the input hash, tuning or files")
	}
	if sum := strings.Fields(string(fileSum(t, a.SHA256))); len(sum) != 2 || sum[0] != m.SHA256 || sum[1] != filepath.Base(a.Image) {
		t.Errorf("%s: %v", a.SHA256, sum)
	}

	// bmaptool copy, to a file, checks every range's sha256.
	bmaptool := need(t, "bmaptool", "bmap-tools")
	dst := filepath.Join(dir, "card.img")
	if out, err := exec.Command(bmaptool, "copy", "--bmap", a.Bmap, a.Image, dst).CombinedOutput(); err != nil {
		t.Fatalf("bmaptool copy: %v\n%s", err, out)
	}
	if got := sha256Of(t, dst); got != m.SHA256 {
		t.Errorf("bmaptool's copy has sha256 %s, want %s", got, m.SHA256)
	}
}

func mustDefFS(t *testing.T, name string) *Definition {
	t.Helper()
	d, err := LoadDefinition(rpiDefs(t), name, ".")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
