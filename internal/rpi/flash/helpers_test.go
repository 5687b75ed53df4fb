package flash

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/fhlab/provision/internal/rpi/flash/flashtest"
)

const (
	bootStart = flashtest.BootStart
	rootStart = flashtest.RootStart
)

var (
	skipOrFail   = flashtest.SkipOrFail
	requireTools = flashtest.RequireTools
	run          = flashtest.Run
	makeImage    = flashtest.MakeImage
	loopDev      = flashtest.LoopDev
)

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
// and runs fsck.fat -n on it.
func checkBootPartition(t *testing.T, card string, ov *Overlay) {
	t.Helper()
	want := map[string][]byte{}
	for _, f := range ov.Files {
		want[f.Path] = f.Data
	}
	flashtest.CheckBootPartition(t, card, want)
}
