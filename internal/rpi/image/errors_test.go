package image

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInputs: each bad input gets an error saying what is wrong, the
// input is unchanged, and no image (nor any scratch file) is left behind.
func TestBadInputs(t *testing.T) {
	needImageTools(t)
	xzTool := need(t, "xz", "xz-utils")
	cases := []struct {
		name string
		// make returns the base image (and may change the definition's
		// extra YAML).
		make  func(t *testing.T, dir string) (base, extra string)
		want  string
		noDef bool
	}{
		{"not a disk image", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "notes.img")
			if err := os.WriteFile(p, []byte(strings.Repeat("just some text\n", 4096)), 0o644); err != nil {
				t.Fatal(err)
			}
			return p, ""
		}, "no MBR partition table (no 55AA signature at byte 510): not a Raspberry Pi disk image", false},
		{"a PC disk, no Pi firmware", func(t *testing.T, dir string) (string, string) {
			s := flavours()["raspios-trixie"]
			s.BootFiles = map[string]string{"BOOTX64.EFI": "x86\n", "grub.cfg": "menuentry\n"}
			return makeBase(t, dir, s), ""
		}, `not a Raspberry Pi image: the boot partition (label "bootfs") has no config.txt, cmdline.txt, start4.elf`, false},
		{"truncated xz", func(t *testing.T, dir string) (string, string) {
			base := makeBase(t, dir, flavours()["raspios-trixie"])
			run(t, xzTool, "-1", "-T1", base)
			st, err := os.Stat(base + ".xz")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(base+".xz", st.Size()*2/3); err != nil {
				t.Fatal(err)
			}
			return base + ".xz", ""
		}, "the .xz file is truncated or corrupt", false},
		{"partition beyond the end", func(t *testing.T, dir string) (string, string) {
			base := makeBase(t, dir, flavours()["raspios-trixie"])
			st, _ := os.Stat(base)
			if err := os.Truncate(base, st.Size()-8*mib); err != nil {
				t.Fatal(err)
			}
			return base, ""
		}, "partition 2 ends at byte", false},
		{"overlapping partitions", func(t *testing.T, dir string) (string, string) {
			base := makeBase(t, dir, flavours()["raspios-trixie"])
			f, err := os.OpenFile(base, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Partition 2 starts 1 MiB before partition 1 ends.
			var b [4]byte
			binary.LittleEndian.PutUint32(b[:], uint32((8*mib+63*mib)/512))
			if _, err := f.WriteAt(b[:], 446+16+8); err != nil {
				t.Fatal(err)
			}
			return base, ""
		}, "partitions 1 (bytes 8388608-75497472) and 2 (bytes 74448896-", false},
		{"root file system too small", func(t *testing.T, dir string) (string, string) {
			// A root file system with about 150 KiB free.
			s := flavours()["raspios-trixie"]
			s.RootMiB = 16
			if err := os.Mkdir(filepath.Join(dir, "probe"), 0o755); err != nil {
				t.Fatal(err)
			}
			probe := makeBase(t, filepath.Join(dir, "probe"), s)
			fi, err := ext4{Image: probe, Offset: 72 * mib}.info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(filepath.Join(dir, "probe"))
			s.Root["var/filler"] = strings.Repeat("x", int(fi.FreeBlocks*fi.BlockSize)-150*1024)
			return makeBase(t, dir, s), ""
		}, "root file system too small for the overlay", false},
		{"unknown key in the definition", func(t *testing.T, dir string) (string, string) {
			return makeBase(t, dir, flavours()["raspios-trixie"]), "radios: {wifi: false, bluetoth: false}\n"
		}, "img-bad.yaml:10: radios.bluetoth: unknown field (known here: bluetooth, wifi)", false},
		{"wrong sha256", func(t *testing.T, dir string) (string, string) {
			return makeBase(t, dir, flavours()["raspios-trixie"]), "WRONGSUM"
		}, "not the image the definition names", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base, extra := tc.make(t, dir)
			sum := sha256Of(t, base)
			defSum := sum
			if extra == "WRONGSUM" {
				defSum, extra = strings.Repeat("ab", 32), ""
			}
			def := writeBaseDefinition(t, dir, "img-bad", base, defSum, extra)
			before := listDir(t, dir)
			b := newBuilder(t, dir, testLab(t, dir, def, 1))
			_, err := b.Build(context.Background(), def)
			if err == nil {
				t.Fatalf("built an image from a bad input")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n  %v\nwant it to say:\n  %s", err, tc.want)
			}
			if sha256Of(t, base) != sum {
				t.Errorf("the input changed")
			}
			after := listDir(t, dir)
			for p := range after {
				if !before[p] && p != "lab.yaml" && p != "images" && p != "images/img-bad" {
					t.Errorf("left behind: %s", p)
				}
			}
		})
	}
}

func listDir(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out[rel] = true
		}
		return nil
	})
	return out
}

// TestXZBase: a .xz base is read without a temporary uncompressed copy
// beyond the work image, and gives the same image as the raw base.
func TestXZBase(t *testing.T) {
	needImageTools(t)
	xzTool := need(t, "xz", "xz-utils")
	dir := t.TempDir()
	base := makeBase(t, dir, flavours()["ubuntu"])
	raw := filepath.Join(dir, "raw.img")
	if err := exec.Command("cp", "--sparse=always", base, raw).Run(); err != nil {
		t.Fatal(err)
	}
	run(t, xzTool, "-1", "-T1", base)
	var sums []string
	for i, p := range []string{raw, base + ".xz"} {
		sub := filepath.Join(dir, string(rune('a'+i)))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		def := writeBaseDefinition(t, sub, "img-ubuntu", p, sha256Of(t, p), "")
		b := newBuilder(t, sub, testLab(t, sub, def, 1))
		res, err := b.Build(context.Background(), def)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, res.M.SHA256)
	}
	if sums[0] != sums[1] {
		t.Errorf("raw and .xz base give different images: %v", sums)
	}
}
