package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

// writeBaseDefinition writes a definition for a base image into dir.
func writeBaseDefinition(t testing.TB, dir, name, base, sum, extra string) string {
	t.Helper()
	files := map[string]string{
		name + ".yaml":        fmt.Sprintf("apiVersion: provision/v1\nkind: PiImage\nname: %s\nbase:\n  path: %s\n  sha256: %q\nboot:\n  config: boot/config-add.txt\noverlays: [overlay]\n%s", name, base, sum, extra),
		"boot/config-add.txt": "# lab additions\n[all]\ngpu_mem=16\n",
		"overlay/etc/cloud/cloud.cfg.d/99-provision-datasource.cfg": "datasource_list: [ NoCloud, None ]\n",
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, name+".yaml")
}

func sha256Of(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newBuilder(t testing.TB, dir string, inv *inventory.Inventory) *Builder {
	t.Helper()
	return &Builder{Inv: inv, Renderer: testRenderer(t), Dir: filepath.Join(dir, "images"), Progress: func(string, ...any) {}}
}

// TestCustomiseFlavours builds a synthetic base of every supported flavour,
// customises it and checks the result with fsck.fat, e2fsck, mtools and
// debugfs, reading every written file back.
func TestCustomiseFlavours(t *testing.T) {
	needImageTools(t)
	want := map[string]struct {
		flavour Flavour
		seed    string
	}{
		"raspios-trixie":   {RaspiOSTrixie, SeedNoCloud},
		"raspios-bookworm": {RaspiOSBookworm, SeedFirstrun},
		"ubuntu":           {Ubuntu, SeedNoCloud},
		"debian-raspi":     {DebianRaspi, SeedNoCloud},
	}
	for name, spec := range flavours() {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			base := makeBase(t, dir, spec)
			baseSum := sha256Of(t, base)
			def := writeBaseDefinition(t, dir, "img-"+name, base, baseSum, "")
			inv := testLab(t, dir, def, 3)
			b := newBuilder(t, dir, inv)
			res, err := b.Build(context.Background(), def)
			if err != nil {
				t.Fatal(err)
			}
			l := res.M.Layout
			if l.Flavour != want[name].flavour || l.Seed != want[name].seed {
				t.Errorf("flavour %s seed %s, want %s %s", l.Flavour, l.Seed, want[name].flavour, want[name].seed)
			}
			if got := sha256Of(t, base); got != baseSum {
				t.Errorf("the base image changed")
			}
			img := res.Image
			fsckAll(t, img, l)

			// Every overlay entry, read back with debugfs.
			lab, err := labOverlay(inv, b.Renderer, mustDef(t, b, def))
			if err != nil {
				t.Fatal(err)
			}
			root := ext4{Image: img, Offset: l.Root.Start}
			for _, e := range lab {
				switch e.Kind {
				case KindFile:
					if got := ext4Cat(t, img, l.Root, e.Path); !bytes.Equal(got, e.Data) {
						t.Errorf("%s: read back %d bytes that differ from the %d written", e.Path, len(got), len(e.Data))
					}
				case KindRemove:
					st, err := root.stat(context.Background(), e.Path)
					if err != nil || st[e.Path].Type != "" {
						t.Errorf("%s still there (%v)", e.Path, err)
					}
				}
			}
			if err := checkOverlay(context.Background(), root, lab); err != nil {
				t.Error(err)
			}
			if got := ext4Cat(t, img, l.Root, "/etc/machine-id"); len(got) != 0 {
				t.Errorf("machine-id %q, want empty", got)
			}
			passwd := string(ext4Cat(t, img, l.Root, "/etc/passwd"))
			if !strings.Contains(passwd, "\nprovision:x:1000:1000:") {
				t.Errorf("passwd has no provision user:\n%s", passwd)
			}
			if !strings.Contains(string(ext4Cat(t, img, l.Root, "/etc/group")), "sudo:x:27:provision") {
				t.Errorf("provision is not in group sudo")
			}
			keys := string(ext4Cat(t, img, l.Root, "/home/provision/.ssh/authorized_keys"))
			if keys != inv.Lab.SSH.AuthorizedKeys[0]+"\n" {
				t.Errorf("authorized_keys %q", keys)
			}
			st, _ := root.stat(context.Background(), "/home/provision/.ssh/authorized_keys", "/home/provision/.ssh")
			if in := st["/home/provision/.ssh/authorized_keys"]; in.UID != 1000 || in.Mode != 0o600 {
				t.Errorf("authorized_keys uid %d mode %o", in.UID, in.Mode)
			}

			// Boot partition, read with mtools.
			cfg := string(mtype(t, img, l.Boot, "config.txt"))
			for _, w := range []string{"gpu_mem=16", "dtoverlay=disable-wifi", "dtoverlay=disable-bt", provisionMarker} {
				if !strings.Contains(cfg, w) {
					t.Errorf("config.txt lacks %q:\n%s", w, cfg)
				}
			}
			cmdline := string(mtype(t, img, l.Boot, "cmdline.txt"))
			if strings.Count(cmdline, "\n") != 1 || !strings.Contains(cmdline, " cgroup_enable=memory cgroup_memory=1") {
				t.Errorf("cmdline.txt %q", cmdline)
			}
			// The disk identifier and the root references agree.
			checkRefs(t, img, l, cmdline)

			// A second build with the same inputs reuses the image.
			again, err := b.Build(context.Background(), def)
			if err != nil || !again.Cached || again.M.SHA256 != res.M.SHA256 {
				t.Errorf("second build: cached=%v err=%v", again != nil && again.Cached, err)
			}
			checkPlans(t, b, def, res)
		})
	}
}

func mustDef(t *testing.T, b *Builder, name string) *Definition {
	t.Helper()
	d, err := b.Definition(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkRefs checks cmdline.txt's root= and fstab against the MBR read
// with a plain byte read (not provision's parser).
func checkRefs(t *testing.T, img string, l Layout, cmdline string) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var id [4]byte
	if _, err := f.ReadAt(id[:], 440); err != nil {
		t.Fatal(err)
	}
	disk := fmt.Sprintf("%02x%02x%02x%02x", id[3], id[2], id[1], id[0])
	if disk != l.DiskID {
		t.Errorf("disk ID at byte 440 is %s, layout says %s", disk, l.DiskID)
	}
	fstab := string(ext4Cat(t, img, l.Root, "/etc/fstab"))
	for _, tok := range strings.Fields(cmdline) {
		ref, ok := strings.CutPrefix(tok, "root=")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(ref, "PARTUUID="):
			if ref != "PARTUUID="+disk+"-02" {
				t.Errorf("cmdline.txt root=%s, disk ID %s", ref, disk)
			}
			if !strings.Contains(fstab, "PARTUUID="+disk+"-02") || !strings.Contains(fstab, "PARTUUID="+disk+"-01") {
				t.Errorf("fstab does not name PARTUUID=%s-01/-02:\n%s", disk, fstab)
			}
		case strings.HasPrefix(ref, "LABEL="):
			if ref != "LABEL="+l.Root.Label {
				t.Errorf("cmdline.txt root=%s, root label %s", ref, l.Root.Label)
			}
		}
	}
}

// checkPlans: the plan of a built image says reuse, and says build (with
// the reason) once the inputs change or the image is cut short.
func checkPlans(t *testing.T, b *Builder, def string, res *Result) {
	t.Helper()
	for _, c := range []struct {
		name   string
		change func()
		reuse  bool
		reason string
	}{
		{"as built", func() {}, true, "same input hash"},
		{"new time stamp", func() { b.Epoch = b.epoch() + 1 }, false, "inputs changed (last built from " + res.M.InputHash[:16] + ")"},
		{"image cut short", func() {
			b.Epoch--
			if err := os.Truncate(res.Image, res.M.ImageSize-512); err != nil {
				t.Fatal(err)
			}
		}, false, fmt.Sprintf("the last image is %d bytes, its manifest says %d", res.M.ImageSize-512, res.M.ImageSize)},
		{"image gone", func() { os.Remove(res.Image) }, false, "the last image is missing: " + res.Image},
	} {
		c.change()
		p, err := b.Plan(def)
		if err != nil {
			t.Fatalf("plan, %s: %v", c.name, err)
		}
		if p.Reuse != c.reuse || p.Reason != c.reason {
			t.Errorf("plan, %s: reuse=%v %q; want reuse=%v %q", c.name, p.Reuse, p.Reason, c.reuse, c.reason)
		}
	}
}
