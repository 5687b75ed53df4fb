package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tree writes a minimal built tree: a kernel, its initramfs, the module
// lists and the Pi firmware.
func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	v := "6.1.0-50-arm64"
	files := map[string]string{
		"boot/vmlinuz-" + v:    "kernel",
		"boot/initrd.img-" + v: "initrd",
		"lib/modules/" + v + "/modules.dep": "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz\n" +
			"kernel/drivers/mmc/host/sdhci-iproc.ko.xz: kernel/drivers/mmc/host/sdhci-pltfm.ko.xz\n" +
			"kernel/drivers/block/virtio_blk.ko.xz:\n",
		"lib/modules/" + v + "/modules.builtin": "kernel/drivers/mmc/core/mmc_block.ko\n",
	}
	for _, f := range FirmwareFiles {
		files["boot/firmware/"+f] = "fw"
	}
	for p, c := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestVerify(t *testing.T) {
	root := tree(t)
	if err := Verify(root, []string{"ext4", "sdhci_iproc", "mmc-block", "virtio_blk"}); err != nil {
		t.Fatalf("a good tree: %v", err)
	}
	tests := []struct {
		name   string
		mods   []string
		remove string
		want   string
	}{
		{"misspelt module", []string{"ext4", "sdhci-iprocc", "genet"}, "", "no module sdhci-iprocc, genet"},
		{"no firmware", nil, "boot/firmware/start4.elf", "boot/firmware/start4.elf"},
		{"no initramfs", nil, "boot/initrd.img-6.1.0-50-arm64", "has no initramfs"},
		{"no kernel", nil, "boot/vmlinuz-6.1.0-50-arm64", "no kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tree(t)
			if tt.remove != "" {
				if err := os.Remove(filepath.Join(root, tt.remove)); err != nil {
					t.Fatal(err)
				}
			}
			err := Verify(root, tt.mods)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestClampTimes(t *testing.T) {
	root := t.TempDir()
	old, cur := filepath.Join(root, "old"), filepath.Join(root, "new")
	for _, p := range []string{old, cur} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("old", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	const epoch = 1_700_000_000
	past := int64(1_600_000_000)
	if err := os.Chtimes(old, unixTime(past+5), unixTime(past)); err != nil {
		t.Fatal(err)
	}
	n, err := ClampTimes(root, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 { // root dir, new, link
		t.Errorf("clamped %d, want 3", n)
	}
	for p, want := range map[string]int64{old: past, cur: epoch, root: epoch} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.ModTime().Unix(); got != want {
			t.Errorf("%s mtime %d, want %d", p, got, want)
		}
	}
	fi, err := os.Lstat(filepath.Join(root, "link"))
	if err != nil || fi.ModTime().Unix() != epoch {
		t.Errorf("symlink mtime %v, %v", fi.ModTime(), err)
	}
	if fi, _ := os.Stat(old); fi.ModTime().Unix() != past {
		t.Errorf("the symlink's target was changed")
	}
}

func unixTime(s int64) time.Time { return time.Unix(s, 0) }
