package netboot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruptImage: a golden image that is not what it should be is a
// clear error naming the file, before anything is served.
func TestCorruptImage(t *testing.T) {
	tb := makeTestImage(t)
	orig, err := os.ReadFile(tb.Image)
	if err != nil {
		t.Fatal(err)
	}
	const bootStart = 8 << 20 // imagetest.MakeBase's FAT partition
	tests := []struct {
		name    string
		corrupt func([]byte) []byte
		want    string
	}{
		{"no MBR signature", func(b []byte) []byte { b[510] = 0; return b }, "no MBR partition table"},
		{"truncated", func(b []byte) []byte { return b[:20<<20] }, "truncated"},
		{"boot sector zeroed", func(b []byte) []byte {
			clear(b[bootStart : bootStart+512])
			return b
		}, "not a FAT file system"},
		{"the two FATs differ", func(b []byte) []byte {
			// Every entry of the first FAT points at cluster 3.
			fat := bootStart + 32*512 // mkfs.vfat: 32 reserved sectors
			for i := fat + 3*4; i < fat+64*1024; i += 4 {
				copy(b[i:], []byte{3, 0, 0, 0})
			}
			return b
		}, "partition 1 is not a FAT file system"},
		{"xz", func(b []byte) []byte { return append([]byte("\xfd7zXZ\x00"), b[6:4096]...) }, "compressed (xz)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "golden.img")
			if err := os.WriteFile(p, tt.corrupt(append([]byte(nil), orig...)), 0o644); err != nil {
				t.Fatal(err)
			}
			img, err := OpenBootImage(context.Background(), p, t.TempDir())
			if err == nil {
				img.Close()
				t.Fatal("opened a corrupt image")
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want the path and %q", err, tt.want)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
}

// TestBoards: directories by serial or MAC; a netbooted Pi without the
// serial its directory needs, or two Pis on one serial, are errors.
func TestBoards(t *testing.T) {
	inv := testLab(t)
	for _, tt := range []struct {
		naming Naming
		dir    string
	}{{BySerial, "9ffefd03"}, {ByMAC, "dc-a6-32-01-00-03"}} {
		b, err := NewBoards(inv, tt.naming)
		if err != nil {
			t.Fatal(err)
		}
		n, ok := b.ByDir(strings.ToUpper(tt.dir))
		if !ok || n.Name != "pi-r1-03" {
			t.Errorf("%s: directory %s is %v, want pi-r1-03", tt.naming, tt.dir, n)
		}
	}
	inv.Nodes[2].Serial = ""
	if _, err := NewBoards(inv, BySerial); err == nil || !strings.Contains(err.Error(), inv.Nodes[2].Name) {
		t.Errorf("a netbooted Pi without a serial: %v", err)
	}
	inv.Nodes[2].Serial = inv.Nodes[3].Serial
	if _, err := NewBoards(inv, BySerial); err == nil || !strings.Contains(err.Error(), "both have") {
		t.Errorf("two Pis on one serial: %v", err)
	}
	if _, err := NewBoards(inv, "uuid"); err == nil {
		t.Error("naming uuid accepted")
	}
}
